"""Responses against runs: the same answer asked for through ``/v1/responses`` and through the Assistants
API, side by side on one server, one after the other, so that both meet the same machine.

One fake upstream (a ``FakeUpstream`` subclass in this process, as in ``stream_latency``) answers every
model call with the same reply; one ``assistd serve`` serves both APIs. Each iteration makes one call of
each kind, which of the two goes first alternating, so that a slow moment of the shared machine falls on
both:

- *non-streamed*: ``responses.create(input=...)`` against ``threads.create(messages=[...])`` then
  ``runs.create_and_poll`` (the same work: the user's message stored, a run executed, its answer read). The
  runs side is timed both with and without the ``threads.create``: the existing ``create_and_poll``
  benchmark makes its thread outside the timed part. The reply is streamed by the upstream at once; its own
  time (a streaming Chat Completions call made with the SDK straight to the fake, as assistd makes it) is
  measured in the same loop and its p50 subtracted: "over upstream".
- *streamed*: ``responses.create(stream=True)`` until the first ``response.output_text.delta`` against
  ``runs.create(stream=True)`` (the events ``runs.stream`` reads, without its client-side accumulation, as
  on the Responses side) until the first ``thread.message.delta``, on a thread with the message made
  beforehand. The upstream sends the role chunk at once and the first content chunk ``--chunk-delay``
  later; the fake notes when it writes each. "First delta over upstream" = (first delta at the client -
  request sent) - (first content chunk written - role chunk written): what assistd adds to the model's own
  time to its first token, before the upstream call and after it. "Relay" = first delta at the client -
  first content chunk written.
- *streamed, raw HTTP*: the same two streams read by ``httpx`` line by line (no SDK), until the line
  ``event: response.output_text.delta`` / ``event: thread.message.delta``: the server's share alone. The SDK
  builds a typed object of every event it reads, on the same two cores, and the Responses events before the
  first delta (``response.created``, ``response.in_progress`` with the whole response) cost it more than the
  runs' do.

``--pg`` (or ``BENCH_PG``) runs the same on a fresh PostgreSQL database too.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
from openai import OpenAI

from bench.common import (
    API_KEY,
    MODEL,
    Latency,
    Result,
    arg_parser,
    assistd_server,
    client_for,
    create_assistant,
    pg_database,
    print_results,
    write_json,
)
from bench.stream_latency import TimedFake
from fake_upstream import Text

CHUNKS = ["Hello", " from", " the", " bench."]
INSTRUCTIONS = "You are the assistant of a benchmark."
PROMPT = "Hello"


class _Side:
    """The figures of one way of asking."""

    def __init__(self) -> None:
        self.total = Latency()
        self.over = Latency()
        self.relay = Latency()


def _upstream_alone(fake: OpenAI) -> float:
    start = time.perf_counter()
    stream = fake.chat.completions.create(
        model=MODEL,
        messages=[{"role": "system", "content": INSTRUCTIONS}, {"role": "user", "content": PROMPT}],
        stream=True,
        stream_options={"include_usage": True},
    )
    for _ in stream:
        pass
    return time.perf_counter() - start


def _response_create(client: OpenAI) -> float:
    start = time.perf_counter()
    response = client.responses.create(model=MODEL, input=PROMPT, instructions=INSTRUCTIONS)
    elapsed = time.perf_counter() - start
    if response.status != "completed" or response.output_text != "".join(CHUNKS):
        raise RuntimeError(f"response {response.id} ended {response.status}: {response.error}")
    return elapsed


def _run_create_and_poll(client: OpenAI, assistant_id: str) -> tuple[float, float]:
    """(threads.create + create_and_poll, create_and_poll alone)."""
    start = time.perf_counter()
    thread = client.beta.threads.create(messages=[{"role": "user", "content": PROMPT}])
    polled_from = time.perf_counter()
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant_id)
    end = time.perf_counter()
    if run.status != "completed":
        raise RuntimeError(f"run {run.id} ended {run.status}: {run.last_error}")
    return end - start, end - polled_from


def _first_response_delta(client: OpenAI, fake: TimedFake) -> tuple[float, float, float]:
    """(request → first delta, its overhead over the upstream's own, relay) in seconds."""
    fake.sent_at.clear()
    start = time.perf_counter()
    first = None
    last = None
    for event in client.responses.create(model=MODEL, input=PROMPT, instructions=INSTRUCTIONS, stream=True):
        if event.type == "response.output_text.delta" and first is None:
            first = time.perf_counter()
        last = event.type
    if first is None or last != "response.completed":
        raise RuntimeError(f"response stream ended {last}")
    return _first_figures(start, first, fake.sent_at)


def _first_run_delta(
    client: OpenAI, fake: TimedFake, assistant_id: str
) -> tuple[tuple[float, float, float], float]:
    """The figures of ``_first_response_delta`` from the run's create on, and the overhead timed from the
    ``threads.create`` before it."""
    made_from = time.perf_counter()
    thread = client.beta.threads.create(messages=[{"role": "user", "content": PROMPT}])
    fake.sent_at.clear()
    start = time.perf_counter()
    first = None
    last = None
    stream = client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant_id, stream=True)
    for event in stream:
        if event.event == "thread.message.delta" and first is None:
            first = time.perf_counter()
        last = event.event
    if first is None or last != "thread.run.completed":
        raise RuntimeError(f"run stream ended {last}")
    figures = _first_figures(start, first, fake.sent_at)
    return figures, figures[1] + (start - made_from)


