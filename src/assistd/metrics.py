"""The process's Prometheus metrics, and the few calls that record them.

A neutral module: the engine, ``llm/`` and ``api/`` import it, and it imports nothing of theirs. Every
name starts with ``assistd_``. These are per process: under ``assistd serve --processes N`` each process
counts what it did, and a scrape reaches one of them. The numbers read from the database at scrape time
(runs by status, the queues) are the same whichever process answers; ``api/metrics.py`` adds them.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.exposition import choose_encoder
from prometheus_client.gc_collector import GCCollector
from prometheus_client.metrics_core import Metric
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from . import __version__

__all__ = [
    "REGISTRY",
    "UpstreamAttempt",
    "observe_event_lag",
    "observe_run_finished",
    "render",
    "sse_stream",
    "stream_closed",
    "stream_opened",
    "tracked_stream",
    "upstream_request",
]

_T = TypeVar("_T")

# A registry of our own rather than prometheus_client's global one: what /metrics shows is exactly what
# is registered here, whatever else in the process imports prometheus_client.
REGISTRY = CollectorRegistry()
# Without the ``_created`` series of every counter and histogram, which double their series and which
# Prometheus's text format does not need.
disable_created_metrics()  # type: ignore[no-untyped-call]
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

_BUILD = Gauge(
    "assistd_build_info", "The running assistd's version (always 1).", ["version"], registry=REGISTRY
)
_BUILD.labels(__version__).set(1)

# From creation to the terminal status: what a client waiting on the run experiences. Runs that wait for
# tool outputs include that wait, so the buckets reach far.
_RUN_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
RUN_DURATION = Histogram(
    "assistd_run_duration_seconds",
    "Seconds from a run's creation to its terminal status, by that status (its _count counts runs ended "
    "by this process).",
    ["status"],
    buckets=_RUN_BUCKETS,
    registry=REGISTRY,
)

SSE_STREAMS = Gauge(
    "assistd_sse_streams_open", "Server-Sent Events responses streaming now.", registry=REGISTRY
)

UPSTREAM_REQUESTS = Counter(
    "assistd_upstream_requests",
    "Requests to the OpenAI-compatible upstream, each attempt counted, by endpoint and outcome: the HTTP "
    "status, or timeout, connection_error, stream_error (an error inside a 200 stream), cancelled, error.",
    ["endpoint", "status"],
    registry=REGISTRY,
)
UPSTREAM_DURATION = Histogram(
    "assistd_upstream_request_duration_seconds",
    "Seconds one upstream attempt took, to the end of its streamed answer, by endpoint.",
    ["endpoint"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
    registry=REGISTRY,
)
UPSTREAM_FIRST_CHUNK = Histogram(
    "assistd_upstream_first_chunk_seconds",
    "Seconds from sending a chat completion to its first streamed chunk: the upstream's latency.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=REGISTRY,
)


# Both ends of the interval are read from the database server's clock (the append's and the reader's query's),
# so a skew between the writing and the reading host's clocks does not enter it (on SQLite every process is
# on one host, and its clock is used).
EVENT_LAG = Histogram(
    "assistd_event_lag_seconds",
    "Seconds from a run event's append to the run event log, by the process that made it, to its delivery to "
    "this process's listeners (streams, long polls), for events that came from another process or host "
    "through the log. Timed on the database server's clock, so clock skew between hosts is not in it. Events "
    "replayed to a listener that resumes (Last-Event-ID) are not counted.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)


def observe_event_lag(seconds: float) -> None:
    """Record an event that reached this process's listeners ``seconds`` after another process logged it."""
    EVENT_LAG.observe(max(0.0, seconds))


def observe_run_finished(status: str, seconds: float) -> None:
    """Record a run that reached the terminal ``status`` ``seconds`` after it was created."""
    RUN_DURATION.labels(status).observe(max(0.0, seconds))


def stream_opened() -> None:
    SSE_STREAMS.inc()


def stream_closed() -> None:
    SSE_STREAMS.dec()


@contextmanager
def sse_stream() -> Iterator[None]:
    """Counts an SSE response as open for the block's duration."""
    stream_opened()
    try:
        yield
    finally:
        stream_closed()


async def tracked_stream(frames: AsyncIterator[_T]) -> AsyncIterator[_T]:
    """``frames``, counted as an open stream from the first frame asked for until the stream ends or the
    client goes away (Starlette then closes this generator)."""
    with sse_stream():
        async for frame in frames:
            yield frame


class UpstreamAttempt:
    """One attempt at an upstream request, timed from its creation; ``upstream_request`` makes them."""

    def __init__(self, endpoint: str) -> None:
        self._endpoint = endpoint
        self._started = time.perf_counter()
        self._first_chunk_seen = False

    def first_chunk(self) -> None:
        """The answer's first chunk arrived (counted once)."""
        if not self._first_chunk_seen:
            self._first_chunk_seen = True
            UPSTREAM_FIRST_CHUNK.observe(time.perf_counter() - self._started)

    def finished(self, status: str) -> None:
        """The attempt ended with ``status``: an HTTP status (``"200"``) or a kind of failure."""
        UPSTREAM_REQUESTS.labels(self._endpoint, status).inc()
        UPSTREAM_DURATION.labels(self._endpoint).observe(time.perf_counter() - self._started)


def upstream_request(endpoint: str) -> UpstreamAttempt:
    return UpstreamAttempt(endpoint)


class _Scrape:
    """What one scrape shows: the registry, then the metrics read for this scrape (from the database)."""

    def __init__(self, extra: Iterable[Metric]) -> None:
        self._extra = list(extra)

    def collect(self) -> Iterable[Metric]:
        yield from REGISTRY.collect()
        yield from self._extra


def render(extra: Iterable[Metric] = (), accept: str = "") -> tuple[bytes, str]:
    """The registry and ``extra`` in the format the scraper's ``Accept`` header asks for (Prometheus's
    text format, or OpenMetrics), with its content type."""
    encode, content_type = choose_encoder(accept)
    return encode(_Scrape(extra)), content_type
