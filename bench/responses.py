"""Responses against runs: the same answer asked for through ``/v1/responses`` and through the Assistants
API, side by side on one server, so that both meet the same machine.

One fake upstream (a ``FakeUpstream`` subclass in this process, as in ``stream_latency``) answers every
model call with the same reply; one ``assistd serve`` per database serves both APIs. Each iteration makes
one call of each kind, their order rotated from one iteration to the next (round-robin), so that a slow
moment of the shared machine falls on all of them alike. The whole is repeated in ``--rounds`` rounds, the
databases taking turns, and the figures reported are the medians of the rounds' percentiles.

The like-for-like runs baseline is ``threads.create_and_run``: like ``responses.create`` it is one request
that stores the user's message on a new thread, makes a run and executes it. The other runs baselines do
more requests (``threads.create`` then a run) or less timed work (a run on a thread made untimed), and are
kept to compare with the figures of earlier versions.

- *non-streamed*: ``responses.create(input=...)`` against ``threads.create_and_run_poll`` (create_and_run
  then polls until it ends), against ``threads.create(messages=[...])`` + ``runs.create_and_poll`` (also
  timed without the ``threads.create``). The reply is streamed by the upstream at once; its own time (a
  streaming Chat Completions call made with the SDK straight to the fake, as assistd makes it) is measured
  in the same loop and its p50 subtracted: "over upstream".
- *streamed*: ``responses.create(stream=True)`` until the first ``response.output_text.delta`` against
  ``threads.create_and_run(stream=True)`` and ``runs.create(stream=True)`` on a thread with the message made
  beforehand (the events ``runs.stream`` reads, without its client-side accumulation, as on the Responses
  side) until the first ``thread.message.delta``. The upstream sends the role chunk at once and the first
  content chunk ``--chunk-delay`` later; the fake notes when it writes each. "First delta over upstream" =
  (first delta at the client - request sent) - (first content chunk written - role chunk written): what
  assistd adds to the model's own time to its first token, before the upstream call and after it.
  "Relay" = first delta at the client - first content chunk written.
- *streamed, raw HTTP*: the same three streams read by ``httpx`` line by line (no SDK), until the line
  ``event: response.output_text.delta`` / ``event: thread.message.delta``: the server's share alone. The SDK
  builds a typed object of every event it reads, on the same cores, and the Responses events before the
  first delta (``response.created``, ``response.in_progress`` with the whole response) cost it more than the
  runs' do.

``--pg`` (or ``BENCH_PG``) runs the same on a fresh PostgreSQL database too, its rounds taking turns with
SQLite's.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
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
MESSAGES = [{"role": "user", "content": PROMPT}]

# The figures of one round, by name (each a Latency, in seconds).
UPSTREAM = "upstream alone"
CREATE_RESPONSE = "create: responses.create"
CREATE_AND_RUN = "create: threads.create_and_run_poll"
CREATE_WITH_THREAD = "create: threads.create + runs.create_and_poll"
CREATE_POLL_ONLY = "create: runs.create_and_poll alone"
STREAM_RESPONSE = "stream: responses first delta over upstream"
STREAM_CREATE_AND_RUN = "stream: create_and_run first delta over upstream"
STREAM_RUN = "stream: runs on a thread made beforehand, first delta over upstream"
STREAM_RUN_WITH_THREAD = "stream: threads.create + runs first delta over upstream"
RELAY_RESPONSE = "stream: responses relay (chunk -> delta)"
RELAY_CREATE_AND_RUN = "stream: create_and_run relay (chunk -> delta)"
RAW_RESPONSE = "raw stream: responses first delta over upstream"
RAW_CREATE_AND_RUN = "raw stream: create_and_run first delta over upstream"
RAW_RUN = "raw stream: runs on a thread made beforehand, first delta over upstream"


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


def _create_and_run_poll(client: OpenAI, assistant_id: str) -> float:
    start = time.perf_counter()
    run = client.beta.threads.create_and_run_poll(assistant_id=assistant_id, thread={"messages": MESSAGES})
    elapsed = time.perf_counter() - start
    if run.status != "completed":
        raise RuntimeError(f"run {run.id} ended {run.status}: {run.last_error}")
    return elapsed


def _run_create_and_poll(client: OpenAI, assistant_id: str) -> tuple[float, float]:
    """(threads.create + create_and_poll, create_and_poll alone)."""
    start = time.perf_counter()
    thread = client.beta.threads.create(messages=MESSAGES)
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


def _first_run_delta(stream: Iterator[Any], start: float, fake: TimedFake) -> tuple[float, float, float]:
    """The figures of ``_first_response_delta`` for a run's stream opened at ``start``."""
    first = None
    last = None
    for event in stream:
        if event.event == "thread.message.delta" and first is None:
            first = time.perf_counter()
        last = event.event
    if first is None or last != "thread.run.completed":
        raise RuntimeError(f"run stream ended {last}")
    return _first_figures(start, first, fake.sent_at)


