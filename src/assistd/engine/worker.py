"""The worker pool: claims queued runs, runs them with bounded concurrency, keeps their leases alive,
cancels them on request, expires runs whose tool outputs never came, and hands jobs back at shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from sqlalchemy import select

from ..config import Settings
from ..store import jobs, run_events
from ..store import runs as run_store
from ..store.clock import now
from ..store.database import Database
from ..store.models import RunRow
from . import state
from .bus import RunBus
from .executor import RunExecutor, Started

log = logging.getLogger(__name__)

# How often a worker prunes the run event log (a cheap delete when there is nothing to prune).
_PRUNE_EVERY_SECONDS = 60.0
# Claims of queued runs one worker has under way at once.
_CLAIMS_AT_ONCE = 8


class WorkerPool:
    def __init__(self, settings: Settings, db: Database, bus: RunBus, executor: RunExecutor) -> None:
        self._settings = settings
        self._db = db
        self._bus = bus
        self._executor = executor
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self._slots = asyncio.Semaphore(settings.workers)
        self._wake = asyncio.Event()
        self._cancel_requests: dict[str, asyncio.Event] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._loops: list[asyncio.Task[None]] = []
        self._closing = False

    async def start(self) -> None:
        self._wake.set()  # jobs left by an earlier process are claimed at once
        self._loops = [
            asyncio.create_task(self._guard(self._dispatch, "dispatcher")),
            asyncio.create_task(self._guard(self._maintain, "maintenance")),
        ]

    def wake(self) -> None:
        """A job was queued elsewhere: look for it now, not at the next idle look."""
        self._wake.set()

    async def reserve(self) -> bool:
        """Take a slot if one is free, without waiting: for a run started in the transaction that creates
        it and then handed over with ``adopt(run_id, started)``. ``unreserve`` gives it back unused."""
        if self._closing or self._slots.locked():
            return False
        await self._slots.acquire()  # a free slot: taken at once
        return True

    def unreserve(self) -> None:
        self._slots.release()

    def adopt(self, run_id: str, started: Started | None = None) -> None:
        """Run a job that was enqueued as already claimed by this pool (``jobs.enqueue(held_by=...)``, in the
        transaction that committed before this call): no claim to write, no dispatcher to wake, and its
        events are published in this process, where the request that made it listens. ``started``: that
        transaction also started it, in a slot it reserved; else it waits here for a slot, its lease kept
        alive meanwhile."""
        if self._closing:
            if started is not None:
                self._slots.release()
            return  # its lease lapses and the next start resumes it
        task = asyncio.create_task(self._adopted(run_id, started))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def cancel(self, run_id: str) -> bool:
        """Stop a run this process is executing; False when it runs elsewhere (its heartbeat will see)."""
        request = self._cancel_requests.get(run_id)
        if request is None:
            return False
        request.set()
        return True

    async def close(self) -> None:
        self._closing = True
        for loop in self._loops:
            loop.cancel()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._loops, *self._tasks, return_exceptions=True)

    async def _guard(self, loop: Callable[[], Awaitable[None]], name: str) -> None:
        # A database hiccup must not end the loop that every run depends on.
        while not self._closing:
            try:
                await loop()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s loop failed; restarting it", name)
                await asyncio.sleep(self._settings.maintenance_interval_seconds)

    async def _dispatch(self) -> None:
        # Claims run side by side, each on a job of its own (the candidates are locked, others skip them):
        # one at a time, a worker holding hundreds of runs claimed a few a second, each statement of each
        # claim waiting its turn on a loop busy with the runs in flight (bench/capacity.py).
        claiming = asyncio.Semaphore(_CLAIMS_AT_ONCE)
        while not self._closing:
            await self._wait_for_work()
            await claiming.acquire()
            task = asyncio.create_task(self._claim(claiming))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _claim(self, claiming: asyncio.Semaphore) -> None:
        """Claim the oldest job nobody holds and start its run, in one transaction, in a free slot."""
        try:
            await self._slots.acquire()
            try:
                started = None
                async with self._db.write() as session:
                    claimed = await jobs.claim_next(session, self.worker_id, self._settings.run_lease_seconds)
                    if claimed is not None:
                        # Starting the run in the claim's transaction saves a write per run.
                        started = await self._executor.start(session, claimed[0], claimed[1])
            except BaseException:
                self._slots.release()
                raise
        except Exception:
            # A database hiccup: the next wake-up or look at the queue claims again.
            log.exception("could not claim a run")
            return
        finally:
            claiming.release()
        if claimed is None or started is None:
            self._slots.release()
            return
        run_id, _, more = claimed
        if more:
            self._wake.set()  # another job was ready: claim again at once
        self._executor.deliver(run_id, started.events)
        if started.run is None:
            self._slots.release()
            return
        await self._run(started.run)

    async def _wait_for_work(self) -> None:
        """Until the dispatcher is woken (at start, or after a claim that saw another job ready), or a look
        at the queue finds a job nobody holds (a lapsed lease, a job handed back at shutdown). Runs created
        here never wait for it: they are adopted. Looking is a read: the write of a claim is only paid for a
        job that is there."""
        while not self._closing:
            try:
                await asyncio.wait_for(self._wake.wait(), self._settings.maintenance_interval_seconds)
            except TimeoutError:
                async with self._db.read() as session:
                    if await jobs.claimable(session):
                        return
            else:
                self._wake.clear()
                return

    async def _adopted(self, run_id: str, started: Started | None) -> None:
        if started is not None:
            self._executor.deliver(run_id, started.events)
            if started.run is None:
                self._slots.release()
            else:
                await self._run(started.run)
            return
        heartbeat = asyncio.create_task(self._heartbeat(run_id, asyncio.Event()))
        try:
            async with self._slots_held():
                async with self._db.write() as session:
                    started = await self._executor.start(session, run_id, 1)
                heartbeat.cancel()
                self._executor.deliver(run_id, started.events)
                if started.run is not None:
                    await self._execute(started.run)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                async with self._db.write() as session:
                    await jobs.release(session, run_id, self.worker_id)
            raise
        except Exception:
            log.exception("could not start run %s; it is claimed again when its lease lapses", run_id)
        finally:
            heartbeat.cancel()

    @contextlib.asynccontextmanager
    async def _slots_held(self) -> AsyncIterator[None]:
        await self._slots.acquire()
        try:
            yield
        finally:
            self._slots.release()

    async def _run(self, run: RunRow) -> None:
        """Execute a started run in the slot it holds, and free the slot."""
        try:
            await self._execute(run)
        finally:
            self._slots.release()

    async def _execute(self, run: RunRow) -> None:
        run_id = run.id
        cancel = asyncio.Event()
        self._cancel_requests[run_id] = cancel
        execution = asyncio.create_task(self._executor.execute(run))
        heartbeat = asyncio.create_task(self._heartbeat(run_id, cancel))
        waiter = asyncio.create_task(cancel.wait())
        # A cancel made by another process reaches this one as the run's thread.run.cancelling event (the
        # heartbeat's look at the status is the fallback); one made here calls ``cancel`` directly.
        watcher = asyncio.create_task(self._watch_cancel(run_id, cancel)) if self._bus.shared else None
        try:
            await asyncio.wait({execution, waiter}, return_when=asyncio.FIRST_COMPLETED)
            if not execution.done():
                execution.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await execution
                await self._executor.cancelled(run_id)
        except asyncio.CancelledError:
            # Shutdown: hand the job back so the next start resumes it at once.
            execution.cancel()
            with contextlib.suppress(BaseException):
                await execution
            with contextlib.suppress(Exception):
                async with self._db.write() as session:
                    await jobs.release(session, run_id, self.worker_id)
            raise
        finally:
            waiter.cancel()
            heartbeat.cancel()
            if watcher is not None:
                watcher.cancel()
            self._cancel_requests.pop(run_id, None)

    async def _watch_cancel(self, run_id: str, cancel: asyncio.Event) -> None:
        listener = self._bus.subscription()
        try:
            await listener.attach(run_id)
            while (await listener.get()).event != "thread.run.cancelling":
                pass
            cancel.set()
        finally:
            listener.close()

    async def _heartbeat(self, run_id: str, cancel: asyncio.Event) -> None:
        interval = self._settings.run_lease_seconds / 3
        while True:
            await asyncio.sleep(interval)
            try:
                async with self._db.write() as session:
                    await jobs.extend(session, run_id, self.worker_id, self._settings.run_lease_seconds)
                    status = await session.scalar(select(RunRow.status).where(RunRow.id == run_id))
            except Exception:
                log.warning("could not extend the lease of run %s", run_id, exc_info=True)
                continue
            if status == "cancelling":
                cancel.set()

    async def _maintain(self) -> None:
        pruned_at = 0.0
        while not self._closing:
            await self.expire_overdue()
            # Often enough for a short retention, at most once a minute for the usual hour.
            every = min(_PRUNE_EVERY_SECONDS, self._settings.run_events_retention_seconds / 10)
            if time.monotonic() - pruned_at >= every:
                await self.prune_events()
                pruned_at = time.monotonic()
            await asyncio.sleep(self._settings.maintenance_interval_seconds)

    async def prune_events(self) -> None:
        """Delete the event logs of runs that ended more than ``run_events_retention_seconds`` ago: long
        enough for any stream that was cut to resume. Any worker may do it, once or twice over."""
        cutoff = time.time() - self._settings.run_events_retention_seconds
        async with self._db.write() as session:
            pruned = await run_events.prune(session, cutoff, state.TERMINAL)
        if pruned:
            log.info("pruned %d events of ended runs", pruned)

    async def expire_overdue(self) -> None:
        """Runs left waiting for tool outputs past their ``expires_at`` become ``expired``."""
        async with self._db.read() as session:
            overdue = list(
                (
                    await session.scalars(
                        select(RunRow.id).where(
                            RunRow.status == "requires_action", RunRow.expires_at <= now()
                        )
                    )
                ).all()
            )
        for run_id in overdue:
            async with self._db.write() as session:
                run = await run_store.get_row_by_id(session, run_id)
                if run is None or run.status != "requires_action" or (run.expires_at or 0) > now():
                    continue
                events = await self._bus.record(
                    session, run_id, await state.transition(session, run, "expired")
                )
            self._bus.deliver(run_id, events)
