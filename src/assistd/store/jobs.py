"""The durable run queue: enqueue, claim with a lease, extend the lease, finish.

Claiming is a conditional UPDATE on a candidate row, so it is safe with several workers on
PostgreSQL as well as on SQLite, without dialect-specific locking SQL.
"""

from __future__ import annotations

import time

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from .models import RunJobRow


def enqueue(session: AsyncSession, run_id: str) -> None:
    session.add(RunJobRow(run_id=run_id, enqueued_at=time.time(), locked_until=0.0, attempts=0))


async def claimable(session: AsyncSession) -> bool:
    """Whether some job waits that nobody holds."""
    found = await session.scalar(
        select(RunJobRow.run_id).where(RunJobRow.locked_until < time.time()).limit(1)
    )
    return found is not None


async def claim_next(
    session: AsyncSession, worker_id: str, lease_seconds: float
) -> tuple[str, int, bool] | None:
    """Take the oldest job nobody holds: its run id, how many times it was claimed, and whether another
    job was ready beside it (so claiming again may pay)."""
    now = time.time()
    for _ in range(3):
        candidates = (
            await session.scalars(
                select(RunJobRow.run_id)
                .where(RunJobRow.locked_until < now)
                .order_by(RunJobRow.enqueued_at)
                .limit(2)
            )
        ).all()
        if not candidates:
            return None
        candidate = candidates[0]
        result = await session.execute(
            update(RunJobRow)
            .where(RunJobRow.run_id == candidate, RunJobRow.locked_until < now)
            .values(
                locked_by=worker_id,
                locked_until=now + lease_seconds,
                attempts=RunJobRow.attempts + 1,
            )
            .returning(RunJobRow.attempts)
        )
        attempts = result.scalar()
        if attempts is not None:
            return candidate, int(attempts), len(candidates) > 1
    return None


async def extend(session: AsyncSession, run_id: str, worker_id: str, lease_seconds: float) -> bool:
    result = await session.execute(
        update(RunJobRow)
        .where(RunJobRow.run_id == run_id, RunJobRow.locked_by == worker_id)
        .values(locked_until=time.time() + lease_seconds)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def finish(session: AsyncSession, run_id: str) -> None:
    await session.execute(delete(RunJobRow).where(RunJobRow.run_id == run_id))


async def release(session: AsyncSession, run_id: str, worker_id: str) -> None:
    """Give a job back unfinished (at shutdown), so the next claim takes it at once."""
    await session.execute(
        update(RunJobRow)
        .where(RunJobRow.run_id == run_id, RunJobRow.locked_by == worker_id)
        .values(locked_until=0.0, locked_by=None, attempts=RunJobRow.attempts - 1)
    )
