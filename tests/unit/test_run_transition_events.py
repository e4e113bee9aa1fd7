"""The events ``engine.state`` returns, on a real SQLite database: every transition tells the run's new status
last, once, with the run as committed; what ending a run closes is told before it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

from assistd.engine import state
from assistd.engine.events import StreamEvent
from assistd.protocol.assistants import AssistantCreateParams
from assistd.protocol.runs import RunCreateParams
from assistd.protocol.threads import ThreadCreateParams
from assistd.store import assistants, jobs, threads
from assistd.store import messages as message_store
from assistd.store import runs as run_store
from assistd.store.database import Database
from assistd.store.detached import insert_rows, save
from assistd.store.models import MessageRow, RunRow, RunStepRow

TENANT = "tenant-a"
REQUIRED = {"type": "submit_tool_outputs", "submit_tool_outputs": {"tool_calls": []}}


async def _run_in(db: Database, status: str) -> RunRow:
    """A new run on a new thread, claimed and queued as the engine makes one, then put in ``status``."""
    async with db.write() as session:
        assistant = await assistants.create(session, TENANT, AssistantCreateParams(model="m"))
        thread = await threads.create(session, TENANT, ThreadCreateParams())
        params = RunCreateParams(assistant_id=assistant.id)
        row = await assistants.read_row(session, TENANT, assistant.id)
        run = run_store.new_run_row(TENANT, thread.id, row, params, 600)
        await threads.claim_for_run(session, thread.id, run.id)
        await insert_rows(session, run)
        await jobs.enqueue(session, run.id)
        if status != "queued":
            # Arranged directly, not by transitions: each test starts from the status it names.
            run.status = status
            run.required_action = REQUIRED if status == "requires_action" else None
            await save(session, run, "status", "required_action")
    return run


async def _leftovers(db: Database, run: RunRow) -> tuple[MessageRow, RunStepRow]:
    """A half-written turn: a message in progress and its message_creation step."""
    message = message_store.assistant_draft(TENANT, run.thread_id, run.id, run.assistant_id)
    details = {"type": "message_creation", "message_creation": {"message_id": message.id}}
    step = run_store.new_step_row(run, "message_creation", details)
    async with db.write() as session:
        await insert_rows(session, message, step)
    return message, step


async def _as_stored(db: Database, run: RunRow, message: MessageRow, step: RunStepRow) -> list[StreamEvent]:
    """What ending ``run`` as failed must tell, from the rows as they are now in the database."""
    async with db.read() as session:
        [stored_step] = await run_store.steps_of(session, run.id)
        stored_message = await message_store.get_row(session, TENANT, run.thread_id, message.id)
        stored_run = await run_store.get_row(session, TENANT, run.thread_id, run.id)
    assert stored_step.id == step.id
    return [
        StreamEvent(f"thread.run.step.{stored_step.status}", run_store.step_to_wire(stored_step)),
        StreamEvent("thread.message.incomplete", message_store.to_wire(stored_message)),
        StreamEvent(f"thread.run.{stored_run.status}", run_store.to_wire(stored_run)),
    ]


def _on_sqlite(tmp_path: Path, test: Callable[[Database], Awaitable[None]]) -> None:
    async def main() -> None:
        db = Database(f"sqlite:///{tmp_path / 'state.db'}")
        try:
            await db.migrate()
            await test(db)
        finally:
            await db.close()

    asyncio.run(main())


def test_transition_every_allowed_move_ends_with_its_run_status_event(tmp_path: Path) -> None:
    moves = [
        (current, new)
        for current in sorted(state.ACTIVE)
        for new in sorted(state.ACTIVE | state.TERMINAL)
        if state.can_transition(current, new)
    ]
    assert len(moves) == 22

    async def test(db: Database) -> None:
        for current, new in moves:
            run = await _run_in(db, current)
            async with db.write() as session:
                events = await state.transition(session, run, new)
            async with db.read() as session:
                stored = await run_store.get_row(session, TENANT, run.thread_id, run.id)
            assert stored.status == new
            assert events == [StreamEvent(f"thread.run.{new}", run_store.to_wire(stored))], (current, new)
            assert state.run_of(events) == run_store.to_wire(stored)

    _on_sqlite(tmp_path, test)


def test_transition_tells_what_ending_a_run_closed_before_the_run(tmp_path: Path) -> None:
    async def test(db: Database) -> None:
        run = await _run_in(db, "in_progress")
        message, step = await _leftovers(db, run)
        error = {"code": "server_error", "message": "boom"}
        async with db.write() as session:
            events = await state.transition(session, run, "failed", last_error=error)
        expected = await _as_stored(db, run, message, step)
        assert [event.event for event in expected] == [
            "thread.run.step.failed",
            "thread.message.incomplete",
            "thread.run.failed",
        ]
        assert events == expected

    _on_sqlite(tmp_path, test)


def test_resume_closes_the_attempt_before_and_tells_in_progress_again(tmp_path: Path) -> None:
    async def test(db: Database) -> None:
        run = await _run_in(db, "in_progress")
        message, step = await _leftovers(db, run)
        async with db.write() as session:
            events = await state.resume(session, run)
        expected = await _as_stored(db, run, message, step)
        assert [event.event for event in expected] == [
            "thread.run.step.failed",
            "thread.message.incomplete",
            "thread.run.in_progress",
        ]
        assert events == expected

    _on_sqlite(tmp_path, test)
