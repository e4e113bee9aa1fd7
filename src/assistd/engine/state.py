"""The run state machine: the one place where a run's status changes, and where the events telling it are
made.

queued → in_progress → requires_action ⇄ (queued →) in_progress → completed | incomplete | failed,
any active status → cancelling → cancelled, and requires_action → expired when outputs never come.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from .. import metrics
from ..errors import ConflictError
from ..protocol.runs import Run
from ..store import jobs, threads
from ..store import messages as message_store
from ..store import runs as run_store
from ..store.clock import now
from ..store.detached import save
from ..store.models import MessageRow, RunRow, RunStepRow
from .events import StreamEvent

TERMINAL = frozenset({"completed", "incomplete", "failed", "cancelled", "expired"})
ACTIVE = frozenset({"queued", "in_progress", "requires_action", "cancelling"})

_ALLOWED: dict[str, frozenset[str]] = {
    "queued": frozenset({"in_progress", "cancelling", "cancelled", "failed", "expired"}),
    "in_progress": frozenset(
        {"requires_action", "completed", "incomplete", "failed", "cancelling", "cancelled", "expired"}
    ),
    "requires_action": frozenset({"queued", "cancelling", "cancelled", "failed", "expired"}),
    "cancelling": frozenset({"cancelled", "completed", "incomplete", "failed", "expired"}),
}

# What happens to a run's unfinished steps and messages when the run ends this way.
_STEP_STATUS = {"cancelled": "cancelled", "expired": "expired", "failed": "failed", "incomplete": "failed"}
_MESSAGE_REASON = {
    "cancelled": "run_cancelled",
    "expired": "run_expired",
    "failed": "run_failed",
    "incomplete": "max_tokens",
}
_STAMP = {"completed": "completed_at", "failed": "failed_at", "cancelled": "cancelled_at"}


def can_transition(current: str, new: str) -> bool:
    return new in _ALLOWED.get(current, frozenset())


async def transition(
    session: AsyncSession, run: RunRow, new: str, *, expires_in: float | None = None, **fields: Any
) -> list[StreamEvent]:
    """Move ``run`` to ``new`` and write what changed (``run`` is detached: see ``store.detached``); a run
    that ends frees its thread, leaves the queue and closes its steps; one that awaits tool outputs leaves
    the queue too (submitting them queues it again). ``fields`` are written with it.

    Returns the events to publish, in order, once the caller's transaction commits: those of the steps and
    messages that ending the run closed, then ``thread.run.<new>`` with the run as the transition left it,
    always last. What the caller tells of its own (a step it completed) goes before all of them.
    """
    if not can_transition(run.status, new):
        raise ConflictError(
            f"Cannot move run {run.id} from status '{run.status}' to '{new}'.", param="run_id"
        )
    at = now()
    changes: dict[str, Any] = {"status": new, **fields}
    if new == "in_progress" and run.started_at is None:
        changes["started_at"] = at
    if new == "requires_action":
        changes["expires_at"] = at + int(expires_in or 0)
    elif run.required_action is not None:
        changes["required_action"] = None
    if stamp := _STAMP.get(new):
        changes[stamp] = at
    if new in TERMINAL:
        changes["expires_at"] = None
    for name, value in changes.items():
        setattr(run, name, value)
    await save(session, run, *changes)
    closed: list[StreamEvent] = []
    if new in TERMINAL:
        # Counted here, where every ending passes; a transaction that then rolls back (rare: the
        # transition is its last write) would count a run twice.
        metrics.observe_run_finished(new, time.time() - run.created_at)
        await threads.release_run(session, run.thread_id, run.id)
        await jobs.finish(session, run.id)
        closed = await _close_leftovers(session, run.id, new, run.last_error)
    elif new == "requires_action":
        await jobs.finish(session, run.id)
    return [*closed, _status_event(run)]


async def resume(session: AsyncSession, run: RunRow) -> list[StreamEvent]:
    """A run claimed again while ``in_progress`` (after a crash or a shutdown) starts its turn over: the
    step and message the attempt before may have left half-written are failed. Not a transition (the
    status stays), but its streams are told ``thread.run.in_progress`` again, after what was closed."""
    assert run.status == "in_progress"
    interrupted = {"code": "server_error", "message": "Interrupted by a server restart."}
    closed = await _close_leftovers(session, run.id, "failed", interrupted)
    return [*closed, _status_event(run)]


def run_of(events: Sequence[StreamEvent]) -> Run:
    """The run as ``transition`` (or ``resume``) left it: the data of the status event it puts last."""
    run = events[-1].data
    assert isinstance(run, Run)
    return run


def _status_event(run: RunRow) -> StreamEvent:
    # The one place a run's status event is made: a bus that carries events further starts here.
    return StreamEvent(f"thread.run.{run.status}", run_store.to_wire(run))


async def _close_leftovers(
    session: AsyncSession, run_id: str, outcome: str, last_error: dict[str, Any] | None
) -> list[StreamEvent]:
    """Close the steps and messages a run left unfinished, as ending it with ``outcome`` requires."""
    at = now()
    events: list[StreamEvent] = []
    step_status = _STEP_STATUS.get(outcome)
    if step_status is not None:
        stamp = {"cancelled": "cancelled_at", "expired": "expired_at", "failed": "failed_at"}[step_status]
        for step in await open_steps(session, run_id):
            step.status = step_status
            step.last_error = last_error if step_status == "failed" else None
            setattr(step, stamp, at)
            await session.flush()
            events.append(StreamEvent(f"thread.run.step.{step_status}", run_store.step_to_wire(step)))
    reason = _MESSAGE_REASON.get(outcome)
    if reason is not None:
        stmt = select(MessageRow).where(MessageRow.run_id == run_id, MessageRow.status == "in_progress")
        for message in (await session.scalars(stmt)).all():
            message.status, message.incomplete_at = "incomplete", at
            message.incomplete_details = {"reason": reason}
            await session.flush()
            events.append(StreamEvent("thread.message.incomplete", message_store.to_wire(message)))
    return events


async def open_steps(session: AsyncSession, run_id: str) -> list[RunStepRow]:
    stmt = select(RunStepRow).where(RunStepRow.run_id == run_id, RunStepRow.status == "in_progress")
    return list((await session.scalars(stmt)).all())
