"""Capacity: many streaming runs in flight at once against a slow upstream.

``--runs`` (default 1,000) streaming runs are started at the same moment, each on a thread made
beforehand, with ``POST /v1/threads/{id}/runs`` and ``"stream": true``, against a fake upstream whose every
reply takes ``--upstream-seconds`` (default 2 s): its role chunk at once, then its content chunks and its
end spread evenly over that time (``tests/fake_upstream.py --chunk-delay``, in its own process). The
servers run the shipped defaults; ``--env NAME=VALUE`` sets an ``ASSISTD_`` setting (e.g. the old limits,
``--env WORKERS=64 --env UPSTREAM_MAX_CONCURRENCY=32``).

The clients are lean (``bench/lean_client.py``'s approach, for streams): one raw HTTP/1.1 connection per
run over asyncio streams, which reads every SSE frame, decodes every event's JSON and checks that each
stream opens with ``thread.run.created``, carries the whole reply in its deltas, ends with
``thread.run.completed`` and then ``done``. The official async SDK, which builds a pydantic object of
every event, would take a good part of the two cores from the server it measures.

Measured:

- errors and timeouts (a stream may take ``--timeout`` seconds, default the larger of 60 s and 30 replies),
  which must be 0, and the warnings and errors in the servers' logs (an upstream retry would hide a
  timeout);
- the burst's wall time against the ideal (one reply), and request -> first event (``thread.run.created``),
  -> first delta and -> ``done``, p50 and p99;
- the servers' CPU (``/proc``; their child processes included; both processes in the split mode) per run;
  and at the plateau (while at least 90 % of the peak number of runs are in flight), their CPU per second
  per run in flight: what holding a run costs. It means most with a long reply (``--upstream-seconds 30``):
  with a 2 s reply the plateau is when the last runs are still being created;
- the servers' RSS over its baseline (after a warm-up) per run in flight, at the moment most runs were in
  flight (created, their first event read, not ended);
- on PostgreSQL: the CPU of the backends serving the benchmark's database (``Backends``), its
  transactions per run (``pg_stat_database``), the peak of its connections and how many were opened during
  the burst, and the queue (runs still ``queued``) over time in the JSON;
- the whole machine's busy cores, and how many of them were not this benchmark's processes (others
  sharing the machine).

Modes (``--mode``, repeatable; default all three):

- ``sqlite``: one ``assistd serve`` on SQLite;
- ``pg``: one ``assistd serve`` on PostgreSQL (``BENCH_PG``, a fresh database per mode);
- ``pg-split``: ``assistd serve --workers 0`` and one ``assistd worker`` on PostgreSQL.

Each stream is a socket in the benchmark and two in the assistd process that executes it (its client's and
its upstream connection): the benchmark raises its ``RLIMIT_NOFILE`` soft limit to the hard limit (the
processes it starts inherit it; assistd raises its own too) and stops if that is too low for ``--runs``.

    BENCH_PG=postgresql://postgres@127.0.0.1:5432/test python bench/capacity.py --runs 1000
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import resource
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    API_KEY,
    MODEL,
    Latency,
    Result,
    arg_parser,
    cpu_seconds,
    fake_upstream_process,
    pg_database,
    print_results,
    write_json,
)
from bench.lean_client import LeanClient
from server import AssistdServer

MODES = ("sqlite", "pg", "pg-split")
# The reply's content chunks, in order: the deltas must carry exactly these.
CHUNKS = ["Hello", " from", " the", " capacity", " bench."]
# File descriptors per stream in the process that needs most (assistd's executing process: the client's
# socket and the upstream connection), and spare ones (the database, logs, the model files).
FDS_PER_RUN = 2
FDS_SPARE = 512
# PostgreSQL connections the split mode may hold: two processes' pools and LISTEN connections, the sampler's.
PG_CONNECTIONS_WANTED = 2 * 31 + 1


# --------------------------------------------------------------------------------------------------
# Limits and processes
# --------------------------------------------------------------------------------------------------


def raise_fd_limit(runs: int) -> int:
    """Raise this process's RLIMIT_NOFILE soft limit to its hard limit (children inherit it); the limit
    now. Fails when even the hard limit cannot hold ``runs`` streams."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = soft if hard == resource.RLIM_INFINITY else hard
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    needed = runs * FDS_PER_RUN + FDS_SPARE
    if target < needed:
        raise SystemExit(
            f"capacity: RLIMIT_NOFILE's hard limit is {target}, {runs} streams need about {needed} "
            "(raise it, e.g. `ulimit -Hn 65536` as root, or in the service's LimitNOFILE)"
        )
    return target


