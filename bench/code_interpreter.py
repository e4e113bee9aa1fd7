"""code_interpreter's sandbox: session start (cold and warm), a trivial call's round trip, the same call
inside a whole run, and how many sessions fit in this machine's memory.

The sandbox figures drive ``LocalSandbox`` itself (the real launcher, namespaces, limits and worker,
as the server runs them). Cold start is the first session after the page cache was dropped (when root may
drop it; noted otherwise), warm start any later new session. The run figure is end to end through a real
server: ``create_and_poll`` of a run whose model calls code_interpreter once, against the instant fake
upstream, minus the same run without the call. Memory is each worker's proportional set size (PSS, from
``/proc/PID/smaps_rollup``) with nothing imported and after importing numpy, pandas and matplotlib; the
fit is ``MemAvailable`` divided by the latter.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from assistd.config import Settings
from assistd.sandbox.local import LocalSandbox
from bench.common import Latency, Result, arg_parser, assistd_server, client_for, print_results, write_json
from fake_upstream import FakeUpstream, Text, ToolCalls

HEAVY_IMPORTS = "import numpy, pandas, matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot"


def _pss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/smaps_rollup") as handle:
        for line in handle:
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return 0


def _mem_available_kib() -> int:
    with open("/proc/meminfo") as handle:
        for line in handle:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1])
    return 0


def _drop_caches() -> bool:
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


async def _sandbox_figures(result: Result, starts: int, calls: int, sessions: int) -> None:
    with tempfile.TemporaryDirectory(prefix="assistd-bench-code-") as data_dir:
        settings = Settings(data_dir=Path(data_dir), code_max_sessions=max(sessions, starts) + 1)
        sandbox = LocalSandbox(settings)
        await sandbox.start()
        try:
            dropped = _drop_caches()
            started = time.perf_counter()
            await sandbox.execute("cold", "1", [])
            cold = time.perf_counter() - started
            warm = Latency()
            for n in range(starts):
                started = time.perf_counter()
                await sandbox.execute(f"warm{n}", "1", [])
                warm.add(time.perf_counter() - started)
                await sandbox.forget(f"warm{n}")
            trivial = Latency()
            for _ in range(calls):
                started = time.perf_counter()
                execution = await sandbox.execute("cold", "print(1)", [])
                trivial.add(time.perf_counter() - started)
                assert execution.logs == "1\n", execution.logs
            started = time.perf_counter()
            await sandbox.execute("cold", HEAVY_IMPORTS, [])
            heavy_import = time.perf_counter() - started

            available = _mem_available_kib()
            keys = [f"mem{n}" for n in range(sessions)]
            await asyncio.gather(*(sandbox.execute(key, "1", []) for key in keys))
            bare = [_pss_kib(sandbox._sessions[key].pid) for key in keys]
            for key in keys:  # one at a time: each import is CPU-bound
                execution = await sandbox.execute(key, HEAVY_IMPORTS, [])
                assert execution.error is None, execution.logs
            loaded = [_pss_kib(sandbox._sessions[key].pid) for key in keys]
        finally:
            await sandbox.close()
    result.metric("session start, cold", cold * 1000, "ms")
    result.metric("session start, warm p50", warm.p50, "ms")
    result.metric("session start, warm p99", warm.p99, "ms")
    result.metric("trivial call (print(1)) p50", trivial.p50, "ms")
    result.metric("trivial call p99", trivial.p99, "ms")
    result.metric("import numpy+pandas+matplotlib", heavy_import * 1000, "ms")
    per_bare = sum(bare) / len(bare) / 1024
    per_loaded = sum(loaded) / len(loaded) / 1024
    result.metric(f"PSS per session, bare ({sessions} running)", per_bare, "MiB")
    result.metric(f"PSS per session, numpy+pandas+matplotlib ({sessions} running)", per_loaded, "MiB")
    result.metric("sessions that fit in MemAvailable (loaded)", available / 1024 / per_loaded, "sessions")
    result.details["mem_available_mib"] = round(available / 1024)
    if not dropped:
        result.notes.append(
            "page cache not dropped (not root): 'cold' start is a first start with warm caches"
        )


def _run_figures(result: Result, runs: int) -> None:
    with (
        FakeUpstream(models=["fake-model"], instant=True) as fake,
        assistd_server(fake.base_url) as server,
        client_for(server) as client,
    ):
        assistant = client.beta.assistants.create(model="fake-model", tools=[{"type": "code_interpreter"}]).id
        plain = client.beta.assistants.create(model="fake-model").id
        with_code, without = Latency(), Latency()
        for n in range(runs + 3):
            thread = client.beta.threads.create(messages=[{"role": "user", "content": "print(1)"}]).id
            for target, samples in ((assistant, with_code), (plain, without)):
                if target == assistant:
                    fake.push(ToolCalls([("code_interpreter", {"code": "print(1)"})]), Text("1"))
                else:
                    fake.push(Text("1"))
                started = time.perf_counter()
                run = client.beta.threads.runs.create_and_poll(
                    thread_id=thread, assistant_id=target, poll_interval_ms=25
                )
                elapsed = time.perf_counter() - started
                assert run.status == "completed", run.last_error
                if n >= 3:
                    samples.add(elapsed)
    result.metric("run with one code call, create_and_poll p50", with_code.p50, "ms")
    result.metric("same run without the call p50", without.p50, "ms")
    result.metric("code call's share of a run p50", with_code.p50 - without.p50, "ms")


def run(starts: int = 20, calls: int = 200, sessions: int = 16, runs: int = 30) -> Result:
    result = Result("code_interpreter", "sandbox session start, call round trip, memory per session")
    asyncio.run(_sandbox_figures(result, starts, calls, sessions))
    with contextlib.suppress(KeyboardInterrupt):
        _run_figures(result, runs)
    return result


def main() -> None:
    parser = arg_parser(__doc__ or "")
    parser.add_argument(
        "--sessions", type=int, default=16, help="sessions held at once for the memory figure"
    )
    args = parser.parse_args()
    quick = bool(args.quick)
    result = run(
        starts=5 if quick else 20,
        calls=20 if quick else 200,
        sessions=4 if quick else args.sessions,
        runs=5 if quick else 30,
    )
    print_results([result])
    write_json(args.json, [result])


if __name__ == "__main__":
    main()
