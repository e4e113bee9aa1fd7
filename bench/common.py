"""Shared plumbing for the benchmarks: the fake upstream process, a real assistd server, statistics,
result tables and JSON output.

Every benchmark talks to a real ``python -m assistd serve`` subprocess over HTTP with the official
``openai`` SDK; only the upstream LLM is faked (``tests/fake_upstream.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from openai import OpenAI

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from server import AssistdServer  # noqa: E402

# The SDK marks the Assistants API deprecated; the benchmarks call it on purpose.
warnings.filterwarnings("ignore", category=DeprecationWarning)

API_KEY = "sk-bench"
MODEL = "fake-model"


# --------------------------------------------------------------------------------------------------
# Statistics and results
# --------------------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation between closest ranks."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


@dataclass
class Latency:
    """Latency samples in seconds, summarised in milliseconds."""

    samples: list[float] = field(default_factory=list)

    def add(self, seconds: float) -> None:
        self.samples.append(seconds)

    @property
    def n(self) -> int:
        return len(self.samples)

    def p(self, q: float) -> float:
        return percentile(self.samples, q) * 1000.0

    @property
    def p50(self) -> float:
        return self.p(50)

    @property
    def p99(self) -> float:
        return self.p(99)

    def summary(self) -> dict[str, float | int]:
        if not self.samples:
            return {"n": 0}
        return {
            "n": self.n,
            "p50_ms": round(self.p50, 3),
            "p90_ms": round(self.p(90), 3),
            "p99_ms": round(self.p99, 3),
            "min_ms": round(min(self.samples) * 1000.0, 3),
            "max_ms": round(max(self.samples) * 1000.0, 3),
            "mean_ms": round(sum(self.samples) / self.n * 1000.0, 3),
        }


@dataclass
class Metric:
    name: str
    value: float
    unit: str
    target: str | None = None
    met: bool | None = None


@dataclass
class Result:
    benchmark: str
    description: str
    metrics: list[Metric] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def metric(
        self,
        name: str,
        value: float,
        unit: str,
        *,
        at_most: float | None = None,
        at_least: float | None = None,
    ) -> None:
        target, met = None, None
        if at_most is not None:
            target, met = f"<= {at_most:g} {unit}", value <= at_most
        elif at_least is not None:
            target, met = f">= {at_least:g} {unit}", value >= at_least
        self.metrics.append(Metric(name, value, unit, target, met))

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def format_table(results: Sequence[Result]) -> str:
    rows = [("benchmark", "metric", "value", "target", "status")]
    for result in results:
        for m in result.metrics:
            value = f"{m.value:,.2f} {m.unit}"
            status = "" if m.met is None else ("met" if m.met else "MISSED")
            rows.append((result.benchmark, m.name, value, m.target or "", status))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for index, row in enumerate(rows):
        cells = [cell.rjust(widths[i]) if i == 2 else cell.ljust(widths[i]) for i, cell in enumerate(row)]
        lines.append("  ".join(cells).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def print_results(results: Sequence[Result]) -> None:
    print()
    print(format_table(results))
    for result in results:
        for note in result.notes:
            print(f"  [{result.benchmark}] {note}")
    sys.stdout.flush()


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["mem_gib"] = round(int(line.split()[1]) / 1024 / 1024, 1)
                break
    except OSError:
        pass
    return info


def write_json(path: str | None, results: Sequence[Result]) -> None:
    if not path:
        return
    payload = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": machine_info(),
        "results": [r.as_json() for r in results],
    }
    Path(path).write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {path}")


def arg_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    parser.add_argument("--quick", action="store_true", help="few iterations: a smoke run, not figures")
    return parser


# --------------------------------------------------------------------------------------------------
# Processes: the fake upstream and assistd
# --------------------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by process ``pid`` (all its threads) and its live descendants
    (``assistd serve --processes N``'s workers); Linux only."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return math.nan
    ticks = os.sysconf("SC_CLK_TCK")
    # Fields 14 and 15 (utime, stime) are at 11 and 12 after the ")" that ends the command name.
    total = (int(fields[11]) + int(fields[12])) / ticks
    for child in _children(pid):
        used = cpu_seconds(child)
        total += 0.0 if math.isnan(used) else used
    return total


def postgres_cpu_seconds() -> float:
    """CPU seconds used so far by the local PostgreSQL server: its postmaster, the backends that ended (the
    postmaster reaped them: cutime, cstime) and those alive; NaN when no local server is found (Linux)."""
    ticks = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().split(b"\0")
            if not command[0].endswith(b"/postgres") or b"-D" not in command:
                continue
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total = sum(int(value) for value in fields[11:15]) / ticks
        return total + sum(cpu_seconds(child) for child in _children(int(entry.name)))
    return math.nan


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            found += [int(child) for child in (task / "children").read_text().split()]
    except OSError:
        pass
    return found


@contextmanager
def fake_upstream_process(
    *args: str, timeout: float = 20.0, instant: bool = True
) -> Iterator[tuple[str, int]]:
    """``tests/fake_upstream.py --port 0 [--instant] ARGS`` in its own process; yields (base_url, pid)."""
    command = [sys.executable, str(TESTS / "fake_upstream.py"), "--port", "0", *args]
    if instant:
        command.append("--instant")
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT
    )
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + timeout
        url = None
        while url is None and time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                raise RuntimeError(f"fake upstream exited with {process.wait()} before it was ready")
            if line.startswith("fake upstream listening on "):
                url = line.rsplit(" ", 1)[1].strip()
        if url is None:
            raise RuntimeError("fake upstream did not announce its address")
        yield url, process.pid
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def pg_database(admin_url: str, check: Callable[[Any], Awaitable[None]] | None = None) -> Iterator[str]:
    """A fresh PostgreSQL database on ``admin_url``'s server, dropped afterwards; ``check`` is awaited with
    the admin connection first (e.g. to warn about the server's free connections)."""
    import asyncpg

    name = f"assistd_bench_{uuid.uuid4().hex[:8]}"

    async def admin(sql: str, *, checking: bool = False) -> None:
        connection = await asyncpg.connect(admin_url)
        try:
            if checking and check is not None:
                await check(connection)
            await connection.execute(sql)
        finally:
            await connection.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"', checking=True))
    try:
        yield admin_url.rsplit("/", 1)[0] + "/" + name
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextmanager
def assistd_server(
    upstream_url: str | None, *, data_dir: Path | None = None, **env: str
) -> Iterator[AssistdServer]:
    """A real ``python -m assistd serve`` on a free port, with a fresh SQLite database.

    ``upstream_url`` None starts it without an upstream: it serves its local models only.
    ``data_dir`` keeps its files and database there, to be served again by a later run, instead of in a
    temporary directory.
    ``env`` entries are settings without the ``ASSISTD_`` prefix, e.g. ``workers="64"``.
    """
    with tempfile.TemporaryDirectory(prefix="assistd-bench-") as tmp:
        data_dir = data_dir or Path(tmp)
        settings = {
            "ASSISTD_API_KEYS": API_KEY,
            # tests/server.py tunes these for fast tests; the benchmarks run the shipped defaults.
            "ASSISTD_MAINTENANCE_INTERVAL_SECONDS": "1.0",
            "ASSISTD_UPSTREAM_RETRY_BASE_SECONDS": "0.5",
        }
        if upstream_url is not None:
            settings["ASSISTD_UPSTREAM_BASE_URL"] = upstream_url
            settings["ASSISTD_UPSTREAM_API_KEY"] = "sk-upstream-bench"
        settings.update({f"ASSISTD_{k.upper()}": v for k, v in env.items()})
        # BENCH_DATABASE_URL runs the benchmarks on another database (a fresh, empty one), e.g. PostgreSQL.
        database_url = os.environ.get("BENCH_DATABASE_URL") or f"sqlite:///{data_dir / 'b.db'}"
        server = AssistdServer(data_dir, database_url, settings)
        server.start()
        try:
            yield server
        except BaseException:
            log = server.log().strip()
            if log:
                print(f"--- assistd log ---\n{log[-4000:]}", file=sys.stderr)
            raise
        finally:
            server.stop()


def wait_for_processes(server: AssistdServer, processes: int, timeout: float = 60.0) -> None:
    """Until all of ``assistd serve --processes N``'s processes are up (each claims a numbered slot file
    first thing); its /healthz answers as soon as the first is."""
    if processes == 1:
        return
    deadline = time.monotonic() + timeout
    while len(list((server.data_dir / "relay").glob("slot-*.lock"))) < processes:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only some of the {processes} assistd processes started")
        time.sleep(0.1)


def client_for(server: AssistdServer, *, timeout: float = 60.0) -> OpenAI:
    return OpenAI(base_url=server.base_url, api_key=API_KEY, max_retries=0, timeout=timeout)


def create_assistant(client: OpenAI) -> str:
    assistant = client.beta.assistants.create(
        model=MODEL, name="bench", instructions="You are the assistant of a benchmark."
    )
    return assistant.id
