"""The run state machine (``engine.state``) as a hypothesis stateful test, on a real database (SQLite, or
PostgreSQL in the PostgreSQL pass): a run is moved to random statuses, one after another. A move the run
lifecycle allows is made and written; a forbidden one is refused with a 400 naming ``run_id`` and leaves the
run as it was; a run that reached a terminal status never moves again.

The lifecycle is written out here as OpenAI documents it, apart from ``engine.state``'s own table, so the
two check each other.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from assistd.engine import state
from assistd.errors import ConflictError
from assistd.protocol.assistants import AssistantCreateParams
from assistd.protocol.runs import RunCreateParams
from assistd.protocol.threads import ThreadCreateParams
from assistd.store import assistants, jobs, threads
from assistd.store import runs as run_store
from assistd.store.database import Database
from assistd.store.detached import insert_rows
from assistd.store.models import RunRow
from fuzz import property_settings

TENANT = "tenant-a"
REQUIRED = {"type": "submit_tool_outputs", "submit_tool_outputs": {"tool_calls": []}}
TERMINAL = {"completed", "incomplete", "failed", "cancelled", "expired"}
LIFECYCLE: dict[str, set[str]] = {
    "queued": {"in_progress", "cancelling", "cancelled", "failed", "expired"},
    "in_progress": {
        "requires_action",
        "completed",
        "incomplete",
        "failed",
        "cancelling",
        "cancelled",
        "expired",
    },
    "requires_action": {"queued", "cancelling", "cancelled", "failed", "expired"},
    "cancelling": {"cancelled", "completed", "incomplete", "failed", "expired"},
    **{status: set() for status in TERMINAL},
}
STATUSES = sorted(LIFECYCLE)
# The timestamp each ending stamps.
STAMPS = {"completed": "completed_at", "failed": "failed_at", "cancelled": "cancelled_at"}


class RunLifecycle(RuleBasedStateMachine):
    """One run per machine, on a thread of its own; the model is its status."""

    def __init__(self, loop: asyncio.AbstractEventLoop, db: Database) -> None:
        super().__init__()
        self.loop, self.db = loop, db
        self.run = self._sync(self._new_run())
        self.status = "queued"
        self.history = ["queued"]

    def _sync(self, coroutine: Any) -> Any:
        return self.loop.run_until_complete(coroutine)

    async def _new_run(self) -> RunRow:
        async with self.db.write() as session:
            assistant = await assistants.create(session, TENANT, AssistantCreateParams(model="m"))
            thread = await threads.create(session, TENANT, ThreadCreateParams())
            row = await assistants.read_row(session, TENANT, assistant.id)
            run = run_store.new_run_row(
                TENANT, thread.id, row, RunCreateParams(assistant_id=assistant.id), 600
            )
            await threads.claim_for_run(session, thread.id, run.id)
            await insert_rows(session, run)
            await jobs.enqueue(session, run.id)
        return run

    async def _stored(self) -> tuple[RunRow, str | None]:
        async with self.db.read() as session:
            stored = await run_store.get_row(session, TENANT, self.run.thread_id, self.run.id)
            thread = await threads.get_row(session, TENANT, self.run.thread_id)
        return stored, thread.active_run_id

    async def _move(self, new: str) -> list[Any]:
        fields = {"required_action": REQUIRED} if new == "requires_action" else {}
        async with self.db.write() as session:
            return await state.transition(session, self.run, new, expires_in=600, **fields)

    @rule(new=st.sampled_from(STATUSES))
    def move(self, new: str) -> None:
        allowed = new in LIFECYCLE[self.status]
        assert state.can_transition(self.status, new) is allowed, (self.history, new)
        if not allowed:
            before = self._sync(self._stored())[0]
            with pytest.raises(ConflictError) as refused:
                self._sync(self._move(new))
            assert refused.value.status_code == 400 and refused.value.param == "run_id"
            after = self._sync(self._stored())[0]
            assert run_store.to_wire(after) == run_store.to_wire(before), "a refused move wrote nothing"
            return
        events = self._sync(self._move(new))
        self.status = new
        self.history.append(new)
        assert events[-1].event == f"thread.run.{new}"
        assert state.run_of(events).status == new

    @precondition(lambda self: self.status in TERMINAL)
    @rule(new=st.sampled_from(STATUSES))
    def a_terminal_run_never_moves(self, new: str) -> None:
        with pytest.raises(ConflictError):
            self._sync(self._move(new))

    @invariant()
    def stored_as_the_model_says(self) -> None:
        stored, active_run = self._sync(self._stored())
        assert stored.status == self.status, self.history
        if self.status in TERMINAL:
            assert stored.expires_at is None
            assert active_run is None, "an ended run frees its thread"
            if stamp := STAMPS.get(self.status):
                assert getattr(stored, stamp) is not None
        else:
            assert active_run == self.run.id, "an active run keeps its thread"
        if self.status == "requires_action":
            assert stored.required_action == REQUIRED and stored.expires_at is not None
        else:
            assert stored.required_action is None
        if "in_progress" in self.history:
            assert stored.started_at is not None


def test_run_lifecycle_state_machine(migrated_url: str) -> None:
    # The failing program Hypothesis prints replays it; the example database keeps it for the next run.
    loop = asyncio.new_event_loop()
    db = Database(migrated_url)
    try:
        run_state_machine_as_test(lambda: RunLifecycle(loop, db), settings=property_settings(25))
    finally:
        loop.run_until_complete(db.close())
        loop.close()
