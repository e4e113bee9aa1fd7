"""Durable job queues (runs to execute, files to ingest): enqueue, claim with a lease, extend, finish.

Claiming is a conditional UPDATE on a candidate row, so it is safe with several workers on
PostgreSQL as well as on SQLite, without dialect-specific locking SQL.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import bindparam, delete, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from .detached import table_of
from .models import IngestJobRow, RunJobRow

# The channel a PostgreSQL NOTIFY announces a job nobody holds yet on.
CHANNEL = "assistd_jobs"


class JobQueue:
    """One queue table: ``table`` has the columns of ``RunJobRow``, with ``key`` naming the job.

    Its statements are built once, with bind parameters: building them is most of a claim's CPU.
    """

    def __init__(self, table: Any, key: Any) -> None:
        self.name: str = table_of(table).name
        self._table = table
        self._key = key
        jobs = table_of(table)
        job = jobs.c[key.key]
        free = jobs.c.locked_until < bindparam("now")
        self._enqueue = insert(jobs)
        self._claimable = select(job).where(free).limit(1)
        # Locked for the claim's transaction, and skipped by the others' (PostgreSQL; SQLite has one writer):
        # a worker's claims run side by side, each on a job of its own, none waiting on another's.
        self._candidates = (
            select(job).where(free).order_by(jobs.c.enqueued_at).limit(2).with_for_update(skip_locked=True)
        )
        self._claim = (
            update(jobs)
            .where(job == bindparam("job"), free)
            .values(
                locked_by=bindparam("worker"), locked_until=bindparam("until"), attempts=jobs.c.attempts + 1
            )
            .returning(jobs.c.attempts)
        )
        held = (job == bindparam("job"), jobs.c.locked_by == bindparam("worker"))
        self._extend = update(jobs).where(*held).values(locked_until=bindparam("until"))
        self._finish = delete(jobs).where(job == bindparam("job"))
        self._release = (
            update(jobs).where(*held).values(locked_until=0.0, locked_by=None, attempts=jobs.c.attempts - 1)
        )

    async def enqueue(
        self, session: AsyncSession, job: str, *, held_by: str | None = None, lease_seconds: float = 0.0
    ) -> None:
        """Queue ``job``; with ``held_by``, already claimed by that worker (once), which runs it itself."""
        now = time.time()
        values = {self._key.key: job, "enqueued_at": now, "locked_until": 0.0, "attempts": 0}
        if held_by is not None:
            values.update(locked_by=held_by, locked_until=now + lease_seconds, attempts=1)
        await session.execute(self._enqueue, values)
        if held_by is None and session.get_bind().dialect.name == "postgresql":
            # Workers elsewhere LISTEN for it (engine/event_log.py) and claim at once, not at their next
            # look at the queue. The payload is the queue's name: which of them to wake.
            await session.execute(
                text("SELECT pg_notify(:channel, :queue)"), {"channel": CHANNEL, "queue": self.name}
            )

    async def claimable(self, session: AsyncSession) -> bool:
        """Whether some job waits that nobody holds."""
        found = await session.scalar(self._claimable, {"now": time.time()})
        return found is not None

    async def claim_next(
        self, session: AsyncSession, worker_id: str, lease_seconds: float
    ) -> tuple[str, int, bool] | None:
        """Take the oldest job nobody holds: its key, how many times it was claimed, and whether another
        job was ready beside it (so claiming again may pay)."""
        now = time.time()
        for _ in range(3):
            candidates = (await session.scalars(self._candidates, {"now": now})).all()
            if not candidates:
                return None
            candidate = candidates[0]
            params = {"job": candidate, "now": now, "worker": worker_id, "until": now + lease_seconds}
            attempts = (await session.execute(self._claim, params)).scalar()
            if attempts is not None:
                return candidate, int(attempts), len(candidates) > 1
        return None

    async def extend(self, session: AsyncSession, job: str, worker_id: str, lease_seconds: float) -> bool:
        params = {"job": job, "worker": worker_id, "until": time.time() + lease_seconds}
        result = await session.execute(self._extend, params)
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def finish(self, session: AsyncSession, job: str) -> None:
        await session.execute(self._finish, {"job": job})

    async def release(self, session: AsyncSession, job: str, worker_id: str) -> None:
        """Give a job back unfinished (at shutdown), so the next claim takes it at once."""
        await session.execute(self._release, {"job": job, "worker": worker_id})


RUNS = JobQueue(RunJobRow, RunJobRow.run_id)
INGESTION = JobQueue(IngestJobRow, IngestJobRow.job_id)

# The run queue is the one most code uses: its operations by name.
enqueue = RUNS.enqueue
claimable = RUNS.claimable
claim_next = RUNS.claim_next
extend = RUNS.extend
finish = RUNS.finish
release = RUNS.release
