"""Responses (``/v1/responses``): a response is a run in another wire format.

Creating a response queues a run on a thread with the engine's own ``create_prepared_run``; the run is
executed as every run is (context, model turns, events), and a ``Turn`` follows it. Which thread:

- ``conversation``: that thread (a conversation is a thread); the input is added to it as messages and its
  whole history is the context. One run at a time per thread, as for runs: a busy one is refused.
- ``previous_response_id``: the previous response's thread when nothing came after it there (a chain goes on
  in one thread); otherwise (a fork, a message added since, a conversation's response, ``store`` false) a
  new thread with a copy of the previous response's context: its thread's messages up to its output.
- neither: a new thread of the response's own. It is an ordinary thread row (``/v1/threads/{id}`` shows
  it): nothing is hidden.

The response's record (``store/responses.py``) keeps what the Responses API adds. ``store`` false: no record
(a GET is a 404, no later response can continue it) and the thread of its own is deleted once the run ends.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from ..errors import ConflictError, InvalidRequestError, NotFoundError
from ..protocol.common import ListPage, ParamValueError
from ..protocol.items import input_to_messages, message_to_item
from ..protocol.messages import Message
from ..protocol.responses import (
    DeletedResponse,
    Response,
    ResponseCreateParams,
    output_item,
    with_logprobs,
)
from ..protocol.runs import Run
from ..store import messages as message_store
from ..store import responses as store
from ..store import runs as run_store
from ..store import threads as thread_store
from ..store.detached import insert_rows
from ..store.models import ResponseRow, RunRow
from ..store.pagination import PageQuery
from . import usage as run_usage
from .engine import POLL_WAIT_STATUSES, Engine
from .state import TERMINAL
from .turns import Turn

__all__ = ["ResponseTurn", "Responses", "response_of"]

# How long a non-streamed create waits for its run, and a stream follows it; past that the response is
# answered as it stands (in progress) and can be retrieved later.
WAIT_SECONDS = 600.0
# How long a cancel waits for a run that was mid-turn to reach ``cancelled``.
CANCEL_WAIT_SECONDS = 5.0

_STATUS = {
    "queued": "queued",
    "in_progress": "in_progress",
    "cancelling": "in_progress",
    "requires_action": "in_progress",
    "completed": "completed",
    "incomplete": "incomplete",
    "failed": "failed",
    "cancelled": "cancelled",
    "expired": "failed",
}
# A run's incomplete reasons as a response's.
_INCOMPLETE = {"max_completion_tokens": "max_output_tokens", "max_prompt_tokens": "max_output_tokens"}


def response_of(
    row: ResponseRow,
    run: Run,
    written: list[Message],
    stored_usage: dict[str, Any] | None = None,
    logprobs: Mapping[str, list[dict[str, Any]]] | None = None,
) -> Response:
    """The response object: ``row``'s record, its run ``run`` as it stands, the messages it wrote;
    ``stored_usage`` the run's usage as stored, whose token details the wire ``run`` has no place for;
    ``logprobs`` the token logprobs kept with those messages, by message id (a wire message has none)."""
    request = row.request
    error = None
    if run.last_error is not None:
        error = {"code": run.last_error.code, "message": run.last_error.message}
    elif run.status == "expired":
        error = {"code": "server_error", "message": "The response expired before it completed."}
    incomplete = None
    if run.incomplete_details is not None:
        incomplete = {"reason": _INCOMPLETE.get(run.incomplete_details.reason, "max_output_tokens")}
    usage = _usage_of(run, stored_usage)
    return Response.model_validate(
        {
            "id": row.id,
            "created_at": row.created_at,
            "status": _STATUS[run.status],
            "completed_at": run.completed_at if run.status == "completed" else None,
            "error": error,
            "incomplete_details": incomplete,
            "output": [
                with_logprobs(output_item(message_to_item(message)), (logprobs or {}).get(message.id))
                for message in written
            ],
            "metadata": row.meta,
            "previous_response_id": row.previous_response_id,
            "conversation": {"id": row.conversation_id} if row.conversation_id is not None else None,
            "store": request.get("store", True),
            "usage": usage,
            **{key: value for key, value in request.items() if key != "store"},
        }
    )


def _usage_of(run: Run, stored: dict[str, Any] | None) -> dict[str, Any] | None:
    """The response's usage: the run's counts, and the model's token details kept with them
    (``engine/usage.py``)."""
    if run.usage is None:
        return None
    return {
        "input_tokens": run.usage.prompt_tokens,
        "input_tokens_details": {"cached_tokens": run_usage.cached_tokens(stored)},
        "output_tokens": run.usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": run_usage.reasoning_tokens(stored)},
        "total_tokens": run.usage.total_tokens,
    }


@dataclass
class ResponseTurn:
    """A response just created: its record (inserted or, ``store`` false, not), and the turn of its run."""

    row: ResponseRow
    turn: Turn
    # The thread was made for this response alone (new, or a copy of a previous response's context).
    own_thread: bool

    @property
    def stored(self) -> bool:
        return bool(self.row.request.get("store", True))


class Responses:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._db = engine.db

    async def create(
        self, tenant: str, params: ResponseCreateParams, *, key_id: str | None = None
    ) -> ResponseTurn:
        """Queue the response's run, its input added to its thread in the same transaction."""
        try:
            given = params.input if params.input is not None else []
            parsed = input_to_messages(given, allow_instructions=True)
        except ParamValueError as exc:
            raise InvalidRequestError(f"Invalid '{exc.param}': {exc}", param=exc.param) from None
        if params.input is None and params.previous_response_id is None and params.conversation is None:
            raise InvalidRequestError("Missing required parameter: 'input'.", param="input")
        # Instructions given as system/developer input items follow the ``instructions`` parameter.
        instructions = "\n\n".join(text for text in [params.instructions or "", *parsed.instructions] if text)
        stored = params.store is not False
        conversation = params.conversation_id
        made: dict[str, Any] = {}

        async def prepare(session: AsyncSession) -> RunRow:
            thread_id, own = await self._thread_for(session, tenant, params, stored)
            ids = []
            for message, at in zip(parsed.messages, parsed.message_at, strict=True):
                ids.append((await message_store.insert(session, tenant, thread_id, message, at=at)).id)
            run = self._run_row(tenant, thread_id, params, instructions)
            request = {**params.echoed(), "store": stored}
            row = store.new_row(
                tenant,
                run.id,
                thread_id,
                conversation_id=conversation,
                previous_response_id=params.previous_response_id,
                request=request,
                metadata=params.metadata or {},
                input_message_ids=ids,
            )
            if stored:
                await store.insert(session, row)
            made.update(row=row, own=own)
            return run

        # A response after a previous one may lose the race for its thread to a sibling (two forks at once):
        # tried again, it sees the sibling's run there and takes a copy of the context instead.
        attempts = 1 if conversation is not None else 2
        for attempt in range(attempts):
            listener = self._engine.bus.subscription()
            try:
                run = await self._engine.create_prepared_run(prepare, listener, key_id=key_id)
                break
            except ConflictError as exc:
                listener.close()
                if attempt + 1 < attempts:
                    continue
                # The thread's claim: a run (a response, or a client of the runs API) is active on it.
                param = "conversation" if conversation is not None else "previous_response_id"
                raise ConflictError(
                    f"Another response is in progress on this {param.replace('_id', '')}: {exc.message}",
                    param=param,
                    code="conversation_locked" if conversation is not None else None,
                ) from None
            except BaseException:
                listener.close()
                raise
        turn = Turn(self._engine, tenant, run, listener, WAIT_SECONDS)
        return ResponseTurn(made["row"], turn, made["own"])

    async def _thread_for(
        self, session: AsyncSession, tenant: str, params: ResponseCreateParams, stored: bool
    ) -> tuple[str, bool]:
        """The thread the response's run goes on, and whether it was made for this response."""
        conversation = params.conversation_id
        if conversation is not None:
            try:
                thread = await thread_store.read_row(session, tenant, conversation)
            except NotFoundError:
                raise NotFoundError(
                    f"Conversation with id '{conversation}' not found.", param="conversation"
                ) from None
            return thread.id, False
        if params.previous_response_id is not None:
            previous = await store.previous_row(session, tenant, params.previous_response_id)
            if stored and await store.can_continue_in_place(session, previous):
                return previous.thread_id, False
            return await store.copy_context(session, tenant, previous), True
        thread = store.new_thread(tenant)
        await insert_rows(session, thread)
        return thread.id, True

    def _run_row(
        self, tenant: str, thread_id: str, params: ResponseCreateParams, instructions: str
    ) -> RunRow:
        """The response's run: no assistant, its options all from the request."""
        return run_store.queued_row(
            tenant,
            thread_id,
            self._engine.settings.requires_action_expiry_seconds,
            meta=params.metadata or {},
            assistant_id=None,
            model=params.model,
            instructions=instructions,
            tools=[],
            temperature=params.temperature,
            top_p=params.top_p,
            max_prompt_tokens=None,
            max_completion_tokens=params.max_output_tokens,
            # ``truncation``: history that does not fit the model's context is dropped, oldest first, either
            # way (engine/context.py); "disabled" is not refused for it.
            truncation_strategy=dict(run_store.DEFAULT_TRUNCATION),
            tool_choice="auto",
            parallel_tool_calls=params.parallel_tool_calls is not False,
            response_format=params.response_format(),
            reasoning_effort=params.reasoning.effort if params.reasoning is not None else None,
            top_logprobs=params.logprobs_asked(),
        )

    async def answer(self, created: ResponseTurn) -> Response:
        """The response once its run has ended (or as it stands when the wait is up)."""
        try:
            # Not ``wait``: its reads of how the run ended would be read again just below.
            await created.turn.stopped()
        finally:
            created.turn.close()
        response = await self.read(created.row)
        await self.forget(created)
        return response

    async def read(self, row: ResponseRow) -> Response:
        """The response as its run stands now."""
        async with self._db.read() as session:
            try:
                run = await run_store.get_row(session, row.tenant, row.thread_id, row.run_id)
            except NotFoundError:
                # Its conversation (thread) was deleted, and the run with it.
                raise NotFoundError(
                    f"Response '{row.id}' is gone with its conversation.", param="response_id"
                ) from None
            written = await message_store.written_by(session, row.run_id)
        return response_of(
            row,
            run_store.to_wire(run),
            [message_store.to_wire(m) for m in written],
            run.usage,
            {m.id: m.logprobs for m in written if m.logprobs},
        )

    async def forget(self, created: ResponseTurn) -> None:
        """A response not stored leaves nothing behind once its run has ended: its own thread goes."""
        if created.stored or not created.own_thread:
            return
        async with self._db.write() as session:
            if await run_store.status_of(session, created.row.run_id) in TERMINAL:
                with contextlib.suppress(NotFoundError):
                    await thread_store.remove(session, created.row.tenant, created.row.thread_id)

    async def retrieve(self, tenant: str, response_id: str) -> Response:
        async with self._db.read() as session:
            row = await store.get_row(session, tenant, response_id)
        return await self.read(row)

    async def delete(self, tenant: str, response_id: str) -> DeletedResponse:
        async with self._db.write() as session:
            await store.remove(session, tenant, response_id)
        return DeletedResponse(id=response_id)

    async def cancel(self, tenant: str, response_id: str) -> Response:
        """Cancel a response whose run has not ended; the response then (cancelled, once its run stopped)."""
        async with self._db.read() as session:
            row = await store.get_row(session, tenant, response_id)
        listener = await self._engine.listen(row.run_id)
        try:
            try:
                run = await self._engine.cancel_run(tenant, row.thread_id, row.run_id)
            except ConflictError:
                async with self._db.read() as session:
                    status = await run_store.status_of(session, row.run_id)
                raise ConflictError(
                    f"Cannot cancel a response with status '{_STATUS.get(status or '', status)}'.",
                    param="response_id",
                ) from None
            if run.status in POLL_WAIT_STATUSES:
                await self._engine.wait_while(listener, POLL_WAIT_STATUSES, CANCEL_WAIT_SECONDS)
        finally:
            listener.close()
        return await self.read(row)

    async def input_items(self, tenant: str, response_id: str, query: PageQuery) -> ListPage[Any]:
        async with self._db.read() as session:
            row = await store.get_row(session, tenant, response_id)
            messages, has_more = await store.input_items_page(session, row, query)
        return store.page([message_to_item(message) for message in messages], has_more)
