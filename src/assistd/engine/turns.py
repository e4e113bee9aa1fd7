"""A turn: one run on a thread, followed from its start to its end within a time limit.

The facades that answer in a single request (``/ask``, ``/actions``' ``run-assistant``, a Responses API
later) all do the same: queue a run, perhaps with the user's new message; wait for it, or pass its text on
as it is written; read the reply; cancel a run they cannot carry on. This module does that once and says
how the turn ended as typed data, in no wire format: what an ending means to a client (a status code, an
error body, a frame) is each caller's to say.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel

from ..errors import ConflictError
from ..protocol.messages import MessageCreateParams
from ..protocol.runs import Run, RunCreateParams
from ..store import messages as message_store
from ..store import runs as run_store
from ..store import threads as thread_store
from .bus import RunSubscription
from .engine import POLL_WAIT_STATUSES, Engine
from .events import StreamEvent

__all__ = [
    "ThreadBusyError",
    "Turn",
    "TurnError",
    "TurnOutcome",
    "TurnStatus",
    "start_turn",
    "text_pieces",
]

# Runs are followed through the event bus; the database is read again this often in case their events
# are published elsewhere (another process) or were missed.
RECHECK_SECONDS = 1.0
# A run in these statuses is still on its way to an answer...
_RUNNING = POLL_WAIT_STATUSES
# ...and in these it holds its thread: no other run may start there.
_HOLDING_THREAD = _RUNNING | {"requires_action"}
# The statuses a run's events say before it stops: its first event (``thread.run.created``) is one too.
_NOT_STOPPED = _RUNNING | {"created"}

# How a turn ended: the status its run ended in (or stopped in, waiting for tool outputs), or "timeout"
# when the turn's time was up before that.
TurnStatus = Literal[
    "completed", "incomplete", "failed", "requires_action", "cancelled", "expired", "timeout"
]


class ThreadBusyError(Exception):
    """The thread's active run did not end within the time the turn could wait to start; the caller says
    what that means to its client. ``run_id`` is that run."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"run {run_id} still holds its thread")
        self.run_id = run_id


@dataclass(frozen=True)
class TurnError:
    """Why a run failed: its ``last_error``."""

    code: str
    message: str


@dataclass(frozen=True)
class TurnOutcome:
    """How a turn's run stood when the turn stopped waiting for it."""

    status: TurnStatus
    # The run as it was read then; still queued or in progress when ``status`` is "timeout".
    run: Run
    # The text of the assistant messages the run wrote, oldest first, a blank line between two: the reply,
    # or what the run wrote of it before it stopped.
    text: str
    # Why the run failed (``status`` "failed").
    error: TurnError | None = None
    # Why the run ended incomplete (``status`` "incomplete"), e.g. "max_completion_tokens".
    incomplete_reason: str | None = None

    @classmethod
    def of(cls, run: Run, text: str) -> TurnOutcome:
        error = TurnError(run.last_error.code, run.last_error.message) if run.last_error else None
        reason = run.incomplete_details.reason if run.incomplete_details else None
        return cls(_turn_status(run), run, text, error, reason)


def _turn_status(run: Run) -> TurnStatus:
    match run.status:
        case "queued" | "in_progress" | "cancelling":
            return "timeout"
        case "completed" | "incomplete" | "failed" | "requires_action" | "cancelled" | "expired":
            return run.status


