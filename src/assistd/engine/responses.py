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
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from ..errors import ConflictError, InvalidRequestError, NotFoundError
from ..protocol.common import ListPage, ParamValueError
from ..protocol.items import ParsedInput, input_to_messages, message_to_item
from ..protocol.responses import DeletedResponse, Response, ResponseCreateParams, with_logprobs
from ..protocol.runs import Run, SubmitToolOutputsParams, ToolOutput
from ..store import messages as message_store
from ..store import responses as store
from ..store import runs as run_store
from ..store import threads as thread_store
from ..store.detached import insert_rows
from ..store.models import ResponseRow, RunRow, RunStepRow
from ..store.pagination import PageQuery
from . import prompts
from . import usage as run_usage
from .engine import POLL_WAIT_STATUSES, Engine
from .response_functions import (
    STEPS_BEFORE,
    Segment,
    check_outputs,
    history_of,
    segment_of,
    segment_output,
)
from .response_mcp import write_approvals, write_listings
from .response_tools import check_builtin_tools, output_items, run_tools
from .state import TERMINAL
from .turns import Turn

__all__ = ["ResponseTurn", "Responses", "response_of"]

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


# What the response's record keeps of its request beside the options the response object shows.
_NOT_SHOWN = ("store", "include", STEPS_BEFORE)


def response_of(
    row: ResponseRow,
    run: Run,
    segment: Segment,
    output: list[dict[str, Any]],
    stored_usage: dict[str, Any] | None = None,
) -> Response:
    """The response object: ``row``'s record, its run ``run`` as it stands, its ``segment`` of the run's
    steps (``engine/response_functions.py``) and the output items they make; ``stored_usage`` the run's
    usage as stored, whose token details the wire ``run`` has no place for."""
    request = row.request
    steps_before = int(request.get(STEPS_BEFORE, 0))
    error = None
    if run.last_error is not None:
        error = {"code": run.last_error.code, "message": run.last_error.message}
    elif run.status == "expired" and not segment.waited:
        error = {"code": "server_error", "message": "The response expired before it completed."}
    incomplete = None
    if run.incomplete_details is not None and not segment.waited:
        incomplete = {"reason": _INCOMPLETE.get(run.incomplete_details.reason, "max_output_tokens")}
    # A run that stands for more than this response: the segment's usage is this one's.
    usage = segment.usage() if steps_before or segment.waited else _usage_of(run, stored_usage)
    status = _STATUS[run.status]
    completed_at = run.completed_at if run.status == "completed" else None
    if segment.waited:
        # It ended with function calls: done, whatever the run does with their outputs later.
        status, error = "completed", None
        last = segment.steps[-1]
        completed_at = last.completed_at or last.created_at
    return Response.model_validate(
        {
            "id": row.id,
            "created_at": row.created_at,
            "status": status,
            "completed_at": completed_at,
            "error": error,
            "incomplete_details": incomplete,
            "output": output,
            "metadata": row.meta,
            "previous_response_id": row.previous_response_id,
            "conversation": {"id": row.conversation_id} if row.conversation_id is not None else None,
            "store": request.get("store", True),
            "usage": usage,
            **{key: value for key, value in request.items() if key not in _NOT_SHOWN},
        }
    )


def parse_input(params: ResponseCreateParams) -> ParsedInput:
    """The request's input as messages (and instructions), or the 400 that names what is wrong with it."""
    try:
        given = params.input if params.input is not None else []
        parsed = input_to_messages(given, allow_instructions=True, allow_function_items=True)
    except ParamValueError as exc:
        raise InvalidRequestError(f"Invalid '{exc.param}': {exc}", param=exc.param) from None
    if params.input is None and params.previous_response_id is None and params.conversation is None:
        raise InvalidRequestError("Missing required parameter: 'input'.", param="input")
    return parsed


@dataclass
class PreparedRun:
    """A response's run made in a transaction (not inserted), with what the response record keeps."""

    run: RunRow
    input_ids: list[str]
    # The thread was made for this response alone (new, or a copy of a previous response's context).
    own_thread: bool
    # The request's options as the response shows them.
    echo: dict[str, Any]
    # The steps written into the run before its first turn (a stateless history's function calls).
    steps_before: int = 0


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