def _first_create_and_run_delta(
    client: OpenAI, fake: TimedFake, assistant_id: str
) -> tuple[float, float, float]:
    fake.sent_at.clear()
    start = time.perf_counter()
    stream = client.beta.threads.create_and_run(
        assistant_id=assistant_id, thread={"messages": MESSAGES}, stream=True
    )
    return _first_run_delta(stream, start, fake)


def _first_thread_run_delta(
    client: OpenAI, fake: TimedFake, assistant_id: str
) -> tuple[tuple[float, float, float], float]:
    """The figures of a run's stream on a thread made just before, from the run's create on, and the
    overhead timed from the ``threads.create`` before it."""
    made_from = time.perf_counter()
    thread = client.beta.threads.create(messages=MESSAGES)
    fake.sent_at.clear()
    start = time.perf_counter()
    stream = client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant_id, stream=True)
    figures = _first_run_delta(stream, start, fake)
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


@dataclass
class _Target:
    """One database's assistd and the clients that ask it."""

    label: str
    client: OpenAI
    http: httpx.Client
    assistant_id: str


def _rotated(calls: list[Callable[[], None]], i: int) -> None:
    """Each of ``calls``, the ``i``-th rotation of their order: round-robin, so that no kind always goes
    first (after the upstream alone, or after the other database's round)."""
    shift = i % len(calls)
    for call in calls[shift:] + calls[:shift]:
        call()


def _round(
    target: _Target,
    fake: TimedFake,
    direct: OpenAI,
    calls: int,
    streams: int,
    warmup: int,
    chunk_delay: float,
) -> dict[str, Latency]:
    """One round on ``target``: every kind of call, round-robin; warm-up iterations of each excluded."""
    figures: dict[str, Latency] = {}
    client, assistant_id = target.client, target.assistant_id

    def note(name: str, value: float, measured: bool) -> None:
        if measured:
            figures.setdefault(name, Latency()).add(value)

    # Non-streamed: the upstream answers at once.
    fake.default = Text("".join(CHUNKS), chunks=CHUNKS)
    for i in range(warmup + calls):
        measured = i >= warmup

        def with_thread(measured: bool = measured) -> None:
            both, only = _run_create_and_poll(client, assistant_id)
            note(CREATE_WITH_THREAD, both, measured)
            note(CREATE_POLL_ONLY, only, measured)

        _rotated(
            [
                lambda m=measured: note(UPSTREAM, _upstream_alone(direct), m),
                lambda m=measured: note(CREATE_RESPONSE, _response_create(client), m),
                lambda m=measured: note(CREATE_AND_RUN, _create_and_run_poll(client, assistant_id), m),
                with_thread,
            ],
            i,
        )
    # Streamed: the first content chunk ``chunk_delay`` after the role chunk.
    fake.default = Text("".join(CHUNKS), chunks=CHUNKS, chunk_delay_s=chunk_delay)
    for i in range(warmup + streams):
        measured = i >= warmup

        def by_response(measured: bool = measured) -> None:
            _, over, relay = _first_response_delta(client, fake)
            note(STREAM_RESPONSE, over, measured)
            note(RELAY_RESPONSE, relay, measured)

        def by_create_and_run(measured: bool = measured) -> None:
            _, over, relay = _first_create_and_run_delta(client, fake, assistant_id)
            note(STREAM_CREATE_AND_RUN, over, measured)
            note(RELAY_CREATE_AND_RUN, relay, measured)

        def by_run(measured: bool = measured) -> None:
            (_, over, _), with_thread = _first_thread_run_delta(client, fake, assistant_id)
            note(STREAM_RUN, over, measured)
            note(STREAM_RUN_WITH_THREAD, with_thread, measured)

        _rotated([by_response, by_create_and_run, by_run], i)
    # Streamed again, read as raw SSE lines: the server's share without the SDK's.
    response_body = {"model": MODEL, "input": PROMPT, "instructions": INSTRUCTIONS, "stream": True}
    create_and_run_body = {"assistant_id": assistant_id, "thread": {"messages": MESSAGES}, "stream": True}
    run_body = {"assistant_id": assistant_id, "stream": True}
    for i in range(warmup + streams):
        measured = i >= warmup
        thread = client.beta.threads.create(messages=MESSAGES)
        sides = [
            (RAW_RESPONSE, "/responses", response_body, "response.output_text.delta"),
            (RAW_CREATE_AND_RUN, "/threads/runs", create_and_run_body, "thread.message.delta"),
            (RAW_RUN, f"/threads/{thread.id}/runs", run_body, "thread.message.delta"),
        ]
        _rotated(
            [
                lambda n=name, p=path, b=body, e=event, m=measured: note(  # type: ignore[misc]
                    n, _first_raw_delta(target.http, fake, p, b, e), m
                )
                for name, path, body, event in sides
            ],
            i,
        )
    return figures


