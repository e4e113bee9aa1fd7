"""The run queue's affinity for code sessions: a run of a thread whose live session is held by a live
process is claimed by that process only, and queued for it rather than kept by the process creating it;
a dead holder, an ended session or a thread without one leaves the run to anyone."""

from __future__ import annotations

import asyncio
import time

from assistd.store import code_sessions, jobs, processes
from assistd.store.database import Database

LEASE = 30.0


async def _alive(db: Database, process_id: str, seen_at: float) -> None:
    async with db.write() as session:
        await processes.beat(
            session, processes.Process(process_id, "host", 1, "worker", seen_at, seen_at), seen_at
        )


async def _claim(db: Database, worker: str) -> str | None:
    async with db.write() as session:
        claimed = await jobs.claim_next(session, worker, LEASE)
    return claimed[0] if claimed else None


def test_a_run_of_a_thread_with_a_live_session_goes_to_its_holder(migrated_url: str) -> None:
    async def main() -> None:
        db = Database(migrated_url)
        try:
            now = time.time()
            await _alive(db, "holder", now)
            await _alive(db, "other", now)
            async with db.write() as session:
                await code_sessions.record(session, "thread_a", "holder", "s1", {})
                await jobs.enqueue(session, "run_a", thread_id="thread_a")  # from an API replica
                await jobs.enqueue(session, "run_b", thread_id="thread_b")  # a thread with no session
            async with db.read() as session:
                assert await jobs.claimable(session, "other", LEASE)
            # The other worker skips run_a, older, for run_b; then finds nothing it may take.
            assert await _claim(db, "other") == "run_b"
            async with db.read() as session:
                assert not await jobs.claimable(session, "other", LEASE)
            assert await _claim(db, "other") is None
            assert await _claim(db, "holder") == "run_a"
        finally:
            await db.close()

    asyncio.run(main())


def test_a_worker_creating_a_run_leaves_it_to_the_live_holder(migrated_url: str) -> None:
    async def main() -> None:
        db = Database(migrated_url)
        try:
            now = time.time()
            await _alive(db, "holder", now)
            await _alive(db, "other", now)
            async with db.write() as session:
                await code_sessions.record(session, "thread_a", "holder", "s1", {})
                held = await jobs.enqueue(
                    session, "run_a", held_by="other", lease_seconds=LEASE, thread_id="thread_a"
                )
                assert not held  # queued for the holder instead
                assert await jobs.enqueue(
                    session, "run_b", held_by="other", lease_seconds=LEASE, thread_id="thread_b"
                )
            assert await _claim(db, "other") is None  # run_b is its own already; run_a is the holder's
            assert await _claim(db, "holder") == "run_a"
            async with db.write() as session:
                # The holder itself keeps the runs it creates.
                assert await jobs.enqueue(
                    session, "run_c", held_by="holder", lease_seconds=LEASE, thread_id="thread_a"
                )
        finally:
            await db.close()

    asyncio.run(main())


def test_a_dead_holder_or_an_ended_session_leaves_the_run_to_anyone(migrated_url: str) -> None:
    async def main() -> None:
        db = Database(migrated_url)
        try:
            now = time.time()
            await _alive(db, "dead", now - 2 * LEASE)  # silent for longer than a lease
            await _alive(db, "holder", now)
            async with db.write() as session:
                await code_sessions.record(session, "thread_a", "dead", "s1", {})
                await code_sessions.record(session, "thread_b", "holder", "s2", {})
                await jobs.enqueue(session, "run_a", thread_id="thread_a")
            assert await _claim(db, "other") == "run_a"
            async with db.write() as session:
                # An end reported late for an older session does not unpin the one that followed it.
                await code_sessions.ended(session, "thread_b", "s0")
                await jobs.enqueue(session, "run_b", thread_id="thread_b")
            assert await _claim(db, "other") is None
            async with db.write() as session:
                await jobs.finish(session, "run_b")
                await code_sessions.ended(session, "thread_b", "s2")
                await jobs.enqueue(session, "run_b2", thread_id="thread_b")
                ended = await code_sessions.get(session, "thread_b")
            assert ended is not None and not ended.live and ended.process_id == "holder"
            assert await _claim(db, "other") == "run_b2"
        finally:
            await db.close()

    asyncio.run(main())