async def _is_response_run(session: AsyncSession, run: RunRow) -> bool:
    """Whether a conversation's waiting ``run`` is a response's, which a follow-up naming only the
    conversation may give its outputs: a run without an assistant (only a response makes one: the
    Assistants API needs an assistant; an unstored response has no record), or a stored response's run (one
    made with a prompt has its assistant's id). An Assistants API run is left to ``submit_tool_outputs``."""
    return run.assistant_id is None or await store.is_response_run(session, run.id)


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
        parsed = parse_input(params)
        if params.model is None and params.prompt is None:
            # A prompt (an assistant) brings its model; without one the request must name it.
            raise InvalidRequestError("Missing required parameter: 'model'.", param="model")
        waiting = await self._waiting_run(tenant, params)
        if waiting is not None:
            return await self._follow_up(tenant, params, parsed, waiting, key_id)
        stored = params.store is not False
        conversation = params.conversation_id
        made: dict[str, Any] = {}

        async def prepare(session: AsyncSession) -> tuple[RunRow, bool]:
            prepared = await self.prepare(session, tenant, params, parsed, stored)
            row = store.new_row(
                tenant,
                prepared.run.id,
                prepared.run.thread_id,
                conversation_id=conversation,
                previous_response_id=params.previous_response_id,
                request={
                    **prepared.echo,
                    "store": stored,
                    "background": params.background is True,
                    # ``include`` is the create's: its answer and stream show what it asks for.
                    "include": list(params.include or []),
                    STEPS_BEFORE: prepared.steps_before,
                },
                metadata=params.metadata or {},
                input_message_ids=prepared.input_ids,
            )
            if stored:
                await store.insert(session, row)
            made.update(row=row, own=prepared.own_thread)
            # Queued with no steps (no function items, listings or approvals in its input): its first turn
            # need not read them.
            return prepared.run, prepared.steps_before == 0

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
        turn = Turn(
            self._engine,
            tenant,
            run,
            listener,
            self._engine.settings.response_wait_seconds,
            heard_from_queued=True,
        )
        return ResponseTurn(made["row"], turn, made["own"])

    async def _waiting_run(self, tenant: str, params: ResponseCreateParams) -> RunRow | None:
        """The run of a response that awaits function outputs, which this request continues: the previous
        response's, or the one holding the conversation (a response's, not an Assistants run)."""
        if params.previous_response_id is None and params.conversation_id is None:
            # A response of its own continues nothing: no session opened for it (about half a
            # millisecond before every such create's transaction).
            return None
        async with self._db.read() as session:
            run: RunRow | None = None
            if params.previous_response_id is not None:
                previous = await store.previous_row(session, tenant, params.previous_response_id)
                run = await run_store.get_row_by_id(session, previous.run_id)
            elif params.conversation_id is not None:
                try:
                    thread = await thread_store.read_row(session, tenant, params.conversation_id)
                except NotFoundError:
                    return None  # answered as any unknown conversation, below
                active = await thread_store.active_run_of(session, thread.id)
                run = await run_store.get_row_by_id(session, active) if active is not None else None
                if run is not None and not await _is_response_run(session, run):
                    return None
        if run is None or run.status != "requires_action" or not run.required_action:
            return None
        return run

    async def _follow_up(
        self,
        tenant: str,
        params: ResponseCreateParams,
        parsed: ParsedInput,
        run: RunRow,
        key_id: str | None,
    ) -> ResponseTurn:
        """A response that gives a waiting run its function outputs: they are submitted to it, as
        ``submit_tool_outputs`` does, and the response is what the run does next (its next segment)."""
        assert run.required_action is not None
        expected = [call["id"] for call in run.required_action["submit_tool_outputs"]["tool_calls"]]
        outputs = check_outputs(parsed, expected)
        async with self._db.read() as session:
            steps = await run_store.steps_of(session, run.id)
            options, echo = await self._turn_options(session, tenant, params, parsed, run, steps)
        # The answers to MCP approval requests the waiting turn made beside its function calls: a step
        # written with the outputs, before this response's segment (as a new run's answers are).
        steps_before = len(steps) + (1 if parsed.approvals else 0)
        submitted = SubmitToolOutputsParams(
            tool_outputs=[ToolOutput(tool_call_id=output.call_id, output=output.output) for output in outputs]
        )
        param = "conversation" if params.conversation_id is not None else "previous_response_id"
        listener = self._engine.bus.subscription()
        try:
            queued = await self._engine.submit_tool_outputs(
                tenant, run.thread_id, run.id, submitted, listener, options, parsed.approvals
            )
        except ConflictError:
            listener.close()
            # Another request gave it its outputs first.
            raise ConflictError(
                f"The {param.removesuffix('_id')}'s function calls were answered already.", param=param
            ) from None
        except BaseException:
            listener.close()
            raise
        stored = params.store is not False
        row = store.new_row(
            tenant,
            run.id,
            run.thread_id,
            conversation_id=params.conversation_id,
            previous_response_id=params.previous_response_id,
            request={
                **echo,
                "store": stored,
                "include": list(params.include or []),
                STEPS_BEFORE: steps_before,
            },
            metadata=params.metadata or {},
            input_message_ids=[],
        )
        if stored:
            async with self._db.write() as session:
                await store.insert(session, row)
        return ResponseTurn(
            row,
            Turn(self._engine, tenant, queued, listener, self._engine.settings.response_wait_seconds),
            False,
        )

    async def _turn_options(
        self,
        session: AsyncSession,
        tenant: str,
        params: ResponseCreateParams,
        parsed: ParsedInput,
        run: RunRow,
        steps: list[RunStepRow],
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """A follow-up's own options, which the waiting ``run`` (whose steps are ``steps``) takes from its
        outputs on, as a new response's run would have them (its prompt's where it names one); and what the
        follow-up echoes. As on OpenAI, nothing is carried over from the response it follows (instructions,
        tools: a follow-up without tools offers none)."""
        prompted = (
            await prompts.resolve(session, tenant, params.prompt) if params.prompt is not None else None
        )
        await check_builtin_tools(session, tenant, params)
        given = prompts.base_instructions(params, prompted)
        instructions = "\n\n".join(text for text in [given or "", *parsed.instructions] if text)
        made = self._run_row(tenant, run.thread_id, params, instructions)
        echo = params.echoed()
        if prompted is not None:
            prompts.apply(made, params, prompted)
            echo = prompts.echoed(echo, made, params, prompted)
        return run_store.turn_options(made, run_store.completion_used(steps)), echo

    async def prepare(
        self,
        session: AsyncSession,
        tenant: str,
        params: ResponseCreateParams,
        parsed: ParsedInput,
        stored: bool,
    ) -> PreparedRun:
        """The response's run, not inserted, on its thread with its input added: what ``create`` queues and
        ``input_tokens`` counts (in a transaction it does not commit)."""
        prompted = (
            await prompts.resolve(session, tenant, params.prompt) if params.prompt is not None else None
        )
        await check_builtin_tools(session, tenant, params)
        thread_id, own = await self._thread_for(session, tenant, params, stored)
        history = history_of(parsed)
        head = (
            history.head
            if history is not None
            else list(zip(parsed.messages, parsed.message_at, strict=True))
        )
        ids = []
        for message, at in head:
            ids.append((await message_store.insert(session, tenant, thread_id, message, at=at)).id)
        # Instructions given as system/developer input items follow the ``instructions`` parameter (or the
        # prompt's).
        given = prompts.base_instructions(params, prompted)
        instructions = "\n\n".join(text for text in [given or "", *parsed.instructions] if text)
        run = self._run_row(tenant, thread_id, params, instructions)
        echo = params.echoed()
        if prompted is not None:
            prompts.apply(run, params, prompted)
            echo = prompts.echoed(echo, run, params, prompted)
        steps_before = 0
        if history is not None:
            # Function calls and outputs sent back: the run's first steps, the input after them too.
            written, steps_before = await history.write(session, run)
            ids += written
        # MCP listings sent back (a server listed already), and answers to MCP approval requests: steps
        # the run's first turn acts on.
        steps_before += await write_listings(session, run, parsed.listings)
        steps_before += await write_approvals(session, tenant, run, parsed.approvals)
        return PreparedRun(run, ids, own, echo, steps_before)

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
            model=params.model or "",
            instructions=instructions,
            tools=run_tools(params, self._engine.mcp_sealer),
            temperature=params.temperature,
            top_p=params.top_p,
            max_prompt_tokens=None,
            max_completion_tokens=params.max_output_tokens,
            # ``truncation``: history that does not fit the model's context is dropped, oldest first, either
            # way (engine/context.py); "disabled" is not refused for it.
            truncation_strategy=dict(run_store.DEFAULT_TRUNCATION),
            tool_choice=params.run_tool_choice(),
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

    async def read(self, row: ResponseRow, include: list[str] | None = None) -> Response:
        """The response as its run stands now; ``include`` (else the create's) says what its tool call
        items show."""
        async with self._db.read() as session:
            try:
                run, rows, messages = await run_store.get_row_with_steps(
                    session, row.tenant, row.thread_id, row.run_id
                )
            except NotFoundError:
                # Its conversation (thread) was deleted, and the run with it.
                raise NotFoundError(
                    f"Response '{row.id}' is gone with its conversation.", param="response_id"
                ) from None
        segment = segment_of(
            [run_store.step_to_wire(step) for step in rows], int(row.request.get(STEPS_BEFORE, 0))
        )
        mine = {step.id for step in segment.steps}
        rows = [step for step in rows if step.id in mine]
        written = {
            step.step_details["message_creation"]["message_id"]
            for step in rows
            if step.type == "message_creation"
        }
        messages = [message for message in messages if message.id in written]
        shown = row.request.get("include") or [] if include is None else include
        output = output_items(
            rows,
            [message_store.to_wire(m) for m in messages],
            shown,
            run_store.container_of(run.tools, run.thread_id),
        )
        # The token logprobs kept with the messages (a wire message has none), where the create asked.
        logprobs = {m.id: m.logprobs for m in messages if m.logprobs}
        output = [
            with_logprobs(item, logprobs.get(item["id"])) if item["type"] == "message" else item
            for item in segment_output(output)
        ]
        return response_of(row, run_store.to_wire(run), segment, output, run.usage)

    async def tool_items(self, row: ResponseRow, step_id: str) -> list[dict[str, Any]]:
        """The tool call items of the response's run step ``step_id`` as they stand, with the create's
        ``include`` (for a stream to show a built-in call once it has run)."""
        async with self._db.read() as session:
            run = await run_store.get_row(session, row.tenant, row.thread_id, row.run_id)
            step = await run_store.get_step_row(session, row.tenant, row.run_id, step_id)
        return output_items(
            [step], [], row.request.get("include") or [], run_store.container_of(run.tools, run.thread_id)
        )

    async def forget(self, created: ResponseTurn) -> None:
        """A response not stored leaves nothing behind once its run has ended: its own thread goes."""
        if created.stored or not created.own_thread:
            return
        async with self._db.write() as session:
            if await run_store.status_of(session, created.row.run_id) in TERMINAL:
                with contextlib.suppress(NotFoundError):
                    await thread_store.remove(session, created.row.tenant, created.row.thread_id)

    async def retrieve(self, tenant: str, response_id: str, include: list[str] | None = None) -> Response:
        async with self._db.read() as session:
            row = await store.get_row(session, tenant, response_id)
        return await self.read(row, include or [])

    async def delete(self, tenant: str, response_id: str) -> DeletedResponse:
        async with self._db.write() as session:
            await store.remove(session, tenant, response_id)
        return DeletedResponse(id=response_id)

    async def cancel(self, tenant: str, response_id: str) -> Response:
        """Cancel a response whose run has not ended; the response then (cancelled, once its run stopped)."""
        async with self._db.read() as session:
            row = await store.get_row(session, tenant, response_id)
        await self._refuse_ended_segment(row)
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

    async def _refuse_ended_segment(self, row: ResponseRow) -> None:
        """A response that ended with function calls is done, though its run waits or goes on for the
        response after it: not cancelled with that run."""
        response = await self.read(row)
        if response.status == "completed":
            raise ConflictError("Cannot cancel a response with status 'completed'.", param="response_id")

    async def input_items(self, tenant: str, response_id: str, query: PageQuery) -> ListPage[Any]:
        async with self._db.read() as session:
            row = await store.get_row(session, tenant, response_id)
            messages, has_more = await store.input_items_page(session, row, query)
        return store.page([message_to_item(message) for message in messages], has_more)
