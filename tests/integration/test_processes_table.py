"""The live-process table: beats keep a process listed, silence past the cut-off removes it."""

from __future__ import annotations

import asyncio

from assistd.store import processes
from assistd.store.database import Database


def test_processes_are_live_while_they_beat(migrated_url: str) -> None:
    a = processes.Process("host-a:1", "host-a", 1, "api", 100.0, 100.0)
    b = processes.Process("host-b:2", "host-b", 2, "worker", 101.0, 101.0)

    async def main() -> None:
        db = Database(migrated_url)
        try:
            async with db.write() as session:
                await processes.beat(session, a, 100.0)
                await processes.beat(session, b, 101.0)
            async with db.write() as session:
                assert [p.id for p in await processes.live(session, 50.0)] == [a.id, b.id]
            async with db.write() as session:
                await processes.beat(session, b, 200.0)  # a falls silent
                assert [(p.id, p.seen_at) for p in await processes.live(session, 150.0)] == [(b.id, 200.0)]
            async with db.write() as session:
                await processes.leave(session, b.id)
                assert await processes.live(session, 0.0) == []
        finally:
            await db.close()

    asyncio.run(main())
