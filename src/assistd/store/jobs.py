"""Durable job queues (runs to execute, files to ingest): enqueue, claim with a lease, extend, finish.

Claiming is a conditional UPDATE on a candidate row, so it is safe with several workers on
PostgreSQL as well as on SQLite, without dialect-specific locking SQL.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from .models import IngestJobRow, RunJobRow


class JobQueue:
    """One queue table: ``table`` has the columns of ``RunJobRow``, with ``key`` naming the job."""

    def __init__(self, table: Any, key: Any) -> None:
        self._table = table
        self._key = key

    def enqueue(self, session: AsyncSession, job: str) -> None:
        session.add(
            self._table(**{self._key.key: job}, enqueued_at=time.time(), locked_until=0.0, attempts=0)
        )

    async def claimable(self, session: AsyncSession) -> bool:
        """Whether some job waits that nobody holds."""
        found = await session.scalar(select(self._key).where(self._table.locked_until < time.time()).limit(1))
        return found is not None

    async def claim_next(
        self, session: AsyncSession, worker_id: str, lease_seconds: float
    ) -> tuple[str, int, bool] | None:
        """Take the oldest job nobody holds: its key, how many times it was claimed, and whether another
        job was ready beside it (so claiming again may pay)."""
        table = self._table
        now = time.time()
        for _ in range(3):
            candidates = (
                await session.scalars(
                    select(self._key).where(table.locked_until < now).order_by(table.enqueued_at).limit(2)
                )
            ).all()
            if not candidates:
                return None
            candidate = candidates[0]
            result = await session.execute(
                update(table)
                .where(self._key == candidate, table.locked_until < now)
                .values(locked_by=worker_id, locked_until=now + lease_seconds, attempts=table.attempts + 1)
                .returning(table.attempts)
            )
            attempts = result.scalar()
            if attempts is not None:
                return candidate, int(attempts), len(candidates) > 1
        return None

    async def extend(self, session: AsyncSession, job: str, worker_id: str, lease_seconds: float) -> bool:
        result = await session.execute(
            update(self._table)
            .where(self._key == job, self._table.locked_by == worker_id)
            .values(locked_until=time.time() + lease_seconds)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def finish(self, session: AsyncSession, job: str) -> None:
        await session.execute(delete(self._table).where(self._key == job))

    async def release(self, session: AsyncSession, job: str, worker_id: str) -> None:
        """Give a job back unfinished (at shutdown), so the next claim takes it at once."""
        await session.execute(
            update(self._table)
            .where(self._key == job, self._table.locked_by == worker_id)
            .values(locked_until=0.0, locked_by=None, attempts=self._table.attempts - 1)
        )


RUNS = JobQueue(RunJobRow, RunJobRow.run_id)
INGESTION = JobQueue(IngestJobRow, IngestJobRow.job_id)

# The run queue is the one most code uses: its operations by name.
enqueue = RUNS.enqueue
claimable = RUNS.claimable
claim_next = RUNS.claim_next
extend = RUNS.extend
finish = RUNS.finish
release = RUNS.release
