"""Throughput: completed runs per second with 50 concurrent clients.

Each client (an asyncio task sharing one ``AsyncOpenAI``) loops: create a thread with one user message,
then ``runs.create_and_poll`` on it. Cycles that end during the warm-up are not counted; the rate is the
number of runs completed inside the measuring window divided by its length, and the latency is that of
a whole cycle (thread + message + run until completed). The upstream is the ``--instant`` fake in its own
process; the CPU each process used in the window is reported, since the client, the fake and assistd
share this machine's cores.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from openai import AsyncOpenAI

from bench.common import (
    API_KEY,
    Latency,
    Result,
    arg_parser,
    assistd_server,
    client_for,
    cpu_seconds,
    create_assistant,
    fake_upstream_process,
    print_results,
    wait_for_processes,
    write_json,
)
from bench.lean_client import LeanClient

TARGET_RUNS_PER_SECOND = 100.0


# One cycle: create a thread with a message, create_and_poll a run on it; the run's id and final status.
Cycle = Callable[[], Awaitable[tuple[str, str]]]


async def _loop(cycle: Cycle, window: tuple[float, float], latency: Latency, errors: list[str]) -> None:
    start_at, end_at = window
    while time.perf_counter() < end_at:
        start = time.perf_counter()
        try:
            run_id, status = await cycle()
        except Exception as exc:  # counted and reported, not fatal: a benchmark under load
            errors.append(f"{type(exc).__name__}: {exc}")
            continue
        done = time.perf_counter()
        if status != "completed":
            errors.append(f"run {run_id} ended {status}")
        elif start_at <= done <= end_at:
            latency.add(done - start)


def _sdk_cycle(client: AsyncOpenAI, assistant_id: str) -> Cycle:
    async def cycle() -> tuple[str, str]:
        thread = await client.beta.threads.create(messages=[{"role": "user", "content": "Hello"}])
        run = await client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant_id)
        return run.id, run.status

    return cycle


def _lean_cycle(client: LeanClient, assistant_id: str) -> Cycle:
    async def cycle() -> tuple[str, str]:
        try:
            run = await client.create_and_poll(await client.create_thread("Hello"), assistant_id)
        except Exception:
            await client.close()  # the next cycle starts on a new connection
            raise
        return str(run["id"]), str(run["status"])

    return cycle


async def _drive(
    base_url: str,
    api_key: str,
    assistant_id: str,
    clients: int,
    warmup: float,
    duration: float,
    lean: bool = False,
) -> tuple[Latency, list[str]]:
    latency = Latency()
    errors: list[str] = []
    now = time.perf_counter()
    window = (now + warmup, now + warmup + duration)
    if lean:
        lean_clients = [LeanClient(base_url, api_key) for _ in range(clients)]
        try:
            cycles = [_lean_cycle(client, assistant_id) for client in lean_clients]
            await asyncio.gather(*(_loop(cycle, window, latency, errors) for cycle in cycles))
        finally:
            for client in lean_clients:
                await client.close()
        return latency, errors
    async with AsyncOpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=60) as sdk:
        cycle = _sdk_cycle(sdk, assistant_id)
        await asyncio.gather(*(_loop(cycle, window, latency, errors) for _ in range(clients)))
    return latency, errors


def run(
    clients: int = 50, duration: float = 20.0, warmup: float = 3.0, processes: int = 1, lean: bool = False
) -> Result:
    variant = [f"{processes} processes"] if processes > 1 else []
    variant += ["lean client"] if lean else []
    result = Result(
        f"throughput ({', '.join(variant)})" if variant else "throughput",
        f"{clients} concurrent {'lean (bench/lean_client.py)' if lean else 'SDK'} clients, "
        f"thread+message -> create_and_poll, {duration:g} s measured after {warmup:g} s warm-up, "
        f"assistd serve --processes {processes}",
    )
    with (
        fake_upstream_process() as (fake_url, fake_pid),
        assistd_server(fake_url, processes=str(processes)) as server,
    ):
        wait_for_processes(server, processes)
        with client_for(server) as client:
            assistant_id = create_assistant(client)
        assert server.process is not None
        server_pid = server.process.pid
        cpu_before = (cpu_seconds(server_pid), cpu_seconds(fake_pid), time.process_time())
        started = time.perf_counter()
        latency, errors = asyncio.run(
            _drive(server.base_url, API_KEY, assistant_id, clients, warmup, duration, lean)
        )
        wall = time.perf_counter() - started
        cpu_after = (cpu_seconds(server_pid), cpu_seconds(fake_pid), time.process_time())
    rate = latency.n / duration
    used = [after - before for before, after in zip(cpu_before, cpu_after, strict=True)]
    result.metric("runs/s", rate, "runs/s", at_least=TARGET_RUNS_PER_SECOND)
    result.metric("cycle p50", latency.p50, "ms")
    result.metric("cycle p99", latency.p99, "ms")
    result.metric("errors", float(len(errors)), "")
    result.details = {
        "clients": clients,
        "duration_s": duration,
        "warmup_s": warmup,
        "completed_in_window": latency.n,
        "runs_per_s": round(rate, 2),
        "cycle_latency": latency.summary(),
        "errors": len(errors),
        "first_errors": errors[:5],
        # Share of one core each process used over the whole drive (warm-up included).
        "cpu_cores_used": {
            "assistd": round(used[0] / wall, 2),
            "fake_upstream": round(used[1] / wall, 2),
            "bench_client": round(used[2] / wall, 2),
        },
        "nproc": os.cpu_count(),
    }
    cores = result.details["cpu_cores_used"]
    result.notes.append(
        f"CPU (cores busy): assistd {cores['assistd']}, client {cores['bench_client']}, "
        f"fake upstream {cores['fake_upstream']}"
    )
    if errors:
        result.notes.append(f"{len(errors)} errors, e.g. {errors[0]}")
    return result


def main() -> None:
    parser = arg_parser(__doc__ or "")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before measuring")
    parser.add_argument("--processes", type=int, default=1, help="assistd serve --processes")
    parser.add_argument(
        "--lean", action="store_true", help="drive it with bench/lean_client.py instead of the SDK"
    )
    args = parser.parse_args()
    duration = 4.0 if args.quick else args.duration
    warmup = 1.0 if args.quick else args.warmup
    results = [
        run(
            clients=args.clients,
            duration=duration,
            warmup=warmup,
            processes=args.processes,
            lean=args.lean,
        )
    ]
    print_results(results)
    write_json(args.json, results)


if __name__ == "__main__":
    main()