def _first_raw_delta(
    http: httpx.Client, fake: TimedFake, path: str, body: dict[str, Any], event: str
) -> float:
    """A stream read as raw SSE lines: its first delta's overhead over the upstream's own time."""
    fake.sent_at.clear()
    start = time.perf_counter()
    first = None
    marker = f"event: {event}"
    with http.stream("POST", path, json=body) as answer:
        if answer.status_code != 200:
            raise RuntimeError(f"POST {path}: {answer.status_code}")
        for line in answer.iter_lines():
            if first is None and line == marker:
                first = time.perf_counter()
    if first is None:
        raise RuntimeError(f"POST {path}: no {event}")
    return _first_figures(start, first, fake.sent_at)[1]


def _first_figures(start: float, first: float, sent_at: list[float]) -> tuple[float, float, float]:
    upstream_own = sent_at[1] - sent_at[0]
    return first - start, (first - start) - upstream_own, first - sent_at[1]


@contextmanager
def _database(url: str | None) -> Iterator[None]:
    """``assistd_server`` on ``url`` (None: its own SQLite file)."""
    before = os.environ.get("BENCH_DATABASE_URL")
    if url is not None:
        os.environ["BENCH_DATABASE_URL"] = url
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("BENCH_DATABASE_URL", None)
        else:
            os.environ["BENCH_DATABASE_URL"] = before


