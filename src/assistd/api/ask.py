"""The /ask session service, as the apps built on the hosted Assistants API called it; and ``GET /``.

``POST /ask`` takes ``{"session_id", "user_input"}`` and answers the assistant's reply: a session is a
thread, created on its first turn and continued after, stored per tenant so it outlives restarts. Turns of
one session are served one after the other, in the order they arrived.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from .. import __version__
from ..engine.bus import RunSubscription as Subscription
from ..engine.engine import Engine
from ..errors import AssistdError, ConflictError, NotFoundError, UpstreamError
from ..llm.registry import ProviderRegistry
from ..protocol.ask import AskAnswer, AskDelta, AskParams
from ..protocol.messages import MessageCreateParams
from ..protocol.runs import Run, RunCreateParams
from ..protocol.threads import ThreadCreateParams
from ..store import ask_sessions as store
from ..store import runs as run_store
from ..store import threads as thread_store
from ..store.clock import now
from ..store.database import Database
from ..store.models import MessageRow, RunRow, ThreadRow
from ..store.pagination import PageQuery
from .auth import Caller, CallerKey
from .deps import Db, RunEngine
from .pagination import page_query
from .render import json_response

router = APIRouter(tags=["ask"])

T = TypeVar("T")

# How long a turn waits for the session's previous run to end, and then for its own run's answer.
ANSWER_TIMEOUT_SECONDS = 300.0
# Runs are followed through the event bus; the database is read again this often in case their events
# are published elsewhere (another process) or were missed.
RECHECK_SECONDS = 1.0
_RUNNING = frozenset({"queued", "in_progress", "cancelling"})
_HOLDING_THREAD = _RUNNING | {"requires_action"}


class AnswerTimeoutError(AssistdError):
    status_code = 504
    type = "server_error"
    default_code = "timeout"


class _SessionLocks:
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


def _locks(request: Request) -> _SessionLocks:
    state = request.app.state
    locks: _SessionLocks | None = getattr(state, "ask_locks", None)
    if locks is None:
        locks = state.ask_locks = _SessionLocks()
    return locks


@dataclass
class _Turn:
    session_id: str
    thread_id: str
    run: Run
    listener: Subscription
    deadline: float


def _remaining(deadline: float) -> float:
    return deadline - asyncio.get_running_loop().time()


async def _session_thread(
    db: Database, caller: Caller, params: AskParams, default: str | None, providers: ProviderRegistry
) -> tuple[str, str]:
    """The session's thread (made on its first turn, or again if its thread was deleted) and this turn's
    assistant, both recorded on the session."""
    async with db.read() as session:
        row = await store.find(session, caller.tenant, params.session_id)
        assistant = await store.choose_assistant(
            session,
            caller.tenant,
            caller.fingerprint,
            params.assistant,
            row.assistant_id if row is not None else None,
            default,
        )
    if assistant is None:
        # Nothing names one: the tenant's built-in default answers, so /ask works with nothing configured.
        assistant = await store.default_assistant(
            db, caller.tenant, caller.fingerprint, providers.default_model
        )
    try:
        async with db.write() as session:
            row = await store.find(session, caller.tenant, params.session_id)
            alive = row is not None and (
                await session.scalar(select(ThreadRow.id).where(ThreadRow.id == row.thread_id)) is not None
            )
            if row is not None and alive:
                row.assistant_id, row.updated_at = assistant.id, now()
                return row.thread_id, assistant.id
            metadata = {"ask_session_id": params.session_id}
            thread = await thread_store.create(session, caller.tenant, ThreadCreateParams(metadata=metadata))
            if row is None:
                session.add(store.new_row(caller.tenant, params.session_id, thread.id, assistant.id))
            else:
                row.thread_id, row.assistant_id, row.updated_at = thread.id, assistant.id, now()
            await session.flush()
            return thread.id, assistant.id
    except IntegrityError:
        # Another process opened the same session at the same moment: continue its thread.
        async with db.read() as session:
            row = await store.get_row(session, caller.tenant, params.session_id)
            return row.thread_id, assistant.id


async def _active_run(db: Database, thread_id: str) -> str | None:
    async with db.read() as session:
        return await session.scalar(select(ThreadRow.active_run_id).where(ThreadRow.id == thread_id))


async def _start_run(
    engine: Engine,
    caller: Caller,
    thread_id: str,
    params: RunCreateParams,
    listener: Subscription,
    deadline: float,
) -> Run:
    """Queue the turn's run once the thread's active run, if any, has ended: a run may outlive the turn
    that started it (a timed-out turn, a client of /v1 on the same thread)."""
    while True:
        active = await _active_run(engine.db, thread_id)
        if active is None:
            try:
                return await engine.create_run(caller.tenant, thread_id, params, listener)
            except ConflictError:
                active = await _active_run(engine.db, thread_id)
                if active is None:
                    raise
        if _remaining(deadline) <= 0:
            raise AnswerTimeoutError(
                f"The session's previous run {active} did not end within "
                f"{ANSWER_TIMEOUT_SECONDS:.0f} seconds."
            )
        waiter = await engine.listen(active)
        try:
            # Listening began before this read, so an end between the two is not missed.
            if await _active_run(engine.db, thread_id) == active:
                await engine.wait_while(waiter, _HOLDING_THREAD, min(RECHECK_SECONDS, _remaining(deadline)))
        finally:
            waiter.close()


async def _begin(request: Request, caller: Caller, params: AskParams) -> _Turn:
    engine: Engine = request.app.state.engine
    deadline = asyncio.get_running_loop().time() + ANSWER_TIMEOUT_SECONDS
    default = request.app.state.settings.ask_default_assistant
    providers: ProviderRegistry = request.app.state.providers

    async def work() -> _Turn:
        thread_id, assistant_id = await _session_thread(engine.db, caller, params, default, providers)
        run_params = RunCreateParams(
            assistant_id=assistant_id,
            additional_messages=[MessageCreateParams(role="user", content=params.user_input)],
        )
        listener = engine.bus.subscription()
        try:
            run = await _start_run(engine, caller, thread_id, run_params, listener, deadline)
        except BaseException:
            listener.close()
            raise
        # The run has a whole timeout of its own, however long the turn waited for the previous one.
        answer_by = asyncio.get_running_loop().time() + ANSWER_TIMEOUT_SECONDS
        return _Turn(params.session_id, thread_id, run, listener, answer_by)

    # Only choosing the thread and queueing the run are serialised here; the next turn then waits for
    # this turn's run to end (``_start_run``), and this turn is answered outside the lock.
    return await _locks(request).run_exclusive((caller.tenant, params.session_id), work)


async def _cancel_quietly(engine: Engine, caller: Caller, turn: _Turn) -> None:
    # It may have ended (or its thread been deleted) meanwhile.
    with contextlib.suppress(ConflictError, NotFoundError):
        await engine.cancel_run(caller.tenant, turn.thread_id, turn.run.id)


async def _answer(engine: Engine, caller: Caller, turn: _Turn) -> AskAnswer:
    """The reply of the turn's ended run, or the error that says why there is none."""
    async with engine.db.read() as session:
        run = await run_store.get_row(session, caller.tenant, turn.thread_id, turn.run.id)
        rows = await session.scalars(
            select(MessageRow)
            .where(MessageRow.run_id == run.id, MessageRow.role == "assistant")
            .order_by(MessageRow.pk)
        )
        text = "\n\n".join(part for part in (store.message_text(row) for row in rows) if part)
    if run.status == "requires_action":
        await _cancel_quietly(engine, caller, turn)
        raise ConflictError(
            "The assistant called a function, and /ask has no way to supply its output: the run was "
            "cancelled. Use an assistant without function tools, or the runs API.",
            param="assistant",
            code="requires_action",
        )
    if run.status == "failed":
        error = run.last_error or {}
        raise UpstreamError(
            f"The run failed: {error.get('message', 'no reason given')}",
            code=error.get("code", "server_error"),
        )
    if run.status not in ("completed", "incomplete"):
        raise ConflictError(f"The run ended '{run.status}' before answering.", param="session_id")
    return AskAnswer(session_id=turn.session_id, response=text, thread_id=turn.thread_id, run_id=run.id)


