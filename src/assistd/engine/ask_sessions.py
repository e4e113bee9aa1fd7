"""The /ask session service: one conversation per client session id, turn after turn.

A session is a thread, made on its first turn and continued after, stored per tenant so it outlives
restarts. Turns of one session are served one after the other, in the order they arrived: choosing the
thread and queueing the run are serialised per session, and each run waits for the previous turn's to end.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

from ..errors import AssistdError, ConflictError, NotFoundError, UpstreamError
from ..protocol.ask import AskAnswer, AskDelta, AskParams
from ..protocol.common import DeletedObject
from ..store import ask_sessions as store
from ..store import threads as thread_store
from .engine import Engine
from .turns import ThreadBusyError, Turn, TurnOutcome, start_turn

__all__ = ["ANSWER_TIMEOUT_SECONDS", "AnswerTimeoutError", "AskSessions", "AskTurn", "SessionLocks"]

T = TypeVar("T")

# How long a turn waits for the session's previous run to end, and then for its own run's answer.
ANSWER_TIMEOUT_SECONDS = 300.0


class AnswerTimeoutError(AssistdError):
    status_code = 504
    type = "server_error"
    default_code = "timeout"


class SessionLocks:
    """One asyncio lock per (tenant, session), dropped when nobody holds or waits for it.

    asyncio locks are fair, so turns of a session start in the order their requests arrived."""

    def __init__(self) -> None:
        self._locks: dict[tuple[str, str], tuple[asyncio.Lock, int]] = {}

    @contextmanager
    def _registered(self, key: tuple[str, str]) -> Iterator[asyncio.Lock]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            yield lock
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    async def run_exclusive(self, key: tuple[str, str], work: Callable[[], Awaitable[T]]) -> T:
        with self._registered(key) as lock:
            async with lock:
                return await work()


@dataclass(frozen=True)
class AskTurn:
    """A turn of a session under way: the run that answers it, queued."""

    session_id: str
    turn: Turn


class AskSessions:
    """The service behind /ask: ``begin`` a turn, then its ``answer`` or its ``stream``."""

    def __init__(
        self,
        engine: Engine,
        locks: SessionLocks,
        default_assistant: str | None,
        default_model: Callable[[], Awaitable[str | None]],
    ) -> None:
        self._engine = engine
        self._db = engine.db
        self._locks = locks
        # ASSISTD_ASK_DEFAULT_ASSISTANT, and the model of the tenant's built-in default assistant.
        self._default_assistant = default_assistant
        self._default_model = default_model

    async def begin(
        self, tenant: str, key: str | None, params: AskParams, *, key_id: str | None = None
    ) -> AskTurn:
        """Queue the run that answers ``params.user_input`` in the session (made on its first turn), once
        the session's previous run has ended. ``key``: the caller's key fingerprint, for private
        assistants; ``key_id``: the managed key whose daily tokens the run counts against."""
        loop = asyncio.get_running_loop()
        queue_by = loop.time() + ANSWER_TIMEOUT_SECONDS

        async def work() -> AskTurn:
            assistant_id = await self._assistant(tenant, key, params)
            thread_id = await store.open_thread(self._db, tenant, params.session_id, assistant_id)
            try:
                # The run has a whole timeout of its own, however long the turn waited for the previous one.
                turn = await start_turn(
                    self._engine,
                    tenant,
                    thread_id,
                    assistant_id,
                    user_input=params.user_input,
                    time_limit=ANSWER_TIMEOUT_SECONDS,
                    queue_for=queue_by - loop.time(),
                    key_id=key_id,
                )
            except ThreadBusyError as exc:
                raise AnswerTimeoutError(
                    f"The session's previous run {exc.run_id} did not end within "
                    f"{ANSWER_TIMEOUT_SECONDS:.0f} seconds."
                ) from None
            return AskTurn(params.session_id, turn)

        # Only choosing the thread and queueing the run are serialised here; the next turn then waits for
        # this turn's run to end (``queue_for``), and this turn is answered outside the lock.
        return await self._locks.run_exclusive((tenant, params.session_id), work)

    async def answer(self, asked: AskTurn) -> AskAnswer:
        """The reply, once the turn's run has ended; an error that says why there is none."""
        try:
            outcome = await asked.turn.wait()
        finally:
            asked.turn.close()
        return await self._reply(asked, outcome)

    async def stream(self, asked: AskTurn) -> AsyncIterator[AskDelta | AskAnswer]:
        """The reply's text as it is written, then the whole reply; an error that says why there is none
        ends it instead."""
        try:
            async for piece in asked.turn.text_deltas():
                yield AskDelta(delta=piece)
            outcome = await asked.turn.wait()
        finally:
            asked.turn.close()
        yield await self._reply(asked, outcome)

    async def delete(self, tenant: str, session_id: str) -> DeletedObject:
        """Delete the session and its thread (messages and runs with it), between two of its turns."""

        async def work() -> DeletedObject:
            async with self._db.write() as session:
                row = await store.get_row(session, tenant, session_id)
                with contextlib.suppress(NotFoundError):  # deleted through /v1/threads already
                    await thread_store.remove(session, tenant, row.thread_id)
                return await store.remove(session, row)

        return await self._locks.run_exclusive((tenant, session_id), work)

    async def _assistant(self, tenant: str, key: str | None, params: AskParams) -> str:
        """The turn's assistant: the one named, else the session's, else the configured default, else the
        tenant's built-in default."""
        async with self._db.read() as session:
            row = await store.find(session, tenant, params.session_id)
            current = row.assistant_id if row is not None else None
            chosen = await store.choose_assistant(
                session, tenant, key, params.assistant, current, self._default_assistant
            )
        if chosen is None:
            # Nothing names one: the tenant's built-in default answers, so /ask works with nothing configured.
            chosen = await store.default_assistant(self._db, tenant, key, self._default_model)
        return chosen.id

    async def _reply(self, asked: AskTurn, outcome: TurnOutcome) -> AskAnswer:
        turn = asked.turn
        match outcome.status:
            case "completed" | "incomplete":
                return AskAnswer(
                    session_id=asked.session_id,
                    response=outcome.text,
                    thread_id=turn.thread_id,
                    run_id=turn.run.id,
                )
            case "timeout":
                await _cancel_quietly(turn)
                raise AnswerTimeoutError(
                    f"The assistant did not answer within {ANSWER_TIMEOUT_SECONDS:.0f} seconds; run "
                    f"{turn.run.id} was cancelled."
                )
            case "requires_action":
                await _cancel_quietly(turn)
                raise ConflictError(
                    "The assistant called a function, and /ask has no way to supply its output: the run "
                    "was cancelled. Use an assistant without function tools, or the runs API.",
                    param="assistant",
                    code="requires_action",
                )
            case "failed":
                error = outcome.error
                raise UpstreamError(
                    f"The run failed: {error.message if error else 'no reason given'}",
                    code=error.code if error else "server_error",
                )
            case "cancelled" | "expired":
                raise ConflictError(f"The run ended '{outcome.status}' before answering.", param="session_id")


async def _cancel_quietly(turn: Turn) -> None:
    # It may have ended (or its thread been deleted) meanwhile.
    with contextlib.suppress(NotFoundError):
        await turn.cancel()
