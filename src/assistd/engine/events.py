"""Run events as OpenAI's streams name them. The bus that carries them is engine/bus.py."""

from __future__ import annotations

from dataclasses import dataclass, field
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
    # Its place in the run's stream, once the bus has numbered it: what a client that reconnects names
    # to resume after it (the SSE ``id``).
    seq: int | None = field(default=None, compare=False)

    @property
    def is_run_status(self) -> bool:
        return self.event.startswith("thread.run.") and not self.event.startswith("thread.run.step.")