def _timed_out(turn: _Turn) -> AnswerTimeoutError:
    return AnswerTimeoutError(
        f"The assistant did not answer within {ANSWER_TIMEOUT_SECONDS:.0f} seconds; run {turn.run.id} "
        "was cancelled."
    )


async def _run_status(db: Database, turn: _Turn) -> str:
    async with db.read() as session:
        run = await session.scalar(select(RunRow.status).where(RunRow.id == turn.run.id))
    return run or "cancelled"


async def _wait(engine: Engine, caller: Caller, turn: _Turn) -> AskAnswer:
    try:
        while await _run_status(engine.db, turn) in _RUNNING:
            if _remaining(turn.deadline) <= 0:
                await _cancel_quietly(engine, caller, turn)
                raise _timed_out(turn)
            await engine.wait_while(turn.listener, _RUNNING, min(RECHECK_SECONDS, _remaining(turn.deadline)))
    finally:
        turn.listener.close()
    return await _answer(engine, caller, turn)


def _text_deltas(data: BaseModel | dict[str, Any]) -> Iterator[str]:
    body = data.model_dump() if isinstance(data, BaseModel) else data
    for part in body.get("delta", {}).get("content", []):
        if part.get("type") == "text" and part.get("text", {}).get("value"):
            yield str(part["text"]["value"])


