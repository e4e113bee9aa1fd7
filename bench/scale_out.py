"""Scale-out on one PostgreSQL, measured side by side in one run on this machine:

1. Throughput (completed runs per second, 50 lean clients, thread+message -> create_and_poll): SQLite and
   PostgreSQL each with one `assistd serve` process and with `serve --processes 2`, and PostgreSQL with one
   API replica (`serve --workers 0`) and 1, 2 and 4 `assistd worker` processes.
2. First-delta overhead through a replica that does not execute the run: the time from the upstream
   sending a content chunk to the client reading its ``thread.message.delta``, streaming through the
   executing replica (`serve`) and through an API-only one (`serve --workers 0`) on the same database.

    BENCH_PG=postgresql://postgres@127.0.0.1:5432/test python bench/scale_out.py [--quick]
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg

from bench.common import (
    API_KEY,
    Latency,
    Result,
    arg_parser,
    client_for,
    cpu_seconds,
    create_assistant,
    fake_upstream_process,
    pg_database,
    postgres_cpu_seconds,
    print_results,
    write_json,
)
from bench.stream_latency import CHUNKS, TimedFake
from bench.throughput import _drive
from fake_upstream import Text
from server import AssistdServer

TARGET_RUNS_PER_SECOND = 100.0
TARGET_OVERHEAD_MS = 10.0


def _start(
    stack: ExitStack, url: str, upstream: str, *, worker: bool = False, args: tuple[str, ...] = ()
) -> AssistdServer:
    settings = {
        "ASSISTD_API_KEYS": API_KEY,
        "ASSISTD_UPSTREAM_BASE_URL": upstream,
        "ASSISTD_UPSTREAM_API_KEY": "sk-upstream-bench",
        "ASSISTD_MAINTENANCE_INTERVAL_SECONDS": "1.0",
    }
    directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="assistd-scale-")))
    server = AssistdServer(directory, url, settings, worker=worker, args=args)
    server.start(timeout=60)
    stack.callback(server.stop)
    return server


def _throughput(
    label: str,
    url: str,
    workers: int,
    clients: int,
    duration: float,
    warmup: float,
    serve_args: tuple[str, ...] = (),
) -> Result:
    """``workers`` 0: one `serve` (with ``serve_args``, e.g. ``--processes 2``) that executes; else an
    API-only replica and that many workers."""
    result = Result(f"scale-out throughput ({label})", f"{clients} lean clients, {duration:g} s measured")
    with ExitStack() as stack, fake_upstream_process() as (fake_url, _):
        if workers == 0:
            api = _start(stack, url, fake_url, args=serve_args)
            executors = [api]
        else:
            api = _start(stack, url, fake_url, args=("--workers", "0"))
            executors = [_start(stack, url, fake_url, worker=True) for _ in range(workers)]
        with client_for(api) as client:
            assistant_id = create_assistant(client)
        pids = [s.process.pid for s in {id(s): s for s in [api, *executors]}.values() if s.process]
        cpu_before = sum(cpu_seconds(pid) for pid in pids)
        postgres_before = postgres_cpu_seconds()
        wal_before = _wal_position(url)
        started = time.perf_counter()
        latency, errors = asyncio.run(
            _drive(api.base_url, API_KEY, assistant_id, clients, warmup, duration, True)
        )
        wall = time.perf_counter() - started
        cpu_used = sum(cpu_seconds(pid) for pid in pids) - cpu_before
        postgres_used = postgres_cpu_seconds() - postgres_before
        wal_bytes = _wal_bytes_since(url, wal_before)
    rate = latency.n / duration
    result.metric("runs/s", rate, "runs/s", at_least=TARGET_RUNS_PER_SECOND)
    result.metric("cycle p50", latency.p50, "ms")
    result.metric("errors", float(len(errors)), "")
    result.details = {
        "cpu_cores_used_by_assistd": round(cpu_used / wall, 2),
        # Cores busy over the whole drive (warm-up included) per run/s of the measured window.
        "cpu_ms_per_run_assistd": round(1000 * (cpu_used / wall) / max(rate, 1e-9), 2),
        "first_errors": errors[:3],
    }
    result.notes.append(f"assistd processes used {cpu_used / wall:.2f} cores")
    if url.startswith("postgresql") and postgres_used == postgres_used:  # not NaN: a local server
        result.details["cpu_cores_used_by_postgresql"] = round(postgres_used / wall, 2)
        result.notes.append(f"PostgreSQL used {postgres_used / wall:.2f} cores")
    if wal_bytes is not None:
        # Every run of the drive, warm-up included, wrote WAL: per run of the whole drive.
        runs = max(1, round(rate * wall))
        result.details["wal_bytes_per_run"] = round(wal_bytes / runs)
        result.notes.append(f"WAL written: about {wal_bytes / runs / 1024:.1f} KiB per run")
    return result


def _wal_position(url: str) -> str | None:
    if not url.startswith("postgresql"):
        return None

    async def read() -> str:
        connection = await asyncpg.connect(url)
        try:
            return str(await connection.fetchval("SELECT pg_current_wal_lsn()::text"))
        finally:
            await connection.close()

    return asyncio.run(read())


def _wal_bytes_since(url: str, position: str | None) -> float | None:
    """Bytes of WAL the server wrote since ``position`` (all databases: nothing else runs meanwhile)."""
    if position is None:
        return None

    async def read() -> float:
        connection = await asyncpg.connect(url)
        try:
            diff = "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::text::pg_lsn)"
            return float(await connection.fetchval(diff, position))
        finally:
            await connection.close()

    return asyncio.run(read())


def _first_deltas(server: AssistdServer, fake: TimedFake, assistant_id: str, streams: int) -> Latency:
    first = Latency()
    with client_for(server) as client:
        for i in range(streams + 5):
            thread = client.beta.threads.create(messages=[{"role": "user", "content": "Hello"}])
            fake.sent_at.clear()
            received: list[float] = []
            for event in client.beta.threads.runs.create(
                thread_id=thread.id, assistant_id=assistant_id, stream=True
            ):
                if event.event == "thread.message.delta":
                    received.append(time.perf_counter())
            if i >= 5:
                first.add(received[0] - fake.sent_at[1])
    return first


def _overhead(url: str, streams: int) -> Result:
    result = Result(
        "scale-out first delta through a non-executing replica",
        f"upstream chunk sent -> delta read, n={streams} each, PostgreSQL",
    )
    fake = TimedFake(record=False, default=Text("".join(CHUNKS), chunks=CHUNKS, chunk_delay_s=0.02))
    fake.start()
    try:
        with ExitStack() as stack:
            executing = _start(stack, url, fake.base_url)
            relaying = _start(stack, url, fake.base_url, args=("--workers", "0"))
            with client_for(executing) as client:
                assistant_id = create_assistant(client)
            own = _first_deltas(executing, fake, assistant_id, streams)
            other = _first_deltas(relaying, fake, assistant_id, streams)
    finally:
        fake.stop()
    result.metric("executing replica p50", own.p50, "ms")
    result.metric("API-only replica p50", other.p50, "ms")
    result.metric("overhead p50", other.p50 - own.p50, "ms", at_most=TARGET_OVERHEAD_MS)
    result.metric("API-only replica p99", other.p99, "ms")
    return result


def main() -> None:
    parser = arg_parser(__doc__ or "")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--duration", type=float, default=10.0)
    args = parser.parse_args()
    admin = os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
    duration, warmup, streams = (3.0, 1.0, 10) if args.quick else (args.duration, 3.0, 50)
    results = []
    two = ("--processes", "2")
    for label, serve_args in (("1 process", ()), ("serve --processes 2", two)):
        with tempfile.TemporaryDirectory() as tmp:
            sqlite_url = f"sqlite:///{tmp}/b.db"
            results.append(
                _throughput(f"SQLite, {label}", sqlite_url, 0, args.clients, duration, warmup, serve_args)
            )
        with pg_database(admin) as url:
            results.append(
                _throughput(f"PostgreSQL, {label}", url, 0, args.clients, duration, warmup, serve_args)
            )
    for workers in (1, 2, 4):
        with pg_database(admin) as url:
            label = f"PostgreSQL, API replica + {workers} worker{'s' if workers > 1 else ''}"
            results.append(_throughput(label, url, workers, args.clients, duration, warmup))
    with pg_database(admin) as url:
        results.append(_overhead(url, streams))
    print_results(results)
    write_json(args.json, results)


if __name__ == "__main__":
    main()