@contextmanager
def _target(label: str, database_url: str | None, upstream_url: str) -> Iterator[_Target]:
    with (
        _database(database_url),
        assistd_server(upstream_url) as server,
        client_for(server) as client,
        httpx.Client(
            base_url=server.base_url,
            headers={"Authorization": f"Bearer {API_KEY}", "OpenAI-Beta": "assistants=v2"},
            timeout=60,
        ) as http,
    ):
        yield _Target(label, client, http, create_assistant(client))


def _median(rounds: list[dict[str, Latency]], name: str, q: float) -> float:
    return statistics.median(figures[name].p(q) for figures in rounds)


def _ratio(rounds: list[dict[str, Latency]], ours: str, theirs: str, base: str | None = None) -> float:
    """The median over the rounds of ``ours`` / ``theirs`` p50s, each less ``base``'s p50 if given."""
    values = []
    for figures in rounds:
        less = figures[base].p50 if base is not None else 0.0
        values.append((figures[ours].p50 - less) / (figures[theirs].p50 - less))
    return statistics.median(values)


def _result(label: str, rounds: list[dict[str, Latency]], description: str) -> Result:
    result = Result(f"responses ({label})", description)
    upstream = _median(rounds, UPSTREAM, 50)
    result.metric("upstream alone p50", upstream, "ms")
    for name in (CREATE_RESPONSE, CREATE_AND_RUN, CREATE_WITH_THREAD, CREATE_POLL_ONLY):
        result.metric(f"{name} p50", _median(rounds, name, 50), "ms")
        result.metric(f"{name} p95", _median(rounds, name, 95), "ms")
    result.metric(
        "create: responses / create_and_run_poll, over upstream, p50",
        _ratio(rounds, CREATE_RESPONSE, CREATE_AND_RUN, UPSTREAM),
        "x",
        at_most=1.0,
    )
    result.metric(
        "create: responses / create_and_run_poll, over upstream, p95",
        statistics.median(
            (f[CREATE_RESPONSE].p(95) - f[UPSTREAM].p50) / (f[CREATE_AND_RUN].p(95) - f[UPSTREAM].p50)
            for f in rounds
        ),
        "x",
    )
    result.metric(
        "create: responses / threads.create + create_and_poll, over upstream, p50",
        _ratio(rounds, CREATE_RESPONSE, CREATE_WITH_THREAD, UPSTREAM),
        "x",
    )
    for name in (
        STREAM_RESPONSE,
        STREAM_CREATE_AND_RUN,
        STREAM_RUN,
        RAW_RESPONSE,
        RAW_CREATE_AND_RUN,
        RAW_RUN,
    ):
        result.metric(f"{name} p50", _median(rounds, name, 50), "ms")
        result.metric(f"{name} p95", _median(rounds, name, 95), "ms")
    for name in (STREAM_RUN_WITH_THREAD, RELAY_RESPONSE, RELAY_CREATE_AND_RUN):
        result.metric(f"{name} p50", _median(rounds, name, 50), "ms")
    result.metric(
        "stream: responses / create_and_run first delta over upstream, p50",
        _ratio(rounds, STREAM_RESPONSE, STREAM_CREATE_AND_RUN),
        "x",
        at_most=1.0,
    )
    result.metric(
        "stream: responses / create_and_run first delta over upstream, p95",
        statistics.median(f[STREAM_RESPONSE].p(95) / f[STREAM_CREATE_AND_RUN].p(95) for f in rounds),
        "x",
    )
    result.metric(
        "stream: responses / runs on a thread made beforehand, p50",
        _ratio(rounds, STREAM_RESPONSE, STREAM_RUN),
        "x",
    )
    result.metric(
        "raw stream: responses / create_and_run first delta over upstream, p50",
        _ratio(rounds, RAW_RESPONSE, RAW_CREATE_AND_RUN),
        "x",
        at_most=1.0,
    )
    result.metric(
        "raw stream: responses / create_and_run first delta over upstream, p95",
        statistics.median(f[RAW_RESPONSE].p(95) / f[RAW_CREATE_AND_RUN].p(95) for f in rounds),
        "x",
    )
    result.metric(
        "raw stream: responses / runs on a thread made beforehand, p50",
        _ratio(rounds, RAW_RESPONSE, RAW_RUN),
        "x",
    )
    result.details = {
        "rounds": [{name: latency.summary() for name, latency in figures.items()} for figures in rounds],
    }
    return result


