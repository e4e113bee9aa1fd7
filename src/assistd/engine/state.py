"""The run state machine: the one place where a run's status changes.

queued → in_progress → requires_action ⇄ (queued →) in_progress → completed | incomplete | failed,
any active status → cancelling → cancelled, and requires_action → expired when outputs never come.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ..errors import ConflictError
from ..store import jobs, threads
from ..store.clock import now
from ..store.models import MessageRow, RunRow, RunStepRow

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
) -> None:
    """Move ``run`` to ``new``; a run that ends frees its thread, leaves the queue and closes its steps."""
    if not can_transition(run.status, new):
        raise ConflictError(
            f"Cannot move run {run.id} from status '{run.status}' to '{new}'.", param="run_id"
        )
    at = now()
    run.status = new
    for name, value in fields.items():
        setattr(run, name, value)
    if new == "in_progress" and run.started_at is None:
        run.started_at = at
    if new == "requires_action":
        run.expires_at = at + int(expires_in or 0)
    else:
        run.required_action = None
    if stamp := _STAMP.get(new):
        setattr(run, stamp, at)
    if new in TERMINAL:
        run.expires_at = None
        await threads.release_run(session, run.thread_id, run.id)
        await jobs.finish(session, run.id)
        await _close_leftovers(session, run, new, at)


async def _close_leftovers(session: AsyncSession, run: RunRow, outcome: str, at: int) -> None:
    step_status = _STEP_STATUS.get(outcome)
    if step_status is not None:
        stamp = {"cancelled": "cancelled_at", "expired": "expired_at", "failed": "failed_at"}[step_status]
        await session.execute(
            update(RunStepRow)
            .where(RunStepRow.run_id == run.id, RunStepRow.status == "in_progress")
            .values(
                status=step_status,
                last_error=run.last_error if step_status == "failed" else None,
                **{stamp: at},
            )
        )
    reason = _MESSAGE_REASON.get(outcome)
    if reason is not None:
        await session.execute(
            update(MessageRow)
            .where(MessageRow.run_id == run.id, MessageRow.status == "in_progress")
            .values(status="incomplete", incomplete_at=at, incomplete_details={"reason": reason})
        )


async def open_steps(session: AsyncSession, run_id: str) -> list[RunStepRow]:
    stmt = select(RunStepRow).where(RunStepRow.run_id == run_id, RunStepRow.status == "in_progress")
    return list((await session.scalars(stmt)).all())
