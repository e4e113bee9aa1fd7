"""The worker pool: claims queued runs, runs them with bounded concurrency, keeps their leases alive,
cancels them on request, expires runs whose tool outputs never came, and hands jobs back at shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from sqlalchemy import select

from ..config import Settings
from ..store import jobs, processes, run_events
from ..store import responses as response_store
from ..store import runs as run_store
from ..store.clock import now
from ..store.database import Database
from ..store.models import RunRow
from . import state
from .bus import RunBus
from .executor import RunExecutor, Started
from .process_lock import ProcessLock, dead_processes

log = logging.getLogger(__name__)

# Runs a worker claims in one transaction at most: enough to keep up with a burst of queued runs, few
# enough that one transaction stays short.
_CLAIM_BATCH = 16

# How often a worker prunes the run event log (a cheap delete when there is nothing to prune).
_PRUNE_EVERY_SECONDS = 60.0
# At most this long for handing one run back at shutdown (the database may be what failed).
_HAND_BACK_SECONDS = 5.0


def new_process_id() -> str:
    """This process's id among a deployment's: ``host:pid:random``. The random part keeps it unique across
    restarts (a container's assistd is often pid 1 every time), so that a session recorded under an id is
    never mistaken for one of a later process; the host is cut so the id fits ``run_jobs.locked_by``."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(4)}"


class WorkerPool:
    """``worker_id`` is the process's id (``new_process_id``): jobs' ``locked_by``, its ``processes`` row,
    the holder of the code sessions it runs. ``role`` is what its ``processes`` row says it is."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        bus: RunBus,
        executor: RunExecutor,
        worker_id: str,
        role: str = "both",
    ) -> None:
        self._settings = settings
        self._db = db
        self._bus = bus
        self._executor = executor
        self.worker_id = worker_id
        self._process = processes.Process(
            worker_id, socket.gethostname(), os.getpid(), role, time.time(), time.time()
        )
        # Held while this process lives: a process of this host that finds it free knows this one died.
        self._lock = ProcessLock(settings.data_dir / "processes", worker_id)
        self._slots = asyncio.Semaphore(settings.workers)
        self._wake = asyncio.Event()
        self._cancel_requests: dict[str, asyncio.Event] = {}
        # The runs whose leases this process renews, each with the event that a cancel seen there sets.
        self._held: dict[str, asyncio.Event] = {}
        self._renewer: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._loops: list[asyncio.Task[None]] = []
        self._closing = False
        self._beaten_at = -float("inf")
        # When the process was told to stop (monotonic): no claim after it; the grace counts from it.
        self._stopped_at: float | None = None
        # The dispatcher is between a claim's first statement and its run's task: not to be cancelled there.
        self._claiming = False

    async def start(self) -> None:
        self._lock.acquire()
        # Listed before it claims anything: runs of threads whose sessions it starts go to a live process.
        try:
            await self.beat()
        except Exception:
            log.warning("could not record this process in the processes table; retrying", exc_info=True)
        # The runs of the process this one replaces, if it was killed: resumed now, not a lease later.
        try:
            await self.release_dead()
        except Exception:
            log.warning("could not free the jobs of dead processes; their leases will lapse", exc_info=True)
        self._wake.set()  # jobs left by an earlier process are claimed at once
        # Apart from the loops: the runs in flight during the shutdown grace keep their leases.
        self._renewer = asyncio.create_task(self._guard(self._renew, "lease renewal"))
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

    def stop_claiming(self) -> None:
        """The process is told to stop (SIGTERM): claim no more jobs; the shutdown grace starts now."""
        if self._stopped_at is None:
            self._stopped_at = time.monotonic()
            self._wake.set()

    async def close(self) -> None:
        """Claim nothing more; let the runs in flight end until ``shutdown_grace_seconds`` after the stop
        began, then hand the others back, so that another worker resumes them at once, not once their leases
        lapse (a supervisor's SIGKILL before that only costs the lease)."""
        self.stop_claiming()
        self._closing = True
        for loop in self._loops:
            # A claim under way is let finish: its run then joins the runs in flight.
            if loop is not self._loops[0] or not self._claiming:
                loop.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        assert self._stopped_at is not None
        left = self._stopped_at + self._settings.shutdown_grace_seconds - time.monotonic()
        if self._tasks and left > 0:
            await asyncio.wait(list(self._tasks), timeout=left)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._renewer is not None:
            self._renewer.cancel()
            await asyncio.gather(self._renewer, return_exceptions=True)
        # Its threads' runs go to other workers at once, not a lease later.
        try:
            async with self._db.write() as session:
                await processes.leave(session, self.worker_id)
        except Exception:
            log.warning("could not remove this process from the processes table", exc_info=True)
        self._lock.release()

    async def _guard(self, loop: Callable[[], Awaitable[None]], name: str) -> None:
        # A database hiccup must not end the loop that every run depends on; one that returns is done.
        while not self._closing:
            try:
                await loop()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s loop failed; restarting it", name)
                await asyncio.sleep(self._settings.maintenance_interval_seconds)

    async def _dispatch(self) -> None:
        while self._stopped_at is None:
            await self._wait_for_work()
            await self._slots.acquire()
            wanted = 1 + await self._free_slots(_CLAIM_BATCH - 1)
            if self._stopped_at is not None:
                self._release_slots(wanted)
                return
            self._claiming = True
            claimed: list[tuple[str, int]] = []
            starts: list[Started] = []
            try:
                async with self._db.write() as session:
                    claimed = await jobs.claim_batch(
                        session, self.worker_id, self._settings.run_lease_seconds, wanted
                    )
                    # Starting the runs in the claim's transaction saves a write per run.
                    for run_id, attempts in claimed:
                        starts.append(await self._executor.start(session, run_id, attempts))
            except BaseException:
                self._release_slots(wanted)
                raise
            finally:
                self._claiming = False
            if claimed and len(claimed) == wanted:
                self._wake.set()  # as many as it asked for: there may be more, claimed at once
            self._release_slots(wanted - len(claimed))
            for (run_id, _), started in zip(claimed, starts, strict=True):
                self._executor.deliver(run_id, started.events)
                if started.run is None:
                    self._slots.release()
                    continue
                task = asyncio.create_task(self._run(started.run, started.seq))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _free_slots(self, most: int) -> int:
        """Take up to ``most`` more run slots, only those free now (no waiting)."""
        taken = 0
        while taken < most and not self._slots.locked():
            await self._slots.acquire()
            taken += 1
        return taken

    def _release_slots(self, count: int) -> None:
        for _ in range(count):
            self._slots.release()

    async def _wait_for_work(self) -> None:
        """Until the dispatcher is woken (at start, or after a claim that saw another job ready), or a look
        at the queue finds a job nobody holds (a lapsed lease, a job handed back at shutdown). Runs created
        here never wait for it: they are adopted. Looking is a read: the write of a claim is only paid for a
        job that is there."""
        while self._stopped_at is None:
            try:
                await asyncio.wait_for(self._wake.wait(), self._settings.maintenance_interval_seconds)
            except TimeoutError:
                async with self._db.read() as session:
                    if await jobs.claimable(session, self.worker_id, self._settings.run_lease_seconds):
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
                await self._run(started.run, started.seq)
            return
        self._held[run_id] = asyncio.Event()
        try:
            async with self._slots_held():
                if self._closing:
                    await self._hand_back(run_id)  # a slot freed during the shutdown grace
                    return
                async with self._db.write() as session:
                    started = await self._executor.start(session, run_id, 1)
                self._held.pop(run_id, None)
                self._executor.deliver(run_id, started.events)
                if started.run is not None:
                    await self._execute(started.run, started.seq)
        except asyncio.CancelledError:
            await self._hand_back(run_id)
            raise
        except Exception:
            log.exception("could not start run %s; it is claimed again when its lease lapses", run_id)
        finally:
            self._held.pop(run_id, None)

    @contextlib.asynccontextmanager
    async def _slots_held(self) -> AsyncIterator[None]:
        await self._slots.acquire()
        try:
            yield
        finally:
            self._slots.release()

    async def _run(self, run: RunRow, seq: int | None) -> None:
        """Execute a started run in the slot it holds, and free the slot."""
        try:
            await self._execute(run, seq)
        finally:
            self._slots.release()

    async def _execute(self, run: RunRow, seq: int | None = None) -> None:
        """``seq``: the last of the run's events, written by its start here (None: not known)."""
        run_id = run.id
        cancel = asyncio.Event()
        self._cancel_requests[run_id] = cancel
        execution = asyncio.create_task(self._executor.execute(run))
        self._held[run_id] = cancel
        waiter = asyncio.create_task(cancel.wait())
        # A cancel made by another process reaches this one as the run's thread.run.cancelling event (the
        # lease renewal's look at the status is the fallback); one made here calls ``cancel`` directly.
        watcher = asyncio.create_task(self._watch_cancel(run_id, cancel, seq)) if self._bus.shared else None
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
            await self._hand_back(run_id)
            raise
        finally:
            waiter.cancel()
            self._held.pop(run_id, None)
            if watcher is not None:
                watcher.cancel()
            self._cancel_requests.pop(run_id, None)

    async def _hand_back(self, run_id: str) -> None:
        """Give up a run's job at shutdown: its lease ends now, and the other workers are woken to claim it
        (the worker that resumes it closes what this one left half-written: ``state.resume``)."""
        try:
            # The deltas it queued go into the log first: the resumed run's events must follow them.
            async with asyncio.timeout(_HAND_BACK_SECONDS):
                await self._bus.settle(run_id)
                async with self._db.write() as session:
                    await jobs.release(session, run_id, self.worker_id)
        except Exception:
            log.warning(
                "could not hand run %s back; it is resumed once its lease lapses", run_id, exc_info=True
            )

    async def _watch_cancel(self, run_id: str, cancel: asyncio.Event, seq: int | None) -> None:
        listener = self._bus.subscription()
        try:
            # From the start's own last event, the log need not be looked at: a cancel written since
            # wakes this process (and the bus's look at the heads catches a wake-up missed meanwhile).
            await listener.attach(run_id, seq, read=seq is None)
            while (await listener.get()).event != "thread.run.cancelling":
                pass
            cancel.set()
        finally:
            listener.close()

    async def _renew(self) -> None:
        """Every third of a lease, renew the leases of all the runs this process holds in one write (one
        per run was 300 writes a second for 1,000 held runs), and set the cancel of any that another
        process asked to cancel (the fallback for a cancel event this process missed)."""
        interval = self._settings.run_lease_seconds / 3
        while True:
            await asyncio.sleep(interval)
            held = dict(self._held)
            if not held:
                continue
            try:
                async with self._db.write() as session:
                    await jobs.extend(session, held, self.worker_id, self._settings.run_lease_seconds)
                    cancelling = await session.scalars(
                        select(RunRow.id).where(RunRow.id.in_(held), RunRow.status == "cancelling")
                    )
                    for run_id in cancelling:
                        held[run_id].set()
            except Exception:
                log.warning("could not extend the leases of %d runs", len(held), exc_info=True)

    async def _maintain(self) -> None:
        pruned_at = 0.0
        while not self._closing:
            # As often as a run's lease is renewed: a process unseen for a lease is dead to the others.
            if time.monotonic() - self._beaten_at >= self._settings.run_lease_seconds / 3:
                await self.beat()
                # A sibling of this host (`serve --processes N`) that was killed: its runs now.
                await self.release_dead()
            await self.expire_overdue()
            # Often enough for a short retention, at most once a minute for the usual hour.
            every = min(_PRUNE_EVERY_SECONDS, self._settings.run_events_retention_seconds / 10)
            if time.monotonic() - pruned_at >= every:
                await self.prune_events()
                await self.prune_responses()
                pruned_at = time.monotonic()
            await asyncio.sleep(self._settings.maintenance_interval_seconds)

    async def beat(self) -> None:
        """Record this process as alive now (in the ``processes`` table every process reads), and take its
        share of the upstream's concurrency limit among the processes alive with it."""
        now = time.time()
        async with self._db.write() as session:
            await processes.beat(session, self._process, now)
            alive = await processes.live(session, now - self._settings.run_lease_seconds)
        self._beaten_at = time.monotonic()
        self._executor.share_upstream(len(alive))

    async def release_dead(self) -> None:
        """Free the jobs of this host's processes that died (their file locks are free: killed, or
        crashed), and forget their ``processes`` rows, so that their runs and ingestions are claimed now,
        not once their leases lapse. A live process's lock is held: its jobs are never taken."""
        with dead_processes(self._lock.directory, self.worker_id) as dead:
            if not dead:
                return
            async with self._db.write() as session:
                runs = await jobs.RUNS.release_dead(session, dead)
                ingestions = await jobs.INGESTION.release_dead(session, [jobs.ingest_holder(d) for d in dead])
                for process_id in dead:
                    await processes.leave(session, process_id)
        log.warning(
            "processes %s of this host died: %d runs and %d ingestions they held are resumed now",
            ", ".join(dead),
            runs,
            ingestions,
        )
        self._wake.set()

    async def prune_events(self) -> None:
        """Delete the event logs of runs that ended more than ``run_events_retention_seconds`` ago: long
        enough for any stream that was cut to resume. Any worker may do it, once or twice over."""
        cutoff = time.time() - self._settings.run_events_retention_seconds
        async with self._db.write() as session:
            pruned = await run_events.prune(session, cutoff, state.TERMINAL)
            # Rows of processes that died: they no longer count, and need not be kept.
            await processes.live(session, time.time() - self._settings.run_lease_seconds)
        if pruned:
            log.info("pruned %d events of ended runs", pruned)

    async def prune_responses(self) -> None:
        """Delete the stored responses older than ``response_retention_days`` that have ended, a batch at a
        time (each in a transaction of its own), with the threads of their own. Any worker may do it."""
        days = self._settings.response_retention_days
        if days <= 0:
            return
        cutoff = now() - int(days * 86_400)
        total = 0
        while True:
            async with self._db.write() as session:
                pruned = await response_store.prune(session, cutoff, state.TERMINAL)
            total += pruned
            if pruned < response_store.PRUNE_BATCH:
                break
        if total:
            log.info("pruned %d responses past their retention", total)

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
