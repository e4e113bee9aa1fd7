"""The run event bus: one interface for every deployment, two implementations.

- ``LogBus`` (engine/event_log.py): events go through the database's ``run_events`` log, so any process on
  any host can stream, long-poll or resume any run. Used with PostgreSQL, and with SQLite when several
  processes share the database file.
- ``MemoryBus`` (below): one process, nothing to share. Events go straight to this process's listeners,
  numbered in memory, and a run's recent events are kept in memory for a listener that resumes.

Writers ``record`` a run's events in the transaction that made them and ``deliver`` what that returned
once it commits; text deltas, made outside any transaction, go through ``soon`` and are ``settle``d before
the run's next recorded events.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from .events import StreamEvent

# One event of a run as a listener receives it: its place in the run's stream, and the event.
Sequenced = tuple[int, StreamEvent]


class RunSubscription(Protocol):
    """A listener's queue of the events of the runs it is attached to, each numbered (``seq``), each
    run's in order."""

    queue: asyncio.Queue[StreamEvent]

    async def attach(self, run_id: str, after: int | None = None, *, new: bool = False) -> None: ...

    def last_seq(self, run_id: str) -> int: ...

    def close(self) -> None: ...

    async def get(self) -> StreamEvent: ...


class RunBus(Protocol):
    # Whether other processes publish and listen too (so a cancel may arrive as an event).
    shared: bool

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def record(
        self, session: AsyncSession, run_id: str, events: Sequence[StreamEvent]
    ) -> list[Sequenced]: ...

    def deliver(self, run_id: str, events: Sequence[Sequenced]) -> None: ...

    async def publish(self, run_id: str, *events: StreamEvent) -> None: ...

    def soon(self, run_id: str, *events: StreamEvent) -> None: ...

    async def settle(self, run_id: str) -> None: ...

    def subscription(self) -> RunSubscription: ...

    def listened(self, run_id: str) -> bool: ...

    def on_job(self, queue: str, callback: Callable[[], None]) -> None:
        """Call ``callback`` when another process queues a job on ``queue`` (a job table's name)."""
        ...


# How long a run's events stay in memory after its last one, for listeners that resume.
_MEMORY_RETENTION_SECONDS = 60.0


@dataclass
class _History:
    events: list[Sequenced] = field(default_factory=list)
    last_at: float = 0.0
    listeners: set[MemorySubscription] = field(default_factory=set)


class MemorySubscription:
    def __init__(self, bus: MemoryBus) -> None:
        self._bus = bus
        self._runs: dict[str, int] = {}
        self.queue: asyncio.Queue[StreamEvent] = asyncio.Queue()

    async def attach(self, run_id: str, after: int | None = None, *, new: bool = False) -> None:
        history = self._bus._history(run_id)
        head = history.events[-1][0] if history.events else 0
        self._runs[run_id] = head if after is None else after
        history.listeners.add(self)
        self._offer(run_id, history.events)

    def last_seq(self, run_id: str) -> int:
        return self._runs.get(run_id, 0)

    def _offer(self, run_id: str, events: Sequence[Sequenced]) -> None:
        last = self._runs.get(run_id)
        if last is None:
            return
        for seq, event in events:
            if seq > last:
                self.queue.put_nowait(replace(event, seq=seq))
                last = seq
        self._runs[run_id] = last

    def close(self) -> None:
        for run_id in self._runs:
            history = self._bus._runs.get(run_id)
            if history is not None:
                history.listeners.discard(self)
        self._runs.clear()

    async def get(self) -> StreamEvent:
        return await self.queue.get()


class MemoryBus:
    """Run events within one process (see the module's docstring)."""

    shared = False

    def __init__(self, retention_seconds: float = _MEMORY_RETENTION_SECONDS) -> None:
        self._runs: dict[str, _History] = {}
        self._retention = retention_seconds
        self._swept_at = time.monotonic()

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def _history(self, run_id: str) -> _History:
        return self._runs.setdefault(run_id, _History(last_at=time.monotonic()))

    async def record(
        self, session: AsyncSession, run_id: str, events: Sequence[StreamEvent]
    ) -> list[Sequenced]:
        # Nothing is written; the events are numbered when delivered, in the order listeners see them.
        return [(0, event) for event in events]

    def deliver(self, run_id: str, events: Sequence[Sequenced]) -> None:
        if not events:
            return
        history = self._history(run_id)
        head = history.events[-1][0] if history.events else 0
        numbered = [(head + n, event) for n, (_, event) in enumerate(events, start=1)]
        history.events.extend(numbered)
        history.last_at = time.monotonic()
        for listener in list(history.listeners):
            listener._offer(run_id, numbered)
        self._sweep()

    async def publish(self, run_id: str, *events: StreamEvent) -> None:
        self.deliver(run_id, [(0, event) for event in events])

    def soon(self, run_id: str, *events: StreamEvent) -> None:
        self.deliver(run_id, [(0, event) for event in events])

    async def settle(self, run_id: str) -> None:
        return None

    def on_job(self, queue: str, callback: Callable[[], None]) -> None:
        # One process: it queues and claims its jobs itself, and wakes its own workers when it does.
        return None

    def subscription(self) -> MemorySubscription:
        return MemorySubscription(self)

    def listened(self, run_id: str) -> bool:
        history = self._runs.get(run_id)
        return history is not None and bool(history.listeners)

    def _sweep(self) -> None:
        now = time.monotonic()
        if now - self._swept_at < self._retention / 10:
            return
        self._swept_at = now
        for run_id in [
            r for r, h in self._runs.items() if not h.listeners and now - h.last_at > self._retention
        ]:
            del self._runs[run_id]