def run_all(
    calls: int = 200,
    streams: int = 100,
    warmup: int = 20,
    pg_admin: str | None = None,
    rounds: int = 1,
    chunk_delay: float = 0.02,
) -> list[Result]:
    """SQLite, and PostgreSQL too when ``pg_admin`` names a server to make a fresh database on; both
    servers up together, their rounds taking turns."""
    description = (
        f"responses vs runs, round-robin, {rounds} round(s) of {calls} non-streamed and {streams} streamed "
        f"iterations (warm-up {warmup} of each excluded), upstream's first content chunk "
        f"{chunk_delay * 1000:g} ms after its role chunk; medians of the rounds' percentiles"
    )
    fake = TimedFake(record=False, default=Text("".join(CHUNKS), chunks=CHUNKS))
    fake.start()
    try:
        with (
            ExitStack() as stack,
            OpenAI(base_url=fake.base_url, api_key="sk-upstream-bench", max_retries=0) as direct,
        ):
            targets = [stack.enter_context(_target("SQLite", None, fake.base_url))]
            if pg_admin:
                url = stack.enter_context(pg_database(pg_admin))
                targets.append(stack.enter_context(_target("PostgreSQL", url, fake.base_url)))
            measured: dict[str, list[dict[str, Latency]]] = {target.label: [] for target in targets}
            for index in range(rounds):
                for target in targets if index % 2 == 0 else targets[::-1]:
                    figures = _round(target, fake, direct, calls, streams, warmup, chunk_delay)
                    measured[target.label].append(figures)
                    print(
                        f"round {index + 1} {target.label}: create over upstream p50 responses "
                        f"{figures[CREATE_RESPONSE].p50 - figures[UPSTREAM].p50:.2f} ms, create_and_run "
                        f"{figures[CREATE_AND_RUN].p50 - figures[UPSTREAM].p50:.2f} ms; first delta over "
                        f"upstream p50 responses {figures[STREAM_RESPONSE].p50:.2f} ms, create_and_run "
                        f"{figures[STREAM_CREATE_AND_RUN].p50:.2f} ms; raw {figures[RAW_RESPONSE].p50:.2f} "
                        f"/ {figures[RAW_CREATE_AND_RUN].p50:.2f} ms",
                        flush=True,
                    )
    finally:
        fake.stop()
    return [_result(label, figures, description) for label, figures in measured.items()]


def main() -> None:
    parser = arg_parser(__doc__ or "")
    parser.add_argument("--calls", type=int, default=200, help="non-streamed iterations per round")
    parser.add_argument("--streams", type=int, default=100, help="streamed iterations per round")
    parser.add_argument("--rounds", type=int, default=1, help="rounds, the databases taking turns")
    parser.add_argument(
        "--pg",
        default=os.environ.get("BENCH_PG"),
        metavar="URL",
        help="also on a fresh database of this PostgreSQL server (default: $BENCH_PG)",
    )
    args = parser.parse_args()
    calls, streams, warmup = (20, 10, 3) if args.quick else (args.calls, args.streams, 20)
    results = run_all(calls, streams, warmup, args.pg, args.rounds)
    print_results(results)
    write_json(args.json, results)


if __name__ == "__main__":
    main()
