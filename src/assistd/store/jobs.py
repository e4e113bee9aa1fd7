"""Durable job queues (runs to execute, files to ingest): enqueue, claim with a lease, extend, finish.

Claiming is a conditional UPDATE on a candidate row, so it is safe with several workers on
PostgreSQL as well as on SQLite, without dialect-specific locking SQL.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from typing import Any

from sqlalchemy import (
    Float,
    Integer,
    String,
    and_,
    bindparam,
    delete,
    insert,
    literal,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from . import code_sessions
from .detached import table_of
from .models import IngestJobRow, RunJobRow

# The channel a PostgreSQL NOTIFY announces a job nobody holds yet on.
CHANNEL = "assistd_jobs"


def ingest_holder(process_id: str) -> str:
    """What the ingestion jobs of the process ``process_id`` are locked by (at most 64 characters: a process
    id has at most 57)."""
    return f"{process_id}:ingest"


class JobQueue:
    """One queue table: ``table`` has the columns of ``RunJobRow``, with ``key`` naming the job.

    With ``holder`` (the run queue's ``session_holder``), a job may name the process it should go to: while
    that process lives (its ``processes`` row was seen within a lease), nobody else claims the job.

    Its statements are built once, with bind parameters: building them is most of a claim's CPU.
    """

    def __init__(self, table: Any, key: Any, holder: Any = None) -> None:
        self.name: str = table_of(table).name
        self._table = table
        self._key = key
        jobs = table_of(table)
        job = jobs.c[key.key]
        free = jobs.c.locked_until < bindparam("now")
        self._affinity = holder is not None
        ready = free
        if holder is not None:
            wanted = jobs.c[holder.key]
            # A job nobody is wanted for (most: threads without a code session) is decided by the first
            # test, so it costs the claim no lookup.
            ready = and_(
                free,
                or_(
                    wanted.is_(None),
                    wanted == bindparam("worker"),
                    ~code_sessions.holder_alive(wanted, bindparam("alive_after")),
                ),
            )
            thread = bindparam("thread", type_=String)
            # Held by the enqueuing worker unless the thread's live session is another live process's.
            self._enqueue_here = insert(jobs).from_select(
                [job.name, "enqueued_at", "locked_until", "locked_by", "attempts"],
                select(
                    bindparam("job", type_=String),
                    bindparam("now", type_=Float),
                    bindparam("until", type_=Float),
                    bindparam("worker", type_=String),
                    literal(1, Integer),
                ).where(~code_sessions.held_elsewhere(thread, bindparam("worker"), bindparam("alive_after"))),
            )
            self._enqueue_wanted = insert(jobs).values(
                {
                    job: bindparam("job"),
                    jobs.c.enqueued_at: bindparam("now"),
                    jobs.c.locked_until: 0.0,
                    jobs.c.attempts: 0,
                    wanted: code_sessions.live_holder(thread),
                }
            )
        self._enqueue = insert(jobs)
        self._claimable = select(job).where(ready).limit(1)
        self._candidates = select(job).where(ready).order_by(jobs.c.enqueued_at).limit(2)
        # Several at once: the oldest ready jobs, up to ``:limit``, in one statement. On PostgreSQL the rows
        # another claimer is taking are skipped (SKIP LOCKED), not waited for; SQLite's write transaction
        # is exclusive anyway (and renders no FOR UPDATE).
        batch = (
            select(job)
            .where(ready)
            .order_by(jobs.c.enqueued_at)
            .limit(bindparam("limit"))
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        self._claim_batch = (
            update(jobs)
            .where(job.in_(batch), free)
            .values(
                locked_by=bindparam("worker"), locked_until=bindparam("until"), attempts=jobs.c.attempts + 1
            )
            .returning(job, jobs.c.attempts, jobs.c.enqueued_at)
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
        self._extend = (
            update(jobs)
            .where(job.in_(bindparam("jobs", expanding=True)), jobs.c.locked_by == bindparam("worker"))
            .values(locked_until=bindparam("until"))
        )
        self._finish = delete(jobs).where(job == bindparam("job"))
        self._release = (
            update(jobs).where(*held).values(locked_until=0.0, locked_by=None, attempts=jobs.c.attempts - 1)
        )
        # The attempt is kept: a run that kills its process every time still ends after its last attempt.
        self._release_dead = (
            update(jobs)
            .where(jobs.c.locked_by.in_(bindparam("holders", expanding=True)))
            .values(locked_until=0.0, locked_by=None)
        )

    async def enqueue(
        self,
        session: AsyncSession,
        job: str,
        *,
        held_by: str | None = None,
        lease_seconds: float = 0.0,
        thread_id: str | None = None,
    ) -> bool:
        """Queue ``job``; with ``held_by``, already claimed by that worker (once), which runs it itself.
        With ``thread_id`` (runs), the job goes to the process holding the thread's live code session
        instead, when that is another live process. True: ``held_by`` holds it."""
        now = time.time()
        if thread_id is not None and self._affinity:
            params = {"job": job, "now": now, "thread": thread_id}
            if held_by is not None:
                here = {**params, "until": now + lease_seconds, "worker": held_by}
                here["alive_after"] = now - lease_seconds
                result = await session.execute(self._enqueue_here, here)
                if result.rowcount:  # type: ignore[attr-defined]
                    return True
            await session.execute(self._enqueue_wanted, params)
        else:
            values = {self._key.key: job, "enqueued_at": now, "locked_until": 0.0, "attempts": 0}
            if held_by is not None:
                values.update(locked_by=held_by, locked_until=now + lease_seconds, attempts=1)
            await session.execute(self._enqueue, values)
            if held_by is not None:
                return True
        await self._wake_workers(session)
        return False

    async def _wake_workers(self, session: AsyncSession) -> None:
        """On PostgreSQL, workers elsewhere LISTEN (engine/event_log.py) and claim a job nobody holds at
        once, not at their next look at the queue. The payload is the queue's name: which of them to wake."""
        if session.get_bind().dialect.name == "postgresql":
            await session.execute(
                text("SELECT pg_notify(:channel, :queue)"), {"channel": CHANNEL, "queue": self.name}
            )

    def _ready(self, now: float, worker_id: str, lease_seconds: float) -> dict[str, Any]:
        if not self._affinity:
            return {"now": now}
        return {"now": now, "worker": worker_id, "alive_after": now - lease_seconds}

    async def claimable(self, session: AsyncSession, worker_id: str = "", lease_seconds: float = 0.0) -> bool:
        """Whether some job waits that nobody holds (and, for ``worker_id``, that no other live process is
        wanted for: processes unseen for ``lease_seconds`` are dead)."""
        found = await session.scalar(self._claimable, self._ready(time.time(), worker_id, lease_seconds))
        return found is not None

    async def claim_next(
        self, session: AsyncSession, worker_id: str, lease_seconds: float
    ) -> tuple[str, int, bool] | None:
        """Take the oldest job nobody holds (and no other live process is wanted for): its key, how many
        times it was claimed, and whether another job was ready beside it (so claiming again may pay)."""
        now = time.time()
        ready = self._ready(now, worker_id, lease_seconds)
        for _ in range(3):
            candidates = (await session.scalars(self._candidates, ready)).all()
            if not candidates:
                return None
            candidate = candidates[0]
            params = {"job": candidate, "now": now, "worker": worker_id, "until": now + lease_seconds}
            attempts = (await session.execute(self._claim, params)).scalar()
            if attempts is not None:
                return candidate, int(attempts), len(candidates) > 1
        return None

    async def claim_batch(
        self, session: AsyncSession, worker_id: str, lease_seconds: float, limit: int
    ) -> list[tuple[str, int]]:
        """Take up to ``limit`` of the oldest jobs nobody holds (and no other live process is wanted for),
        oldest first: each one's key and how many times it was claimed. One statement, so a worker keeps up
        with runs queued faster than it could claim them one transaction each."""
        now = time.time()
        params = {**self._ready(now, worker_id, lease_seconds), "limit": limit}
        params.update(worker=worker_id, until=now + lease_seconds)
        rows = (await session.execute(self._claim_batch, params)).all()
        return [(str(key), int(attempts)) for key, attempts, _ in sorted(rows, key=lambda row: row[2])]

    async def extend(
        self, session: AsyncSession, held: Collection[str], worker_id: str, lease_seconds: float
    ) -> int:
        """Renew the leases of all the jobs a worker holds in one statement (one write per renewal, however
        many jobs it holds); how many it still held."""
        params = {"jobs": list(held), "worker": worker_id, "until": time.time() + lease_seconds}
        result = await session.execute(self._extend, params)
        return int(result.rowcount)  # type: ignore[attr-defined]

    async def finish(self, session: AsyncSession, job: str) -> None:
        await session.execute(self._finish, {"job": job})

    async def release(self, session: AsyncSession, job: str, worker_id: str) -> None:
        """Give a job back unfinished (at shutdown), so the next claim, of any worker, takes it at once."""
        await session.execute(self._release, {"job": job, "worker": worker_id})
        await self._wake_workers(session)

    async def release_dead(self, session: AsyncSession, holders: list[str]) -> int:
        """Free the jobs of workers known to be dead (``engine/process_lock.py``), so that they are claimed
        at once rather than once their leases lapse; how many were freed. Never for a live worker: it would
        run its jobs twice."""
        result = await session.execute(self._release_dead, {"holders": holders})
        freed = int(result.rowcount)  # type: ignore[attr-defined]
        if freed:
            await self._wake_workers(session)
        return freed


RUNS = JobQueue(RunJobRow, RunJobRow.run_id, RunJobRow.session_holder)
INGESTION = JobQueue(IngestJobRow, IngestJobRow.job_id)

# The run queue is the one most code uses: its operations by name.
enqueue = RUNS.enqueue
claimable = RUNS.claimable
claim_next = RUNS.claim_next
claim_batch = RUNS.claim_batch
extend = RUNS.extend
finish = RUNS.finish
release = RUNS.release
