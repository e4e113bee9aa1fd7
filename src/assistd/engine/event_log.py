"""The run event bus over the database's event log: one mechanism for one process, several processes and
several hosts.

A writer appends a run's events to ``run_events`` in its transaction (``record``) and, once that commits,
hands them to this process's listeners at once (``deliver``). Every other process learns of them by a
wake-up: a PostgreSQL NOTIFY carrying only the run id and the new seq (see ``store.run_events``), or, on
SQLite, a look at the log's heads every ``poll_seconds``. A woken process reads the events it has not
delivered yet, in seq order, once for all of its listeners of that run.

A listener attached with ``after=N`` first gets the run's events after seq N from the log: a stream that
reconnects to another replica resumes where it stopped.

The way an event takes from its append in one process to its delivery in another is timed, on the database
server's clock, into ``assistd_event_lag_seconds``: from the age each read gives its rows, so no query more.

LISTEN needs a connection of its own for as long as the process runs: through PgBouncer that must be a
direct or session-pooled connection (transaction pooling drops LISTEN).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

from .. import metrics
from ..store import jobs, run_events
from ..store.database import Database
from ..store.run_events import LoggedEvent
from .bus import Sequenced
from .events import StreamEvent

log = logging.getLogger(__name__)

# How often the LISTEN connection is checked (a dead one is replaced, and every followed run read).
_LISTEN_CHECK_SECONDS = 2.0


def encode(event: StreamEvent) -> tuple[str, str]:
    data = event.data
    return event.event, data.model_dump_json() if isinstance(data, BaseModel) else json.dumps(data)


class LogSubscription:
    """A listener's queue of the events of the runs it is attached to, each run's in seq order."""

    def __init__(self, bus: LogBus) -> None:
        self._bus = bus
        self._runs: dict[str, int] = {}  # run id → the last seq handed to this listener
        self.queue: asyncio.Queue[StreamEvent] = asyncio.Queue()

    async def attach(self, run_id: str, after: int | None = None, *, read: bool = True) -> None:
        """Listen to ``run_id`` from the event after seq ``after``; None: from the events written after
        this call. ``read=False``: see ``RunSubscription.attach``; a wake-up missed meanwhile is still
        caught by the look at the heads every ``safety_poll_seconds``."""
        if after is not None:
            self._runs[run_id] = after
            vouched = self._bus._follow(run_id, self, read=read)
            if not read:
                # The caller vouches that the log holds no event after ``after`` it has not seen: the head
                # is there at least. A listener that attaches "from now" next starts at the head, and must
                # not start before this one's ``after`` (it would be handed the run's old events).
                vouched.head = max(vouched.head, after)
            return
        followed = self._bus._followed.get(run_id)
        if followed is not None and self._bus._positions(run_id, followed):
            # A run this process follows costs no read: its listeners have every event it knows of, and
            # a new one starts at the last of them (later ones wake it as they wake the others).
            self._runs[run_id] = followed.head
            self._bus._follow(run_id, self, read=False)
            return
        # Followed before the head is read, so that what is written meanwhile raises the run's known
        # head; the log is read only then, not on every attach (a long poll attaches once per call).
        followed = self._bus._follow(run_id, self, read=False)
        try:
            # Shielded: a caller cancelled meanwhile (a run that ended) leaves the read to finish rather
            # than cut its transaction, which would cost the pooled connection.
            reading = asyncio.ensure_future(self._bus._head(run_id))
            reading.add_done_callback(_consume)
            head = await asyncio.shield(reading)
        except BaseException:
            self._bus._unfollow(run_id, self)
            raise
        self._runs[run_id] = head
        if followed.timed_after is None:
            # Live from here: what the log gets after this head is timed for the lag metric.
            followed.timed_after = head
        if followed.head > head:
            self._bus._wake(run_id, None)

    def last_seq(self, run_id: str) -> int:
        return self._runs.get(run_id, 0)

    def _position(self, run_id: str) -> int | None:
        """The last seq handed out for ``run_id``; None while attaching (its start is not known yet)."""
        return self._runs.get(run_id)

    def _offer(self, run_id: str, events: Sequence[Sequenced]) -> bool:
        """Take the events that continue this listener's run gaplessly; False when a gap came first
        (another process wrote the seqs between, not read yet), so the log must be read."""
        last = self._runs.get(run_id)
        if last is None:
            return True  # still attaching: these precede its start or are read after it
        for seq, event in events:
            if seq <= last:
                continue
            if seq != last + 1:
                self._runs[run_id] = last
                return False
            self.queue.put_nowait(replace(event, seq=seq))
            last = seq
        self._runs[run_id] = last
        return True

    def close(self) -> None:
        for run_id in list(self._runs):
            self._bus._unfollow(run_id, self)
        self._runs.clear()

    async def get(self) -> StreamEvent:
        return await self.queue.get()


@dataclass
class _Followed:
    """A run this process has listeners for, and its reader's state."""

    listeners: set[LogSubscription] = field(default_factory=set)
    head: int = 0  # the highest seq known to exist (from wake-ups and this process's writes)
    reading: asyncio.Task[None] | None = None
    again: bool = False  # a wake-up came while reading: read once more after
    # Events read from the log with a seq above this are timed for assistd_event_lag_seconds; those up to it
    # were delivered here already, or were in the log before this process followed the run (a resumed
    # stream's replay is not lag). None until a read tells where the log stood.
    timed_after: int | None = None