class Turn:
    """A run queued by ``start_turn``, followed until it stops or the turn's time is up.

    The caller closes it (``close``) once done with it, which stops listening to the run; the run itself
    goes on unless cancelled.
    """

    def __init__(
        self,
        engine: Engine,
        tenant: str,
        run: Run,
        listener: RunSubscription,
        time_limit: float,
        *,
        heard_from_queued: bool = False,
    ) -> None:
        self._engine = engine
        self._tenant = tenant
        self._listener = listener
        self._deadline = asyncio.get_running_loop().time() + time_limit
        # The run as it was queued.
        self.run = run
        # ``listener`` was attached in the transaction that queued ``run``: every status since is among its
        # events, and ``run``'s status needs no read at first.
        self._heard_from_queued = heard_from_queued

    @property
    def thread_id(self) -> str:
        return self.run.thread_id

    def _remaining(self) -> float:
        return self._deadline - asyncio.get_running_loop().time()

    async def wait(self) -> TurnOutcome:
        """Wait until the run stops, however it stops, or until the turn's time is up; then how it stands.

        Raises NotFoundError when the run is gone (its thread was deleted meanwhile).
        """
        while True:
            if await self._status() in _RUNNING and self._remaining() > 0:
                await self._engine.wait_while(
                    self._listener, _RUNNING, min(RECHECK_SECONDS, self._remaining())
                )
                continue
            outcome = await self._outcome()
            # A run that stopped for tool outputs may have been given them (through /v1) since its status
            # was read: still running, it is "timeout" only once the time is up.
            if outcome.status != "timeout" or self._remaining() <= 0:
                return outcome

    async def stopped(self) -> None:
        """Wait as ``wait`` does, until the run stops or the turn's time is up, but read nothing once it has:
        for a caller that reads the run itself then (a response reads its run and messages). The status is
        read at first (unless the turn has heard the run's events since it was queued) and after each quiet
        ``RECHECK_SECONDS``; a status event says the rest."""
        status = self.run.status if self._heard_from_queued else await self._status()
        while status in _RUNNING and self._remaining() > 0:
            event = await self._engine.wait_while(
                self._listener, _NOT_STOPPED, min(RECHECK_SECONDS, self._remaining())
            )
            status = event.event.removeprefix("thread.run.") if event is not None else await self._status()

    async def text_deltas(self) -> AsyncIterator[str]:
        """The reply's text as the run writes it, piece by piece, until the run stops or the turn's time is
        up (``wait`` then says which); listening to the run ends with it."""
        async for event in self.events():
            if event.event == "thread.message.delta":
                for piece in text_pieces(event.data):
                    yield piece

    def _source(self) -> AsyncIterator[StreamEvent]:
        """Where the events come from: the run's, from when the turn began to listen."""
        return self._engine.follow(self._listener)

    async def events(self) -> AsyncIterator[StreamEvent]:
        """The run's events as the engine streams them, until the run stops or the turn's time is up
        (``wait`` then says which); listening to the run ends with it."""
        events = self._source()
        try:
            while True:
                # A timeout around each step, not around the loop: one that spanned the ``yield`` would
                # fire wherever the consumer happened to be.
                try:
                    async with asyncio.timeout(max(self._remaining(), 0)):
                        event = await anext(events)
                except (StopAsyncIteration, TimeoutError):
                    return
                yield event
        finally:
            if isinstance(events, AsyncGenerator):
                await events.aclose()

    async def cancel(self) -> Run:
        """Cancel the run, or leave it be if it has ended meanwhile: the run as it is then.

        Raises NotFoundError when the run is gone (its thread was deleted meanwhile).
        """
        try:
            return await self._engine.cancel_run(self._tenant, self.thread_id, self.run.id)
        except ConflictError:
            async with self._engine.db.read() as session:
                return run_store.to_wire(
                    await run_store.get_row(session, self._tenant, self.thread_id, self.run.id)
                )

    def close(self) -> None:
        self._listener.close()

    async def _status(self) -> str | None:
        async with self._engine.db.read() as session:
            return await run_store.status_of(session, self.run.id)

    async def _outcome(self) -> TurnOutcome:
        async with self._engine.db.read() as session:
            row = await run_store.get_row(session, self._tenant, self.thread_id, self.run.id)
            written = await message_store.written_by(session, row.id)
        text = "\n\n".join(part for part in map(message_store.text_of, written) if part)
        return TurnOutcome.of(run_store.to_wire(row), text)


def text_pieces(data: BaseModel | dict[str, Any]) -> Iterator[str]:
    """The text a ``thread.message.delta`` event adds to its message."""
    body = data.model_dump() if isinstance(data, BaseModel) else data
    for part in body.get("delta", {}).get("content", []):
        if part.get("type") == "text" and part.get("text", {}).get("value"):
            yield str(part["text"]["value"])


async def start_turn(
    engine: Engine,
    tenant: str,
    thread_id: str,
    assistant_id: str,
    *,
    user_input: str | None = None,
    time_limit: float,
    queue_for: float | None = None,
    key_id: str | None = None,
) -> Turn:
    """Queue a run of the assistant on the thread, ``user_input`` added to the thread as a user message by
    the same transaction, and follow it for ``time_limit`` seconds from then.

    A thread whose active run has not ended is refused at once (ConflictError, as the runs API does);
    with ``queue_for`` (seconds), that run is waited for up to so long, as a conversation's next turn
    waits for the one before, and ``ThreadBusyError`` says it did not end in time.
    """
    messages = [MessageCreateParams(role="user", content=user_input)] if user_input is not None else None
    params = RunCreateParams(assistant_id=assistant_id, additional_messages=messages)
    # Attached to the run as it is queued, so that no event of the run can come before it.
    listener = engine.bus.subscription()
    try:
        if queue_for is None:
            run = await engine.create_run(tenant, thread_id, params, listener, key_id=key_id)
        else:
            run = await _queue_behind(engine, tenant, thread_id, params, listener, queue_for, key_id)
    except BaseException:
        listener.close()
        raise
    return Turn(engine, tenant, run, listener, time_limit)


async def _active_run(engine: Engine, thread_id: str) -> str | None:
    async with engine.db.read() as session:
        return await thread_store.active_run_of(session, thread_id)


async def _queue_behind(
    engine: Engine,
    tenant: str,
    thread_id: str,
    params: RunCreateParams,
    listener: RunSubscription,
    seconds: float,
    key_id: str | None,
) -> Run:
    """Queue the run once the thread's active run, if any, has ended: a run may outlive the turn that
    started it (a timed-out turn, a client of /v1 on the same thread)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        active = await _active_run(engine, thread_id)
        if active is None:
            try:
                return await engine.create_run(tenant, thread_id, params, listener, key_id=key_id)
            except ConflictError:
                # Another run took the thread between the read and the claim.
                active = await _active_run(engine, thread_id)
                if active is None:
                    raise
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise ThreadBusyError(active)
        waiter = await engine.listen(active)
        try:
            # Listening began before this read, so an end between the two is not missed.
            if await _active_run(engine, thread_id) == active:
                await engine.wait_while(waiter, _HOLDING_THREAD, min(RECHECK_SECONDS, remaining))
        finally:
            waiter.close()
