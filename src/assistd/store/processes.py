"""The deployment's live processes: each refreshes its row (``beat``) and leaves on a clean stop; a row not
seen for a while is a process that died, removed by whoever looks next (``live``)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from .models import ProcessRow


@dataclass(frozen=True)
class Process:
    id: str
    host: str
    pid: int
    role: str
    started_at: float
    seen_at: float


async def beat(session: AsyncSession, process: Process, now: float) -> None:
    """Record ``process`` as seen at ``now`` (its row is made on its first beat)."""
    result = await session.execute(update(ProcessRow).where(ProcessRow.id == process.id).values(seen_at=now))
    if not result.rowcount:  # type: ignore[attr-defined]
        session.add(
            ProcessRow(
                id=process.id,
                host=process.host,
                pid=process.pid,
                role=process.role,
                started_at=process.started_at,
                seen_at=now,
            )
        )


async def leave(session: AsyncSession, process_id: str) -> None:
    await session.execute(delete(ProcessRow).where(ProcessRow.id == process_id))


async def live(session: AsyncSession, seen_after: float) -> list[Process]:
    """The processes seen after ``seen_after``; rows older than that are deleted as dead."""
    await session.execute(delete(ProcessRow).where(ProcessRow.seen_at <= seen_after))
    rows = (await session.scalars(select(ProcessRow).order_by(ProcessRow.started_at))).all()
    return [Process(r.id, r.host, r.pid, r.role, r.started_at, r.seen_at) for r in rows]
