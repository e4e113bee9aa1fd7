"""The run event log on PostgreSQL: what appending costs with and without the NOTIFY wake-up, by batch
size and number of concurrent writers, and how long an event takes to reach a listener in another
process (here: another engine and LISTEN connection, as another host would have).

PostgreSQL serialises the commits of transactions that NOTIFY (a global lock taken at commit), which at
high write rates has throttled other deployments; the rows/s with and without NOTIFY, side by side, show
whether it does here, and how batching several deltas per transaction changes it.

    python bench/event_log.py [--pg postgresql://postgres@127.0.0.1:5432/test] [--seconds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg

from assistd.engine.event_log import LogBus
from assistd.engine.events import StreamEvent
from assistd.store import run_events
from assistd.store.database import Database
from bench.common import Latency

_DELTA = json.dumps({"id": "msg_x", "object": "thread.message.delta", "delta": {"content": [{"index": 0}]}})


async def _appends(db: Database, writers: int, batch: int, wake: bool, seconds: float) -> float:
    """Events per second appended by ``writers`` concurrent writers, ``batch`` events per transaction."""
    deadline = time.perf_counter() + seconds
    counts = [0] * writers

    async def writer(n: int) -> None:
        run_id = f"run_bench_{uuid.uuid4().hex[:12]}"
        while time.perf_counter() < deadline:
            async with db.write() as session:
                events = [("thread.message.delta", _DELTA)] * batch
                await run_events.append(session, run_id, events, wake=wake)
            counts[n] += batch

    start = time.perf_counter()
    await asyncio.gather(*(writer(n) for n in range(writers)))
    return sum(counts) / (time.perf_counter() - start)


async def _delivery(url: str, events: int) -> Latency:
    """From the commit of an event on one engine to its arrival at a listener of another."""
    latency = Latency()
    writer_db, reader_db = Database(url), Database(url)
    writer, reader = LogBus(writer_db), LogBus(reader_db)
    await writer.start()
    await reader.start()
    try:
        run_id = f"run_lat_{uuid.uuid4().hex[:12]}"
        listener = reader.subscription()
        await listener.attach(run_id, after=0)
        await asyncio.sleep(0.5)  # LISTEN is up
        for n in range(events):
            start = time.perf_counter()
            await writer.publish(run_id, StreamEvent("thread.message.delta", {"n": n}))
            await listener.get()
            latency.add(time.perf_counter() - start)
        listener.close()
    finally:
        await writer.close()
        await reader.close()
        await writer_db.close()
        await reader_db.close()
    return latency


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    name = f"assistd_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(args.pg)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = args.pg.rsplit("/", 1)[0] + "/" + name
    try:
        db = Database(url)
        await db.migrate()
        print("| writers | events per transaction | events/s with NOTIFY | events/s without |")
        print("| --- | --- | --- | --- |")
        for writers in (1, 8, 32):
            for batch in (1, 8):
                woken = await _appends(db, writers, batch, True, args.seconds)
                quiet = await _appends(db, writers, batch, False, args.seconds)
                print(f"| {writers} | {batch} | {woken:,.0f} | {quiet:,.0f} |")
        await db.close()
        latency = await _delivery(url, 300)
        print(
            f"\ncommit on one engine → listener on another: p50 {latency.p50:.2f} ms, "
            f"p99 {latency.p99:.2f} ms (n={latency.n}; includes the writer's own transaction)"
        )
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