@contextmanager
def slow_upstream(seconds: float) -> Iterator[tuple[str, int]]:
    """``tests/fake_upstream.py`` in its own process, each reply taking ``seconds``: the role chunk at once,
    then each content chunk and the final one evenly spaced, the last at ``seconds``. Yields (url, pid)."""
    delay = seconds / (len(CHUNKS) + 1)
    with fake_upstream_process(
        "--text", "".join(CHUNKS), "--chunk-delay", repr(delay), instant=False
    ) as found:
        yield found


async def _warn_when_connections_short(connection: Any) -> None:
    free = await connection.fetchval(
        "SELECT current_setting('max_connections')::int - count(*) FROM pg_stat_activity"
    )
    if free < PG_CONNECTIONS_WANTED:
        # Another user of the server holds the rest: runs may fail on "too many clients already".
        print(
            f"capacity: warning: PostgreSQL has {free} connections free, the split mode may open "
            f"{PG_CONNECTIONS_WANTED}",
            file=sys.stderr,
        )


def _start(
    stack: ExitStack, url: str, upstream: str, env: dict[str, str], *, worker: bool = False, api: bool = False
) -> AssistdServer:
    settings = {
        "ASSISTD_API_KEYS": API_KEY,
        "ASSISTD_UPSTREAM_BASE_URL": upstream,
        "ASSISTD_UPSTREAM_API_KEY": "sk-upstream-bench",
        # tests/server.py tunes these for fast tests; the benchmarks run the shipped defaults.
        "ASSISTD_MAINTENANCE_INTERVAL_SECONDS": "1.0",
        "ASSISTD_UPSTREAM_RETRY_BASE_SECONDS": "0.5",
        **env,
    }
    directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="assistd-capacity-")))
    if url == "sqlite":
        url = f"sqlite:///{directory / 'b.db'}"
    server = AssistdServer(directory, url, settings, worker=worker, args=("--workers", "0") if api else ())
    server.start(timeout=60)
    stack.callback(server.stop)
    return server


def _tree(pid: int) -> list[int]:
    """``pid`` and its live descendants."""
    found = [pid]
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                found += _tree(int(child))
    return found


def machine_cpu_seconds() -> float:
    """CPU seconds the whole machine has been busy (all cores, every process): /proc/stat."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return math.nan
    # user, nice, system, irq, softirq: not idle, iowait, nor the time the hypervisor stole (steal).
    busy = sum(fields[:3]) + sum(fields[5:7])
    return busy / os.sysconf("SC_CLK_TCK")


class Backends:
    """The CPU of the PostgreSQL backends that serve one database, followed by sampling ``pg_stat_activity``:
    each backend's last reading counts, so one that ends between two samples loses its last tenth of a second
    at most. PostgreSQL's shared processes (WAL writer, checkpointer...) and other databases' backends (other
    users of a shared server) are not counted."""

    def __init__(self) -> None:
        self._base: dict[int, float] = {}
        self._last: dict[int, float] = {}

    def read(self, pids: list[int], *, start: bool = False) -> None:
        for pid in pids:
            used = cpu_seconds(pid)
            if math.isnan(used):
                continue
            self._last[pid] = used
            if start:
                self._base[pid] = used

    @property
    def cpu(self) -> float:
        """CPU seconds since the start reading (a backend born since counts from zero)."""
        return sum(used - self._base.get(pid, 0.0) for pid, used in self._last.items())

    @property
    def opened(self) -> int:
        """Backends (connections) that started since the start reading."""
        return len(set(self._last) - set(self._base))


def rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` and its descendants (VmRSS, summed)."""
    total = 0
    for each in _tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{each}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
                    break
    return total