def run(
    label: str = "SQLite",
    database_url: str | None = None,
    calls: int = 200,
    streams: int = 100,
    warmup: int = 20,
    chunk_delay: float = 0.02,
) -> Result:
    result = Result(
        f"responses ({label})",
        f"responses vs runs, alternating: {calls} non-streamed pairs, {streams} streamed pairs "
        f"(warm-up {warmup} of each excluded), upstream's first content chunk {chunk_delay * 1000:g} ms "
        "after its role chunk",
    )
    upstream = Latency()
    responses, runs, runs_only, runs_with_thread = _Side(), _Side(), Latency(), Latency()
    raw_responses, raw_runs = Latency(), Latency()
    fake = TimedFake(record=False, default=Text("".join(CHUNKS), chunks=CHUNKS))
    fake.start()
    try:
        with (
            _database(database_url),
            assistd_server(fake.base_url) as server,
            client_for(server) as client,
            OpenAI(base_url=fake.base_url, api_key="sk-upstream-bench", max_retries=0) as direct,
            httpx.Client(
                base_url=server.base_url,
                headers={"Authorization": f"Bearer {API_KEY}", "OpenAI-Beta": "assistants=v2"},
                timeout=60,
            ) as http,
        ):
            assistant_id = create_assistant(client)
            # Non-streamed: the upstream answers at once.
            for i in range(warmup + calls):
                measured = i >= warmup
                alone = _upstream_alone(direct)
                if i % 2 == 0:
                    response = _response_create(client)
                    both, only = _run_create_and_poll(client, assistant_id)
                else:
                    both, only = _run_create_and_poll(client, assistant_id)
                    response = _response_create(client)
                if measured:
                    upstream.add(alone)
                    responses.total.add(response)
                    runs.total.add(both)
                    runs_only.add(only)
            # Streamed: the first content chunk ``chunk_delay`` after the role chunk.
            fake.default = Text("".join(CHUNKS), chunks=CHUNKS, chunk_delay_s=chunk_delay)
            for i in range(warmup + streams):
                if i % 2 == 0:
                    by_response = _first_response_delta(client, fake)
                    by_run, with_thread = _first_run_delta(client, fake, assistant_id)
                else:
                    by_run, with_thread = _first_run_delta(client, fake, assistant_id)
                    by_response = _first_response_delta(client, fake)
                if i >= warmup:
                    runs_with_thread.add(with_thread)
                    for side, figures in ((responses, by_response), (runs, by_run)):
                        _, over, relay = figures
                        side.over.add(over)
                        side.relay.add(relay)
            # Streamed again, read as raw SSE lines: the server's share without the SDK's.
            by_response_body = {"model": MODEL, "input": PROMPT, "instructions": INSTRUCTIONS, "stream": True}
            for i in range(warmup + streams):
                thread = client.beta.threads.create(messages=[{"role": "user", "content": PROMPT}])
                run_body = {"assistant_id": assistant_id, "stream": True}
                sides = [
                    (raw_responses, "/responses", by_response_body, "response.output_text.delta"),
                    (raw_runs, f"/threads/{thread.id}/runs", run_body, "thread.message.delta"),
                ]
                for figures, path, body, event in sides if i % 2 == 0 else sides[::-1]:
                    over = _first_raw_delta(http, fake, path, body, event)
                    if i >= warmup:
                        figures.add(over)
    finally:
        fake.stop()
    base = upstream.p50
    result.metric("create: upstream alone p50", base, "ms")
    result.metric("create: responses.create p50", responses.total.p50, "ms")
    result.metric("create: responses.create p95", responses.total.p(95), "ms")
    result.metric("create: threads.create + runs.create_and_poll p50", runs.total.p50, "ms")
    result.metric("create: threads.create + runs.create_and_poll p95", runs.total.p(95), "ms")
    result.metric("create: runs.create_and_poll alone p50", runs_only.p50, "ms")
    result.metric("create: runs.create_and_poll alone p95", runs_only.p(95), "ms")
    result.metric("create: responses over upstream p50", responses.total.p50 - base, "ms")
    result.metric("create: runs (with thread) over upstream p50", runs.total.p50 - base, "ms")
    result.metric(
        "create: responses / runs with thread, p50",
        responses.total.p50 / runs.total.p50,
        "x",
        at_most=1.0,
    )
    result.metric("stream: responses first delta over upstream p50", responses.over.p50, "ms")
    result.metric("stream: responses first delta over upstream p95", responses.over.p(95), "ms")
    result.metric("stream: runs first delta over upstream p50", runs.over.p50, "ms")
    result.metric("stream: runs first delta over upstream p95", runs.over.p(95), "ms")
    result.metric("stream: threads.create + runs first delta over upstream p50", runs_with_thread.p50, "ms")
    result.metric("stream: responses relay (chunk -> delta) p50", responses.relay.p50, "ms")
    result.metric("stream: runs relay (chunk -> delta) p50", runs.relay.p50, "ms")
    result.metric(
        "stream: responses / runs first delta over upstream, p50",
        responses.over.p50 / runs.over.p50,
        "x",
        at_most=1.0,
    )
    result.metric("raw stream: responses first delta over upstream p50", raw_responses.p50, "ms")
    result.metric("raw stream: responses first delta over upstream p95", raw_responses.p(95), "ms")
    result.metric("raw stream: runs first delta over upstream p50", raw_runs.p50, "ms")
    result.metric("raw stream: runs first delta over upstream p95", raw_runs.p(95), "ms")
    result.metric(
        "raw stream: responses / runs first delta over upstream, p50",
        raw_responses.p50 / raw_runs.p50,
        "x",
    )
    result.details = {
        "upstream_alone": upstream.summary(),
        "responses_create": responses.total.summary(),
        "runs_thread_and_create_and_poll": runs.total.summary(),
        "runs_create_and_poll_alone": runs_only.summary(),
        "responses_first_delta_over_upstream": responses.over.summary(),
        "runs_first_delta_over_upstream": runs.over.summary(),
        "runs_with_thread_first_delta_over_upstream": runs_with_thread.summary(),
        "responses_relay": responses.relay.summary(),
        "runs_relay": runs.relay.summary(),
        "raw_responses_first_delta_over_upstream": raw_responses.summary(),
        "raw_runs_first_delta_over_upstream": raw_runs.summary(),
        "chunk_delay_s": chunk_delay,
    }
    return result


def run_all(
    calls: int = 200, streams: int = 100, warmup: int = 20, pg_admin: str | None = None
) -> list[Result]:
    """SQLite, and PostgreSQL too when ``pg_admin`` names a server to make a fresh database on."""
    results = [run("SQLite", None, calls, streams, warmup)]
    if pg_admin:
        with pg_database(pg_admin) as url:
            results.append(run("PostgreSQL", url, calls, streams, warmup))
    return results


def main() -> None:
    parser = arg_parser(__doc__ or "")
    parser.add_argument("--calls", type=int, default=200, help="non-streamed pairs")
    parser.add_argument("--streams", type=int, default=100, help="streamed pairs")
    parser.add_argument(
        "--pg",
        default=os.environ.get("BENCH_PG"),
        metavar="URL",
        help="also on a fresh database of this PostgreSQL server (default: $BENCH_PG)",
    )
    args = parser.parse_args()
    calls, streams, warmup = (20, 10, 3) if args.quick else (args.calls, args.streams, 20)
    results = run_all(calls, streams, warmup, args.pg)
    print_results(results)
    write_json(args.json, results)


if __name__ == "__main__":
    main()
