"""Run events as OpenAI's streams name them, and the in-process bus that carries them to listeners."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

# Events after which a run stream has nothing more to say until the client acts again.
FINAL_RUN_EVENTS = frozenset(
    {
        "thread.run.completed",
        "thread.run.incomplete",
        "thread.run.failed",
        "thread.run.cancelled",
        "thread.run.expired",
        "thread.run.requires_action",
    }
)


@dataclass(frozen=True)
class StreamEvent:
    event: str
    data: BaseModel | dict[str, Any]

    @property
    def is_run_status(self) -> bool:
        return self.event.startswith("thread.run.") and not self.event.startswith("thread.run.step.")


class Subscription:
    """A listener's queue of events for the runs it is attached to."""

    def __init__(self, bus: EventBus) -> None:
        self._bus = bus
        self._runs: list[str] = []
        self.queue: asyncio.Queue[StreamEvent] = asyncio.Queue()

    def attach(self, run_id: str) -> None:
        self._runs.append(run_id)
        self._bus._listeners[run_id].add(self)

    def close(self) -> None:
        for run_id in self._runs:
            listeners = self._bus._listeners.get(run_id)
            if listeners is not None:
                listeners.discard(self)
                if not listeners:
                    del self._bus._listeners[run_id]
        self._runs.clear()

    async def get(self) -> StreamEvent:
        return await self.queue.get()


class EventBus:
    """Fan-out of run events to the streams and long polls of this process.

    ``on_status``, when set, also hears each run status published here (for the other processes).
    """

    def __init__(self) -> None:
        self._listeners: defaultdict[str, set[Subscription]] = defaultdict(set)
        self.on_status: Callable[[str, str], None] | None = None

    def subscription(self) -> Subscription:
        return Subscription(self)

    def listened(self, run_id: str) -> bool:
        return bool(self._listeners.get(run_id))

    def publish(self, run_id: str, *events: StreamEvent) -> None:
        if self.on_status is not None:
            for event in events:
                if event.is_run_status:
                    self.on_status(run_id, event.event)
        self.deliver(run_id, *events)

    def deliver(self, run_id: str, *events: StreamEvent) -> None:
        """Hand events to this process's listeners only."""
        listeners = self._listeners.get(run_id)
        if not listeners:
            return
        for listener in listeners:
            for event in events:
                listener.queue.put_nowait(event)