# --------------------------------------------------------------------------------------------------
# The lean streaming client
# --------------------------------------------------------------------------------------------------


class StreamError(Exception):
    pass


@dataclass
class Outcome:
    """One stream, timed from the moment its request was written."""

    started: float = 0.0
    first_event: float | None = None  # thread.run.created read (absolute, perf_counter)
    first_delta: float | None = None
    ended: float | None = None
    events: int = 0
    error: str | None = None
    timed_out: bool = False


async def _read_chunked(reader: asyncio.StreamReader) -> Any:
    """The body of a chunked response, piece by piece (an async generator of bytes)."""
    while True:
        size_line = await reader.readline()
        if not size_line:
            raise StreamError("connection closed inside the chunked body")
        size = int(size_line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            await reader.readline()
            return
        data = await reader.readexactly(size + 2)
        yield data[:-2]


async def _read_plain(reader: asyncio.StreamReader) -> Any:
    while data := await reader.read(65536):
        yield data


async def stream_run(
    host: str, port: int, prefix: str, thread_id: str, assistant_id: str, outcome: Outcome
) -> None:
    """Create a streaming run on ``thread_id`` and read its stream to the end, checking it as it goes."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        body = json.dumps({"assistant_id": assistant_id, "stream": True}).encode()
        head = (
            f"POST {prefix}/threads/{thread_id}/runs HTTP/1.1\r\n"
            f"Host: {host}:{port}\r\n"
            f"Authorization: Bearer {API_KEY}\r\n"
            "OpenAI-Beta: assistants=v2\r\n"
            "Accept: text/event-stream\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n"
        )
        outcome.started = time.perf_counter()
        writer.write(head.encode() + body)
        status_line = await reader.readline()
        if not status_line:
            raise StreamError("connection closed before the status line")
        status = int(status_line.split()[1])
        headers: dict[str, str] = {}
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        chunked = headers.get("transfer-encoding", "").lower() == "chunked"
        pieces = _read_chunked(reader) if chunked else _read_plain(reader)
        if status != 200:
            text = b"".join([piece async for piece in pieces]).decode(errors="replace")
            raise StreamError(f"HTTP {status}: {text[:300]}")
        await _check_events(pieces, outcome)
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def _check_events(pieces: Any, outcome: Outcome) -> None:
    buffer = b""
    names: list[str] = []
    text: list[str] = []
    done = False
    async for piece in pieces:
        buffer += piece
        while b"\n\n" in buffer:
            frame, buffer = buffer.split(b"\n\n", 1)
            event, data = "", ""
            for line in frame.decode().split("\n"):
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    data += line[5:].strip()
            if done:
                raise StreamError(f"{event} after done")
            if event == "done":
                if data != "[DONE]":
                    raise StreamError(f"done carried {data!r}")
                done = True
                continue
            payload = json.loads(data)
            outcome.events += 1
            now = time.perf_counter()
            if not names:
                outcome.first_event = now
                if event != "thread.run.created":
                    raise StreamError(f"the stream opened with {event}")
            if event == "thread.message.delta":
                if outcome.first_delta is None:
                    outcome.first_delta = now
                for part in payload["delta"]["content"]:
                    text.append(part["text"]["value"])
            elif event == "error":
                raise StreamError(f"error event: {data[:300]}")
            names.append(event)
    if not done:
        raise StreamError(f"the stream ended without done after {names[-3:]}")
    if not names or names[-1] != "thread.run.completed":
        raise StreamError(f"the run ended {names[-1] if names else 'without events'}")
    if "".join(text) != "".join(CHUNKS):
        raise StreamError(f"the deltas carried {''.join(text)!r}")
    outcome.ended = time.perf_counter()


async def _one(
    base: tuple[str, int, str], thread_id: str, assistant_id: str, limit_s: float, outcome: Outcome
) -> None:
    try:
        async with asyncio.timeout(limit_s):
            await stream_run(*base, thread_id, assistant_id, outcome)
    except TimeoutError:
        outcome.timed_out = True
        outcome.error = f"timed out after {limit_s:g} s"
    except Exception as exc:  # counted and reported: a benchmark under load
        outcome.error = f"{type(exc).__name__}: {exc}"


# --------------------------------------------------------------------------------------------------
# The burst
# --------------------------------------------------------------------------------------------------


@dataclass
class Sample:
    at: float
    cpu: float
    rss: int
    in_flight: int  # streams whose run was created (first event read) and has not ended
    open_requests: int  # requests written and not ended
    pg_connections: int | None = None
    queued: int | None = None  # runs whose status is still queued (PostgreSQL only)


@dataclass
class Burst:
    outcomes: list[Outcome]
    wall: float
    samples: list[Sample] = field(default_factory=list)
    baseline_rss: int = 0
    baseline_cpu: float = 0.0
    end_cpu: float = 0.0
    client_cpu: float = 0.0
    upstream_cpu: float = 0.0
    machine_cpu: float = 0.0  # CPU seconds every process on the machine used meanwhile
    transactions: float = math.nan  # PostgreSQL: transactions committed or rolled back in the database
    postgres_cpu: float | None = None  # the benchmark database's backends (Backends)
    connections_opened: int | None = None


async def _setup(base_url: str, threads: int) -> tuple[str, list[str]]:
    """The assistant and ``threads`` threads with a user message, made by 20 lean clients."""
    clients = [LeanClient(base_url, API_KEY) for _ in range(20)]
    try:
        assistant, _ = await clients[0].request(
            "POST", "/assistants", {"model": MODEL, "name": "capacity", "instructions": "Be brief."}
        )
        made: list[str] = []

        async def make(client: LeanClient, count: int) -> None:
            for _ in range(count):
                made.append(await client.create_thread("Hello"))

        share = [threads // len(clients) + (i < threads % len(clients)) for i in range(len(clients))]
        await asyncio.gather(*(make(c, n) for c, n in zip(clients, share, strict=True)))
        return str(assistant["id"]), made
    finally:
        for client in clients:
            await client.close()


async def _transactions(pg: Any, database: str) -> float:
    """Transactions the database has committed and rolled back (statistics lag by up to half a second)."""
    if pg is None:
        return math.nan
    await asyncio.sleep(1.1)  # PostgreSQL flushes a backend's statistics at most once a second
    await pg.execute("SELECT pg_stat_clear_snapshot()")
    found = await pg.fetchval(
        "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = $1", database
    )
    return float(found)


async def _pg_connections(pg_url: str | None) -> Any:
    if pg_url is None:
        return None
    import asyncpg

    return await asyncpg.connect(pg_url)


async def _burst(
    base_url: str,
    pids: list[int],
    upstream_pid: int,
    runs: int,
    warmup: int,
    limit_s: float,
    pg_url: str | None,
) -> Burst:
    parts = urlsplit(base_url)
    base = (parts.hostname or "127.0.0.1", parts.port or 80, parts.path.rstrip("/"))
    assistant_id, threads = await _setup(base_url, runs + warmup)
    # Warm-up: a few streams one after the other, so first-use costs (imports, pools) are not counted.
    for thread_id in threads[:warmup]:
        outcome = Outcome()
        await _one(base, thread_id, assistant_id, limit_s, outcome)
        if outcome.error:
            raise RuntimeError(f"warm-up stream failed: {outcome.error}")
    threads = threads[warmup:]
    await asyncio.sleep(1.0)
    baseline_rss = sum(rss_bytes(pid) for pid in pids)
    pg = await _pg_connections(pg_url)
    database = urlsplit(pg_url).path.lstrip("/") if pg_url else ""
    backends = Backends()

    async def backend_pids() -> list[int]:
        assert pg is not None
        found = await pg.fetch("SELECT pid FROM pg_stat_activity WHERE datname = $1", database)
        return [int(row["pid"]) for row in found]

    baseline_cpu = sum(cpu_seconds(pid) for pid in pids)
    upstream_before = cpu_seconds(upstream_pid)
    client_before = time.process_time()
    machine_before = machine_cpu_seconds()
    if pg is not None:
        backends.read(await backend_pids(), start=True)
    transactions_before = await _transactions(pg, database)
    outcomes = [Outcome() for _ in threads]
    samples: list[Sample] = []

    async def sample() -> None:
        while True:
            in_flight = sum(
                1 for o in outcomes if o.first_event is not None and o.ended is None and not o.error
            )
            opened = sum(1 for o in outcomes if o.started and o.ended is None and not o.error)
            connections = queued = None
            if pg is not None:
                serving = await backend_pids()
                connections = len(serving)
                backends.read(serving)
                queued = await pg.fetchval("SELECT count(*) FROM runs WHERE status = 'queued'")
            samples.append(
                Sample(
                    time.perf_counter(),
                    sum(cpu_seconds(pid) for pid in pids),
                    sum(rss_bytes(pid) for pid in pids),
                    in_flight,
                    opened,
                    connections,
                    queued,
                )
            )
            await asyncio.sleep(0.1)

    sampler = asyncio.create_task(sample())
    started = time.perf_counter()
    try:
        await asyncio.gather(
            *(_one(base, t, assistant_id, limit_s, o) for t, o in zip(threads, outcomes, strict=True))
        )
    finally:
        wall = time.perf_counter() - started
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
    burst = Burst(
        outcomes,
        wall,
        samples,
        baseline_rss,
        baseline_cpu,
        end_cpu=sum(cpu_seconds(pid) for pid in pids),
        client_cpu=time.process_time() - client_before,
        upstream_cpu=cpu_seconds(upstream_pid) - upstream_before,
        machine_cpu=machine_cpu_seconds() - machine_before,
    )
    if pg is not None:
        backends.read(await backend_pids())
        burst.postgres_cpu, burst.connections_opened = backends.cpu, backends.opened
    if pg is not None:
        # Less the sampler's own two statements a sample (each a transaction of its own).
        ended = await _transactions(pg, database)
        burst.transactions = ended - transactions_before - 2 * len(samples)
        await pg.close()
    return burst


def _run_loop(coroutine: Any) -> Any:
    """Run on uvloop when it is there (as uvicorn does): the clients' own CPU is a share of the machine."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coroutine)


def _log_problems(servers: list[AssistdServer]) -> list[str]:
    lines: list[str] = []
    for server in servers:
        for line in server.log().splitlines():
            if any(word in line for word in ("WARNING", "ERROR", "Traceback", "CRITICAL")):
                lines.append(line.strip())
    return lines


def measure(
    mode: str,
    runs: int,
    upstream_seconds: float,
    timeout: float,
    env: dict[str, str],
    logs: Path | None = None,
) -> Result:
    label = {
        "sqlite": "SQLite, 1 process",
        "pg": "PostgreSQL, 1 process",
        "pg-split": "PostgreSQL, API + worker",
    }
    result = Result(
        f"capacity ({label[mode]})",
        f"{runs} streaming runs at once, upstream {upstream_seconds:g} s per reply",
    )
    admin = os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
    with ExitStack() as stack:
        upstream, upstream_pid = stack.enter_context(slow_upstream(upstream_seconds))
        pg_url = (
            None
            if mode == "sqlite"
            else stack.enter_context(pg_database(admin, _warn_when_connections_short))
        )
        if mode == "pg-split":
            assert pg_url is not None
            api = _start(stack, pg_url, upstream, env, api=True)
            servers = [api, _start(stack, pg_url, upstream, env, worker=True)]
        else:
            api = _start(stack, pg_url or "sqlite", upstream, env)
            servers = [api]
        pids = [s.process.pid for s in servers if s.process is not None]
        burst = _run_loop(_burst(api.base_url, pids, upstream_pid, runs, 5, timeout, pg_url))
        problems = _log_problems(servers)
        if logs is not None:
            logs.mkdir(parents=True, exist_ok=True)
            for index, server in enumerate(servers):
                (logs / f"{mode}-{index}.log").write_text(server.log())
    _report(result, burst, runs, upstream_seconds, problems)
    return result


def _report(result: Result, burst: Burst, runs: int, upstream_seconds: float, problems: list[str]) -> None:
    outcomes = burst.outcomes
    failed = [o for o in outcomes if o.error]
    timed_out = [o for o in failed if o.timed_out]
    first_event, first_delta, total = Latency(), Latency(), Latency()
    for o in outcomes:
        if o.error:
            continue
        assert o.first_event is not None and o.first_delta is not None and o.ended is not None
        first_event.add(o.first_event - o.started)
        first_delta.add(o.first_delta - o.started)
        total.add(o.ended - o.started)
    cpu = burst.end_cpu - burst.baseline_cpu
    peak = max(burst.samples, key=lambda s: (s.in_flight, -s.at), default=None)
    peak_in_flight = peak.in_flight if peak else 0
    peak_rss = max((s.rss for s in burst.samples), default=burst.baseline_rss)
    rss_at_peak = peak.rss if peak else burst.baseline_rss
    mib = 1024 * 1024
    result.metric("errors", float(len(failed) - len(timed_out)), "", at_most=0)
    result.metric("timeouts", float(len(timed_out)), "", at_most=0)
    result.metric("wall time", burst.wall, "s")
    result.metric("ideal", upstream_seconds, "s")
    result.metric("peak runs in flight", float(peak_in_flight), "runs")
    result.metric("server CPU per run", cpu / runs * 1000, "ms")
    result.metric("server cores used", cpu / burst.wall, "cores")
    result.metric(
        "RSS over baseline per run in flight",
        (rss_at_peak - burst.baseline_rss) / max(peak_in_flight, 1) / 1024,
        "KiB",
    )
    plateau_s = None
    plateau = [s for s in burst.samples if peak_in_flight and s.in_flight >= 0.9 * peak_in_flight]
    if len(plateau) >= 2 and plateau[-1].at - plateau[0].at >= 1.0:
        # The CPU a run costs while it is held, streaming its reply (and, past a third of the lease, its
        # heartbeats): what the server spends per second on the runs in flight, at the plateau.
        rate = (plateau[-1].cpu - plateau[0].cpu) / (plateau[-1].at - plateau[0].at)
        held = sum(s.in_flight for s in plateau) / len(plateau)
        result.metric("server CPU per run in flight, at the plateau", rate / held * 1000, "ms/s")
        plateau_s = round(plateau[-1].at - plateau[0].at, 2)
    result.metric("RSS baseline", burst.baseline_rss / mib, "MiB")
    result.metric("RSS peak", peak_rss / mib, "MiB")
    result.metric("request -> first event p50", first_event.p50, "ms")
    result.metric("request -> first event p99", first_event.p99, "ms")
    result.metric("request -> first delta p50", first_delta.p50, "ms")
    result.metric("request -> first delta p99", first_delta.p99, "ms")
    result.metric("request -> done p50", total.p50, "ms")
    result.metric("request -> done p99", total.p99, "ms")
    result.metric("server log warnings/errors", float(len(problems)), "", at_most=0)
    connections = [s.pg_connections for s in burst.samples if s.pg_connections is not None]
    if connections:
        result.metric("PostgreSQL connections, peak", float(max(connections)), "")
    result.details = {
        "plateau_s": plateau_s,
        "first_event": first_event.summary(),
        "first_delta": first_delta.summary(),
        "done": total.summary(),
        "server_cpu_s": round(cpu, 2),
        "client_cpu_s": round(burst.client_cpu, 2),
        "upstream_cpu_s": round(burst.upstream_cpu, 2),
        "postgres_cpu_s": None if burst.postgres_cpu is None else round(burst.postgres_cpu, 2),
        "machine_cpu_s": round(burst.machine_cpu, 2),
        "first_errors": sorted({o.error for o in failed if o.error})[:5],
        "log_problems": problems[:10],
        "timeline": [
            {
                "t": round(s.at - burst.samples[0].at, 2),
                "in_flight": s.in_flight,
                "open": s.open_requests,
                "rss_mib": round(s.rss / mib, 1),
                "cpu_s": round(s.cpu - burst.baseline_cpu, 2),
                **({"pg": s.pg_connections, "queued": s.queued} if s.pg_connections is not None else {}),
            }
            for s in burst.samples[:: max(1, len(burst.samples) // 60)]
        ],
    }
    if burst.postgres_cpu is not None:
        result.metric("PostgreSQL CPU per run", burst.postgres_cpu / runs * 1000, "ms")
    if not math.isnan(burst.transactions):
        result.metric("PostgreSQL transactions per run", burst.transactions / runs, "")
    if burst.connections_opened is not None:
        result.metric("PostgreSQL connections opened", float(burst.connections_opened), "")
    ours = cpu + burst.client_cpu + burst.upstream_cpu + (burst.postgres_cpu or 0.0)
    result.metric("machine cores busy (every process)", burst.machine_cpu / burst.wall, "cores")
    result.metric("of which not this benchmark's", max(0.0, burst.machine_cpu - ours) / burst.wall, "cores")
    postgres = "" if burst.postgres_cpu is None else f", PostgreSQL CPU {burst.postgres_cpu:.1f} s"
    result.notes.append(
        f"server CPU {cpu:.1f} s, client CPU {burst.client_cpu:.1f} s, fake upstream CPU "
        f"{burst.upstream_cpu:.1f} s{postgres}; the machine {burst.machine_cpu:.1f} s in {burst.wall:.1f} s"
    )
    for error in result.details["first_errors"]:
        result.notes.append(f"error: {error}")
    for line in problems[:5]:
        result.notes.append(f"server log: {line[:300]}")


def run(
    runs: int = 1000,
    upstream_seconds: float = 2.0,
    modes: tuple[str, ...] = MODES,
    timeout: float | None = None,
    env: dict[str, str] | None = None,
    logs: Path | None = None,
) -> list[Result]:
    raise_fd_limit(runs)
    stream_timeout = timeout if timeout is not None else max(60.0, 30 * upstream_seconds)
    return [measure(mode, runs, upstream_seconds, stream_timeout, env or {}, logs) for mode in modes]


def main() -> None:
    parser = arg_parser(__doc__ or "")
    parser.add_argument("--runs", type=int, default=1000, help="streaming runs started at once")
    parser.add_argument("--upstream-seconds", type=float, default=2.0, help="how long each reply takes")
    parser.add_argument("--mode", action="append", choices=MODES, help="repeatable; default: all")
    parser.add_argument("--timeout", type=float, default=None, help="seconds a stream may take (60)")
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an ASSISTD_ setting for the servers, e.g. WORKERS=200 (repeatable; default: shipped defaults)",
    )
    parser.add_argument("--logs", type=Path, metavar="DIR", help="keep the servers' logs in DIR")
    args = parser.parse_args()
    env = {}
    for item in args.env:
        name, _, value = item.partition("=")
        env[name if name.startswith("ASSISTD_") else f"ASSISTD_{name}"] = value
    runs = 50 if args.quick else args.runs
    results = run(runs, args.upstream_seconds, tuple(args.mode or MODES), args.timeout, env, args.logs)
    print_results(results)
    write_json(args.json, results)
    if any(m.met is False for r in results for m in r.metrics):
        sys.exit(1)


if __name__ == "__main__":
    main()