def _frame(body: BaseModel | dict[str, Any]) -> bytes:
    data = body.model_dump_json() if isinstance(body, BaseModel) else json.dumps(body)
    return f"data: {data}\n\n".encode()


async def _stream(engine: Engine, caller: Caller, turn: _Turn) -> AsyncIterator[bytes]:
    """``data: {"delta": ...}`` frames as the text is written, then one frame with the whole answer (or
    ``{"error": ...}``): plain JSON frames, which a browser's EventSource or any SSE reader can take."""
    try:
        try:
            async with asyncio.timeout(max(_remaining(turn.deadline), 0)):
                async for event in engine.follow(turn.listener):
                    if event.event == "thread.message.delta":
                        for piece in _text_deltas(event.data):
                            yield _frame(AskDelta(delta=piece))
        except TimeoutError:
            await _cancel_quietly(engine, caller, turn)
            raise _timed_out(turn) from None
        yield _frame(await _answer(engine, caller, turn))
    except AssistdError as exc:
        yield _frame(exc.body())
    finally:
        turn.listener.close()


@router.get("/", include_in_schema=False)
async def welcome() -> Response:
    return JSONResponse(
        {"message": "Welcome to assistd, an OpenAI Assistants API v2 server.", "version": __version__}
    )


@router.post("/ask")
async def ask(params: AskParams, request: Request, caller: CallerKey) -> Response:
    engine: Engine = request.app.state.engine
    turn = await _begin(request, caller, params)
    if params.stream:
        return StreamingResponse(
            _stream(engine, caller, turn),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    return json_response(await _wait(engine, caller, turn))


@router.get("/ask/sessions")
async def list_sessions(
    caller: CallerKey, db: Db, query: Annotated[PageQuery, Depends(page_query)]
) -> Response:
    async with db.read() as session:
        return json_response(await store.list_page(session, caller.tenant, query))


@router.get("/ask/sessions/{session_id}")
async def retrieve_session(session_id: str, caller: CallerKey, db: Db) -> Response:
    async with db.read() as session:
        row = await store.get_row(session, caller.tenant, session_id)
        return json_response(await store.detail(session, row))


@router.delete("/ask/sessions/{session_id}")
async def delete_session(session_id: str, request: Request, caller: CallerKey, engine: RunEngine) -> Response:
    """Deletes the session and its thread (messages and runs with it)."""

    async def work() -> Response:
        async with engine.db.write() as session:
            row = await store.get_row(session, caller.tenant, session_id)
            with contextlib.suppress(NotFoundError):  # deleted through /v1/threads already
                await thread_store.remove(session, caller.tenant, row.thread_id)
            return json_response(await store.remove(session, row))

    return await _locks(request).run_exclusive((caller.tenant, session_id), work)
