"""What the database says about the work in hand, read when /metrics is scraped.

These numbers are the same whichever process (or replica) reads them, unlike a process's own counters:
the runs and queues are shared. Each query is served by an index, so a scrape costs about the same on a
database of a hundred runs or ten million: only active statuses are counted (terminal runs only grow;
their rate comes from ``assistd_run_duration_seconds_count``, counted where runs end).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from .detached import table_of
from .models import IngestJobRow, RunJobRow, RunRow

ACTIVE_STATUSES = ("queued", "in_progress", "requires_action", "cancelling")

_runs = table_of(RunRow)
_run_jobs = table_of(RunJobRow)
_ingest_jobs = table_of(IngestJobRow)

_BY_STATUS = (
    select(_runs.c.status, func.count()).where(_runs.c.status.in_(ACTIVE_STATUSES)).group_by(_runs.c.status)
)
# A queued run has its job row; the job's enqueued_at is when it (last) entered the queue, which a run
# given its tool outputs does again.
_WAITING = (
    select(func.count(), func.min(_run_jobs.c.enqueued_at))
    .select_from(_run_jobs.join(_runs, _runs.c.id == _run_jobs.c.run_id))
    .where(_runs.c.status == "queued")
)
_UNCLAIMED = select(func.count()).select_from(_run_jobs).where(_run_jobs.c.locked_until < bindparam("now"))
_INGEST = select(func.count()).select_from(_ingest_jobs)


@dataclass(frozen=True)
class WorkStats:
    runs_by_status: dict[str, int]
    """Runs in each active status (all of ``ACTIVE_STATUSES``, zeros included)."""
    queued_runs: int
    """Runs waiting to start: queued, not yet picked up by a worker."""
    oldest_queued_seconds: float
    """How long the longest-waiting of them has waited; 0 when none waits."""
    unclaimed_run_jobs: int
    """Run jobs nobody holds a lease on: left by a crashed or stopped process, waiting to be claimed."""
    ingest_jobs: int
    """Files waiting for or being ingested."""


async def work_stats(session: AsyncSession) -> WorkStats:
    now = time.time()
    counts = dict.fromkeys(ACTIVE_STATUSES, 0)
    for status, count in (await session.execute(_BY_STATUS)).all():
        counts[status] = int(count)
    waiting, oldest = (await session.execute(_WAITING)).one()
    unclaimed = await session.scalar(_UNCLAIMED, {"now": now})
    return WorkStats(
        runs_by_status=counts,
        queued_runs=int(waiting),
        oldest_queued_seconds=max(0.0, now - float(oldest)) if oldest is not None else 0.0,
        unclaimed_run_jobs=int(unclaimed or 0),
        ingest_jobs=int(await session.scalar(_INGEST) or 0),
    )