class LogBus:
    """Run events through the database (see the module's docstring)."""

    shared = True

    def __init__(
        self,
        db: Database,
        *,
        poll_seconds: float = 0.05,
        safety_poll_seconds: float = 1.0,
        flush_seconds: float = 0.005,
    ) -> None:
        self.db = db
        self._job_callbacks: dict[str, list[Callable[[], None]]] = {}
        self._pending: dict[str, list[StreamEvent]] = {}
        self._flushing: dict[str, list[StreamEvent]] = {}
        self._flush_wanted = asyncio.Event()
        self._flushed = asyncio.Event()
        # How long a flush waits for more deltas to join it once one is queued.
        self._flush_seconds = flush_seconds
        self._followed: dict[str, _Followed] = {}
        self._poll_seconds = poll_seconds
        # PostgreSQL: a slow look at the heads as well, for a wake-up missed while LISTEN reconnected.
        self._safety_poll_seconds = safety_poll_seconds
        self._tasks: list[asyncio.Task[None]] = []
        # Every read of the log in progress, including those of runs no longer followed (closed at the end).
        self._reads: set[asyncio.Task[None]] = set()
        self._listen_connection: Any = None

    # Lifecycle ----------------------------------------------------------------------------------

    async def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._flush_loop()))
        if self.db.is_sqlite:
            self._tasks.append(asyncio.create_task(self._poll_heads(self._poll_seconds)))
        else:
            self._tasks.append(asyncio.create_task(self._listen()))
            self._tasks.append(asyncio.create_task(self._poll_heads(self._safety_poll_seconds)))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._pending:
            # Deltas queued at shutdown are written once more, not retried: the run is handed back anyway.
            taken, self._pending = self._pending, {}
            try:
                async with self.db.write() as session:
                    for run_id in sorted(taken):
                        await self.record(session, run_id, taken[run_id])
            except Exception:
                log.warning("run events queued at shutdown were not written", exc_info=True)
        for reading in list(self._reads):
            reading.cancel()
            self._tasks.append(reading)
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    # Writing ------------------------------------------------------------------------------------

    async def record(
        self, session: AsyncSession, run_id: str, events: Sequence[StreamEvent]
    ) -> list[Sequenced]:
        """Append ``events`` to ``run_id``'s log in ``session``'s transaction; pass what this returns to
        ``deliver`` once the transaction has committed (not before: a rollback would have listeners see
        events that never happened)."""
        logged = await run_events.append(session, run_id, [encode(event) for event in events])
        return [(entry.seq, event) for entry, event in zip(logged, events, strict=True)]

    def deliver(self, run_id: str, events: Sequence[Sequenced]) -> None:
        """Hand committed events to this process's listeners, without reading them back."""
        followed = self._followed.get(run_id)
        if followed is None or not events:
            return
        followed.head = max(followed.head, events[-1][0])
        if followed.timed_after is not None:
            followed.timed_after = max(followed.timed_after, events[-1][0])
        gapped = False
        for listener in list(followed.listeners):
            gapped = not listener._offer(run_id, events) or gapped
        if gapped:
            self._wake(run_id, None)

    async def publish(self, run_id: str, *events: StreamEvent) -> None:
        """Append and deliver ``events`` in a transaction of their own."""
        async with self.db.write() as session:
            sequenced = await self.record(session, run_id, events)
        self.deliver(run_id, sequenced)

    def soon(self, run_id: str, *events: StreamEvent) -> None:
        """Queue ``events`` (a run's text deltas) for the next flush, which writes what every run queued
        meanwhile in one transaction: a transaction per delta would cap a database at a few hundred
        deltas a second (bench/event_log.py). Before a writer records more of the run's events, it
        ``settle``s the run, so the log keeps the order they were made in."""
        self._pending.setdefault(run_id, []).extend(events)
        self._flush_wanted.set()

    async def settle(self, run_id: str) -> None:
        """Until ``run_id``'s queued events are written and delivered."""
        while run_id in self._pending or run_id in self._flushing:
            self._flush_wanted.set()
            await self._flushed.wait()

    async def take(self, run_id: str) -> list[StreamEvent]:
        """See ``RunBus.take``: a turn that ends records its last deltas in its own transaction, which
        saves the flush's (for a fast reply, all of its deltas)."""
        if run_id in self._flushing:
            await self.settle(run_id)  # earlier deltas are being written: the rest follow them
            return []
        return self._pending.pop(run_id, [])

    async def _flush_loop(self) -> None:
        while True:
            await self._flush_wanted.wait()
            # Deltas arriving while one flush runs wait for the next: batches grow with the load.
            self._flush_wanted.clear()
            await asyncio.sleep(self._flush_seconds)
            taken, self._pending = self._pending, {}
            if not taken:
                continue
            self._flushing = taken
            try:
                written = await self._write(taken)
            finally:
                self._flushing = {}
                flushed, self._flushed = self._flushed, asyncio.Event()
                flushed.set()
            for run_id, sequenced in written.items():
                self.deliver(run_id, sequenced)

    async def _write(self, taken: dict[str, list[StreamEvent]]) -> dict[str, list[Sequenced]]:
        """Write queued events, retrying after a failure (a delta is not dropped for a database hiccup);
        runs in a fixed order, so two processes' flushes lock the runs' heads without deadlock."""
        delay = 0.05
        while True:
            try:
                async with self.db.write() as session:
                    if not self.db.is_sqlite:
                        # Deltas are not acknowledged writes (the message they make is written, durably,
                        # when its turn ends): their commit need not wait for the disk. A crash of the
                        # database loses at most the last few of them from the log.
                        await session.execute(text("SET LOCAL synchronous_commit TO OFF"))
                    return {
                        run_id: await self.record(session, run_id, taken[run_id]) for run_id in sorted(taken)
                    }
            except Exception:
                log.warning("could not write run events; retrying in %.2fs", delay, exc_info=True)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    # Listening ----------------------------------------------------------------------------------

    def subscription(self) -> LogSubscription:
        return LogSubscription(self)

    def listened(self, run_id: str) -> bool:
        followed = self._followed.get(run_id)
        return followed is not None and bool(followed.listeners)

    async def _head(self, run_id: str) -> int:
        async with self.db.read() as session:
            return (await run_events.heads(session, [run_id])).get(run_id, 0)

    def _follow(self, run_id: str, listener: LogSubscription, *, read: bool) -> _Followed:
        followed = self._followed.setdefault(run_id, _Followed())
        followed.listeners.add(listener)
        position = listener._position(run_id)
        if read or (position is not None and followed.head > position):
            # It may start behind the others (a resume): read what it lacks.
            self._wake(run_id, None)
        return followed

    def _unfollow(self, run_id: str, listener: LogSubscription) -> None:
        followed = self._followed.get(run_id)
        if followed is None:
            return
        followed.listeners.discard(listener)
        if not followed.listeners:
            # A read in progress is left to end (it stops, finding no listener): cancelled, it would cut
            # its transaction and lose its pooled connection, which a run's end must not cost.
            del self._followed[run_id]

    def _wake(self, run_id: str, seq: int | None) -> None:
        """``run_id``'s log has grown to ``seq`` (None: it may have): read it if a listener lacks events."""
        followed = self._followed.get(run_id)
        if followed is None:
            return
        if seq is not None:
            followed.head = max(followed.head, seq)
            if seq <= min(self._positions(run_id, followed), default=seq):
                return  # a wake-up already read
        if followed.reading is not None and not followed.reading.done():
            followed.again = True
            return
        followed.reading = asyncio.create_task(self._read(run_id, followed))
        self._reads.add(followed.reading)
        followed.reading.add_done_callback(self._reads.discard)

    @staticmethod
    def _positions(run_id: str, followed: _Followed) -> list[int]:
        """Where the run's attached listeners stand (those still attaching have no position yet)."""
        positions = (listener._position(run_id) for listener in followed.listeners)
        return [seq for seq in positions if seq is not None]

    async def _read(self, run_id: str, followed: _Followed) -> None:
        while True:
            followed.again = False
            after = min(self._positions(run_id, followed), default=None)
            if after is None:
                return
            try:
                async with self.db.read() as session:
                    logged = await run_events.read_after(session, run_id, after)
            except Exception:
                log.warning("could not read the events of run %s; retrying", run_id, exc_info=True)
                await asyncio.sleep(self._poll_seconds)
                continue
            self._time(followed, after, logged)
            if logged:
                self.deliver(run_id, [(entry.seq, decode(entry)) for entry in logged])
                if len(logged) == 1000:
                    continue  # a page: there may be more
            if not followed.again:
                return

    @staticmethod
    def _time(followed: _Followed, after: int, logged: Sequence[LoggedEvent]) -> None:
        """Time the events another process wrote that reach this one for the first time."""
        if followed.timed_after is not None:
            for entry in logged:
                if entry.seq > followed.timed_after and entry.age is not None:
                    metrics.observe_event_lag(entry.age)
        followed.timed_after = max(followed.timed_after or 0, after, logged[-1].seq if logged else 0)

    async def _poll_heads(self, seconds: float) -> None:
        while True:
            await asyncio.sleep(seconds)
            if not self._followed:
                continue
            try:
                async with self.db.read() as session:
                    found = await run_events.heads(session, list(self._followed))
            except Exception:
                log.warning("could not read the run event heads", exc_info=True)
                continue
            for run_id, seq in found.items():
                self._wake(run_id, seq)

    async def _listen(self) -> None:
        """Hold a LISTEN connection, reconnecting after a failure; after each (re)connect every followed
        run is read, for the wake-ups sent while no connection listened."""
        import asyncpg

        url = make_url(self.db.url).set(drivername="postgresql").render_as_string(hide_password=False)
        delay = 0.1
        while True:
            connection = None
            try:
                connection = await asyncpg.connect(url, timeout=10)
                await connection.add_listener(run_events.CHANNEL, self._notified)
                await connection.add_listener(jobs.CHANNEL, self._job_notified)
                self._listen_connection = connection
                delay = 0.1
                for run_id in list(self._followed):
                    self._wake(run_id, None)
                # An idle connection whose peer vanished is only noticed by using it.
                while True:
                    await asyncio.sleep(_LISTEN_CHECK_SECONDS)
                    await connection.fetchval("SELECT 1", timeout=_LISTEN_CHECK_SECONDS)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("run event LISTEN connection failed; reconnecting in %.1fs", delay, exc_info=True)
            finally:
                self._listen_connection = None
                if connection is not None:
                    with contextlib.suppress(Exception):
                        await connection.close(timeout=1)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    def on_job(self, queue: str, callback: Callable[[], None]) -> None:
        """Call ``callback`` when a job is queued on ``queue`` (a job table's name) by any process."""
        self._job_callbacks.setdefault(queue, []).append(callback)

    def _job_notified(self, _connection: Any, _pid: int, _channel: str, payload: str) -> None:
        for callback in self._job_callbacks.get(payload, []):
            callback()

    def _notified(self, _connection: Any, pid: int, _channel: str, payload: str) -> None:
        if pid in self.db.backend_pids:
            # This process's own write: its writer delivers the events here once its commit returns, so
            # reading them back would only race that delivery.
            return
        run_id, _, seq = payload.partition(" ")
        try:
            self._wake(run_id, int(seq))
        except ValueError:
            log.warning("unreadable run event wake-up %r", payload)


def _consume(task: asyncio.Future[Any]) -> None:
    """Retrieve a shielded task's outcome, so that one whose caller left does not log it as never seen."""
    if not task.cancelled():
        task.exception()


def decode(entry: LoggedEvent) -> StreamEvent:
    return StreamEvent(entry.event, json.loads(entry.data))
