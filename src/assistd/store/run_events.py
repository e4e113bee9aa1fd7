"""The run event log: append a run's events with gap-free, per-run sequence numbers, read them back after
a given one, and prune runs that ended long ago.

On PostgreSQL each append also queues a NOTIFY on ``CHANNEL`` carrying ``"<run_id> <last seq>"``, sent by
the server when the transaction commits. It is only a wake-up: readers fetch the events themselves, so a
payload never nears NOTIFY's 8,000-byte limit, and a lost wake-up delays a reader, it does not lose it
events.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Float, and_, cast, delete, exists, extract, func, insert, literal, or_, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from .models import RunEventHeadRow, RunEventRow, RunRow

CHANNEL = "assistd_run_events"


@dataclass(frozen=True)
class LoggedEvent:
    seq: int
    event: str
    data: str  # the event's JSON
    # Seconds from its append to the query that read it back (``read_after``), both on the database's clock.
    age: float | None = None


def _upsert(dialect: str) -> Any:
    # Both dialects' INSERT ... ON CONFLICT DO UPDATE ... RETURNING; SQLAlchemy has it per dialect only.
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


async def allocate(session: AsyncSession, run_id: str, count: int) -> int:
    """Reserve ``count`` seqs for ``run_id``; the first of them. The head row stays locked until the
    transaction ends, so a second writer of the same run numbers after this one commits."""
    dialect = session.get_bind().dialect.name
    statement = (
        _upsert(dialect)(RunEventHeadRow)
        .values(run_id=run_id, seq=count)
        .on_conflict_do_update(index_elements=["run_id"], set_={"seq": RunEventHeadRow.seq + count})
        .returning(RunEventHeadRow.seq)
    )
    last = int((await session.execute(statement)).scalar_one())
    return last - count + 1


async def append(
    session: AsyncSession, run_id: str, events: Sequence[tuple[str, str]], *, wake: bool = True
) -> list[LoggedEvent]:
    """Write ``events`` (name, JSON) as the next of ``run_id``'s log, in the session's transaction; what
    was written, with seqs. Readers see them, and are woken, when the transaction commits. ``wake=False``
    leaves out the NOTIFY: for measuring what it costs (bench/event_log.py), and for writers whose readers
    poll."""
    if not events:
        return []
    if session.get_bind().dialect.name == "postgresql":
        last = await _append_postgresql(session, run_id, events, wake)
        return [LoggedEvent(last - len(events) + 1 + n, name, data) for n, (name, data) in enumerate(events)]
    first = await allocate(session, run_id, len(events))
    logged = [LoggedEvent(first + n, name, data) for n, (name, data) in enumerate(events)]
    at = time.time()
    await session.execute(
        insert(RunEventRow),
        [
            {"run_id": run_id, "seq": e.seq, "event": e.event, "data": e.data, "created_at": at}
            for e in logged
        ],
    )
    return logged


# Allocating the seqs, writing the events and queueing the wake-up in one round trip: every run's status
# changes pay for it, and three statements cost three times the driver's per-statement CPU. (Data-modifying
# CTEs run whether or not the final SELECT reads them; the events are numbered from the head's new value.)
# ``created_at`` is the database server's clock, not the writer's: readers on other hosts time the event's
# way to them on that one clock (``read_after``), whatever the skew between the hosts' clocks.
_APPEND_POSTGRESQL = """
WITH head AS (
    INSERT INTO run_event_heads (run_id, seq) VALUES (:run_id, :count)
    ON CONFLICT (run_id) DO UPDATE SET seq = run_event_heads.seq + :count
    RETURNING seq
), written AS (
    INSERT INTO run_events (run_id, seq, event, data, created_at)
    SELECT :run_id, head.seq - :count + e.ord, e.event, e.data, EXTRACT(EPOCH FROM clock_timestamp())
    FROM head, unnest(CAST(:names AS text[]), CAST(:datas AS text[])) WITH ORDINALITY AS e(event, data, ord)
    RETURNING 1
)
SELECT head.seq, {wake} FROM head
"""
_APPEND_WAKE = text(_APPEND_POSTGRESQL.format(wake="pg_notify(:channel, :run_id || ' ' || head.seq)"))
_APPEND_QUIET = text(_APPEND_POSTGRESQL.format(wake="NULL"))


async def _append_postgresql(
    session: AsyncSession, run_id: str, events: Sequence[tuple[str, str]], wake: bool
) -> int:
    params = {
        "run_id": run_id,
        "count": len(events),
        "names": [name for name, _ in events],
        "datas": [data for _, data in events],
    }
    if wake:
        params["channel"] = CHANNEL
    row = (await session.execute(_APPEND_WAKE if wake else _APPEND_QUIET, params)).one()
    return int(row[0])


# When the query that reads runs, on the database server's clock (in seconds since the epoch, as
# ``created_at``): one value for the whole statement, taken as it starts.
_DATABASE_NOW = cast(extract("epoch", func.statement_timestamp()), Float)


async def read_after(session: AsyncSession, run_id: str, after: int, limit: int = 1000) -> list[LoggedEvent]:
    """``run_id``'s events with seq above ``after``, oldest first, at most ``limit``, each with its age."""
    # On SQLite every process shares one host's clock, which wrote ``created_at``.
    postgresql = session.get_bind().dialect.name == "postgresql"
    now = _DATABASE_NOW if postgresql else literal(time.time(), Float)
    rows = await session.execute(
        select(RunEventRow.seq, RunEventRow.event, RunEventRow.data, now - RunEventRow.created_at)
        .where(RunEventRow.run_id == run_id, RunEventRow.seq > after)
        .order_by(RunEventRow.seq)
        .limit(limit)
    )
    return [LoggedEvent(int(seq), event, data, float(age)) for seq, event, data, age in rows.all()]


async def heads(session: AsyncSession, run_ids: Collection[str]) -> dict[str, int]:
    """The last seq written for each of ``run_ids`` that has any (one query, for pollers)."""
    if not run_ids:
        return {}
    rows = await session.execute(
        select(RunEventHeadRow.run_id, RunEventHeadRow.seq).where(RunEventHeadRow.run_id.in_(run_ids))
    )
    return {run_id: int(seq) for run_id, seq in rows.all()}


async def prune(session: AsyncSession, older_than: float, terminal: Collection[str]) -> int:
    """Delete the logs of runs whose last event is older than ``older_than`` (a time.time(), compared with
    the database server's clock on PostgreSQL: a skew far below any retention time) and that have ended
    (their status is in ``terminal``) or are gone (their thread was deleted); how many events went. A run
    waiting for tool outputs keeps its log however old, since its stream is not over."""
    quiet = (
        select(RunEventRow.run_id)
        .group_by(RunEventRow.run_id)
        .having(func.max(RunEventRow.created_at) < older_than)
    )
    ended = or_(
        exists().where(and_(RunRow.id == RunEventRow.run_id, RunRow.status.in_(terminal))),
        ~exists().where(RunRow.id == RunEventRow.run_id),
    )
    stale = list(
        (
            await session.scalars(
                select(RunEventRow.run_id).where(RunEventRow.run_id.in_(quiet), ended).distinct()
            )
        ).all()
    )
    if not stale:
        return 0
    result = await session.execute(delete(RunEventRow).where(RunEventRow.run_id.in_(stale)))
    await session.execute(delete(RunEventHeadRow).where(RunEventHeadRow.run_id.in_(stale)))
    return int(result.rowcount)  # type: ignore[attr-defined]
