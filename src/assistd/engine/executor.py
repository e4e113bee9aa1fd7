"""Executes a claimed run: model turns, run steps, the assistant message, and the events of each."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from ..config import Settings
from ..errors import AssistdError, UpstreamError
from ..llm.registry import ProviderRegistry
from ..llm.types import ChatRequest, TokenUsage
from ..store import api_keys, jobs
from ..store import messages as message_store
from ..store import runs as run_store
from ..store.clock import now
from ..store.database import Database
from ..store.detached import insert_rows, save
from ..store.models import MessageRow, RunRow, RunStepRow
from ..store.outage import database_unavailable
from ..tools import code_interpreter, limits
from ..tools.citations import CitationFilter
from ..tools.code_interpreter import CodeInterpreter, CodeOutcome, CodeStream
from ..tools.file_search import FileSearch, Outcome, ranking_options
from ..tools.mcp import McpCallResult
from . import context, state
from . import usage as stored_usage
from .bus import RunBus, Sequenced
from .events import StreamEvent
from .made_files import MadeFiles, take_made, with_made
from .response_mcp import McpOffer, McpOutcome, McpTools, results_delta

log = logging.getLogger(__name__)

DATABASE_LOST = "The database became unavailable while the run was in progress. Please create the run again."

MAX_ATTEMPTS = 3
# Model turns one run may take answering built-in tool calls before it must answer in text.
MAX_TOOL_TURNS = 8


@dataclass
class _Call:
    id: str = ""
    name: str = ""
    arguments: str = ""
    # A code_interpreter call's code, decoded from its arguments as they stream.
    code: CodeStream | None = None

    def function(self) -> dict[str, str]:
        return {"name": self.name, "arguments": self.arguments}


@dataclass
class _Turn:
    """What one model call produced so far."""

    message: MessageRow | None = None
    message_step: RunStepRow | None = None
    text: list[str] = field(default_factory=list)
    tool_step: RunStepRow | None = None
    calls: dict[int, _Call] = field(default_factory=dict)
    usage: TokenUsage | None = None
    finish_reason: str | None = None
    citations: CitationFilter = field(default_factory=lambda: CitationFilter({}))
    builtin: set[str] = field(default_factory=set)
    # The MCP servers' tools offered on this turn (a response's run with mcp tools), by function name.
    mcp: McpOffer | None = None
    # The message was completed when the model went on to call tools (``_close_text``).
    message_closed: bool = False
    # The draft message and its step are written while the first token already travels to clients.
    saving: asyncio.Task[None] | None = None
    # The text's token logprobs, when the run asked for them: all of them (kept with the message), and
    # those no delta event has carried yet.
    logprobs: list[dict[str, Any]] = field(default_factory=list)
    unsent_logprobs: list[dict[str, Any]] = field(default_factory=list)

    async def saved(self) -> None:
        if self.saving is not None:
            await asyncio.shield(self.saving)


ToolOutcome = Outcome | CodeOutcome | McpOutcome


@dataclass
class Started:
    """A claimed run after ``start``: ``run`` is set when it is in progress and should be executed."""

    run: RunRow | None
    # Recorded in the transaction that started it; delivered once that commits.
    events: list[Sequenced]

    @property
    def seq(self) -> int | None:
        """The seq of the last event the start wrote (None: it wrote none, or numbers come at delivery)."""
        return self.events[-1][0] if self.events and self.events[-1][0] else None


@dataclass
class _Called:
    """A turn's tool_calls step once stored: the function calls in it that await the client's outputs, and
    the events that tell what the built-in calls found."""

    step: RunStepRow
    functions: list[_Call]
    events: list[StreamEvent]
    # MCP calls that wait for the client's approval: the run ends with them.
    approvals: bool = False


def _required_action(functions: list[_Call]) -> dict[str, Any]:
    calls = [{"id": call.id, "type": "function", "function": call.function()} for call in functions]
    return {"type": "submit_tool_outputs", "submit_tool_outputs": {"tool_calls": calls}}


class RunExecutor:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        bus: RunBus,
        providers: ProviderRegistry,
        file_search: FileSearch,
        code: CodeInterpreter,
        mcp: McpTools,
    ) -> None:
        self._settings = settings
        self._db = db
        self._bus = bus
        self._providers = providers
        self._file_search = file_search
        self._code = code
        self._mcp = mcp
        # Runs whose start here took them out of ``queued`` for the first time, until their first turn.
        self._fresh: set[str] = set()

    async def start(
        self,
        session: AsyncSession,
        run_id: str,
        attempts: int,
        row: RunRow | None = None,
        before: Sequence[StreamEvent] = (),
        *,
        fresh: bool = False,
    ) -> Started:
        """Take a claimed run into ``in_progress`` (or end it), inside the caller's claim transaction.
        ``row``: the run as the caller holds it in this transaction (else it is read); ``before``: events
        of the caller's to record ahead of the start's own, in the same append. ``fresh``: the caller made
        the run in this transaction and knows it was queued without steps, so its first turn need not read
        them; a run started later (a slot freed, a worker claimed it) has them read."""
        run = row if row is not None else await run_store.get_row_by_id(session, run_id)
        if run is None or run.status not in ("queued", "in_progress", "cancelling"):
            await jobs.finish(session, run_id)
            return Started(run=None, events=[])
        started: RunRow | None = None
        if run.status == "cancelling":
            events = await state.transition(session, run, "cancelled")
        elif attempts > MAX_ATTEMPTS:
            error = {"code": "server_error", "message": "The run was interrupted too many times."}
            events = await state.transition(session, run, "failed", last_error=error)
        elif run.status == "in_progress":
            # Claimed again after a crash or a shutdown: the attempt before may have left a half-written
            # step and message. They are closed and the turn starts over.
            events, started = await state.resume(session, run), run
        else:
            # A response's run may be queued with steps already: the function calls and outputs its input
            # gave back (``engine/response_functions.py``), which its context must read. Its creator says
            # which when it starts it in the creating transaction (the first turn then skips that read,
            # ~0.3 ms); nothing on the row tells (a prompt's run has an assistant's id as a run of the
            # Assistants API has), so a run started later reads its steps.
            if fresh and run.started_at is None:
                self._fresh.add(run_id)
            events, started = await state.transition(session, run, "in_progress"), run
        return Started(run=started, events=await self._bus.record(session, run_id, [*before, *events]))

    def share_upstream(self, processes: int) -> None:
        """``processes`` executing processes share the upstream's concurrency limit."""
        self._providers.share_upstream(processes)

    def deliver(self, run_id: str, events: list[Sequenced]) -> None:
        """Hand the events ``start`` recorded to listeners, once its transaction has committed."""
        self._bus.deliver(run_id, events)

    async def execute(self, run: RunRow) -> None:
        """Run a started run until it completes, fails or awaits tool outputs; never raises for run errors."""
        run_id = run.id
        made = MadeFiles()
        try:
            for number in range(MAX_TOOL_TURNS + 1):
                if not await self._turn(run, made, last=number == MAX_TOOL_TURNS):
                    break
        except UpstreamError as exc:
            await self.fail(run_id, exc.code or "server_error", exc.message)
        except AssistdError as exc:
            # E.g. no provider serves the run's model: the run fails with the reason, not a generic error.
            code = "invalid_prompt" if exc.status_code == 400 else "server_error"
            await self.fail(run_id, code, exc.message)
        except context.PromptTooLong:
            await self._end(run_id, "incomplete", incomplete_details={"reason": "max_prompt_tokens"})
        except Exception as exc:
            if database_unavailable(exc):
                # Not a bug: say so, as the HTTP answers of the same moment do (one line, no traceback).
                log.warning("run %s failed: the database became unavailable (%s)", run_id, type(exc).__name__)
                await self.fail(run_id, "server_error", DATABASE_LOST)
            else:
                log.exception("run %s failed on an internal error", run_id)
                await self.fail(run_id, "server_error", "The server had an error while processing the run.")
        finally:
            self._fresh.discard(run_id)  # one cancelled before its first turn

    async def _turn(self, run: RunRow, made: MadeFiles, *, last: bool = False) -> bool:
        """One model call and what follows from it; True when built-in tools ran and the model goes on."""
        fresh = run.id in self._fresh
        self._fresh.discard(run.id)
        # A response's MCP servers: listed (once per thread) and answered approvals run, before the context
        # is read (it reads the calls so run).
        offer = await self._mcp.prepare(run)
        if offer is not None:
            fresh = False
        async with self._db.read() as session:
            built = await context.build(
                session,
                run,
                self._providers,
                self._code.data_path,
                fresh=fresh,
                extra_functions=offer.functions() if offer is not None else (),
            )
        request = built.request
        if last and request.tools:
            request = dataclasses.replace(request, tool_choice="none")
        builtin = context.builtin_tools(run.tools)
        if offer is not None:
            own = {tool["function"]["name"] for tool in run.tools if tool.get("type") == "function"}
            offer.tools = {name: offered for name, offered in offer.tools.items() if name not in own}
            builtin |= set(offer.tools)
        bound = limits.max_tool_calls(run.tools)
        calls_left = None if bound is None else max(0, bound - built.builtin_calls)
        if calls_left == 0:
            request = _without_builtin(request, builtin)
        provider = self._providers.provider_for(run.model)
        turn = _Turn(citations=CitationFilter(built.sources), builtin=builtin, mcp=offer)
        try:
            async for chunk in provider.stream(request):
                if chunk.logprobs:
                    # Before the text: the delta event that shows it carries them.
                    turn.logprobs.extend(chunk.logprobs)
                    turn.unsent_logprobs.extend(chunk.logprobs)
                if chunk.text:
                    await self._on_text(run, turn, chunk.text)
                for delta in chunk.tool_calls:
                    await self._on_tool_call(
                        run, turn, made, delta.index, delta.id, delta.name, delta.arguments
                    )
                if chunk.finish_reason:
                    turn.finish_reason = chunk.finish_reason
                if chunk.usage:
                    turn.usage = chunk.usage
        except BaseException:
            # The run ends here (failed or cancelled): keep the text its streams already showed.
            await self._keep_partial_text(turn)
            raise
        if turn.usage is None:
            prompt = context.estimate_tokens(built.request.messages)
            completion = max(1, len("".join(turn.text)) // context.CHARS_PER_TOKEN) if turn.text else 1
            turn.usage = TokenUsage(prompt_tokens=prompt, completion_tokens=completion)
        if turn.message is not None and not turn.message_closed:
            tail, annotations = turn.citations.flush()
            self._publish_text(run.id, turn, tail, annotations)
        outcomes = await self._run_builtin(
            run,
            turn,
            next_source=max(built.sources, default=0) + 1,
            next_search=max((s.search + 1 for s in built.sources.values()), default=0),
            calls_left=calls_left,
        )
        return await self._finish_turn(run.id, turn, outcomes, made)

    async def _run_builtin(
        self, run: RunRow, turn: _Turn, next_source: int, next_search: int, calls_left: int | None = None
    ) -> dict[int, ToolOutcome]:
        """Run the built-in tool calls of a turn, by call index; function calls are left to the client.
        Searches number their passages on from ``next_source`` and count themselves on from
        ``next_search`` (only those that found passages: they are what markers cite). Past ``calls_left``
        (the run's ``max_tool_calls`` less its earlier calls) a call is not run: its output says so."""
        outcomes: dict[int, ToolOutcome] = {}
        if turn.finish_reason == "length":
            return outcomes
        for index, call in sorted(turn.calls.items()):
            if call.name not in turn.builtin:
                continue
            if calls_left is not None:
                if calls_left <= 0:
                    outcomes[index] = _not_run(call, turn.mcp)
                    continue
                calls_left -= 1
            if turn.mcp is not None and call.name in turn.mcp.tools:
                outcomes[index] = await self._mcp.call(run, turn.mcp, call.name, call.arguments)
                continue
            if call.name == code_interpreter.NAME:
                outcomes[index] = await self._code(run, call.arguments)
                continue
            outcome = await self._file_search(run, call.arguments, next_source, next_search)
            if outcome.sources:
                next_source += len(outcome.sources)
                next_search += 1
            outcomes[index] = outcome
        return outcomes

    async def _insert(self, *rows: MessageRow | RunStepRow) -> None:
        async with self._db.write() as session:
            await insert_rows(session, *rows)

    async def _keep_partial_text(self, turn: _Turn) -> None:
        with contextlib.suppress(Exception):
            await turn.saved()
        if turn.message is None or not turn.text:
            return
        content = [
            {
                "type": "text",
                "text": {"value": turn.citations.text, "annotations": turn.citations.annotations},
            }
        ]
        try:
            async with self._db.write() as session:
                await session.execute(
                    update(MessageRow)
                    .where(MessageRow.id == turn.message.id, MessageRow.status == "in_progress")
                    .values(content=content)
                )
        except Exception:
            log.warning("could not keep the partial text of message %s", turn.message.id, exc_info=True)

    async def _on_text(self, run: RunRow, turn: _Turn, text: str) -> None:
        if turn.message_closed:
            # Text after the turn's tool calls began: a message of its own, after them.
            turn.message, turn.message_step, turn.message_closed = None, None, False
            turn.citations = CitationFilter(turn.citations.sources)
        if turn.message is None:
            message = message_store.assistant_draft(run.tenant, run.thread_id, run.id, run.assistant_id)
            step = run_store.new_step_row(
                run,
                "message_creation",
                {"type": "message_creation", "message_creation": {"message_id": message.id}},
            )
            turn.message, turn.message_step = message, step
            turn.saving = asyncio.create_task(self._insert(message, step))
            step_wire = run_store.step_to_wire(step)
            message_wire = message_store.to_wire(message)
            self._bus.soon(
                run.id,
                StreamEvent("thread.run.step.created", step_wire),
                StreamEvent("thread.run.step.in_progress", step_wire),
                StreamEvent("thread.message.created", message_wire),
                StreamEvent("thread.message.in_progress", message_wire),
            )
        turn.text.append(text)
        shown, annotations = turn.citations.feed(text)
        self._publish_text(run.id, turn, shown, annotations)

    def _publish_text(self, run_id: str, turn: _Turn, text: str, annotations: list[dict[str, Any]]) -> None:
        if turn.message is None or not (text or annotations):
            return
        part: dict[str, Any] = {"value": text}
        if annotations:
            part["annotations"] = annotations
        else:
            part["annotations"] = []
        if turn.unsent_logprobs:
            # Only a run that asked for logprobs (a response's) has them: the Responses stream shows them.
            part["logprobs"], turn.unsent_logprobs = turn.unsent_logprobs, []
        self._bus.soon(
            run_id,
            StreamEvent(
                "thread.message.delta",
                {
                    "id": turn.message.id,
                    "object": "thread.message.delta",
                    "delta": {"content": [{"index": 0, "type": "text", "text": part}]},
                },
            ),
        )

    async def _on_tool_call(
        self,
        run: RunRow,
        turn: _Turn,
        made: MadeFiles,
        index: int,
        call_id: str | None,
        name: str | None,
        arguments: str | None,
    ) -> None:
        if turn.tool_step is None:
            await turn.saved()  # steps keep the order they were made in
            await self._close_text(run, turn, made)
            async with self._db.write() as session:
                step = run_store.new_step_row(run, "tool_calls", {"type": "tool_calls", "tool_calls": []})
                session.add(step)
                await session.flush()
            turn.tool_step = step
            wire = run_store.step_to_wire(step)
            self._bus.soon(
                run.id,
                StreamEvent("thread.run.step.created", wire),
                StreamEvent("thread.run.step.in_progress", wire),
            )
        call = turn.calls.setdefault(index, _Call())
        announced = bool(call.id and call.name)
        if call_id and not call.id:
            call.id = call_id
        if name:
            call.name += name
        if arguments:
            call.arguments += arguments
        if call.name == code_interpreter.NAME and call.name in turn.builtin:
            # The code is shown as the model writes it; its outputs come when it has run.
            if not call.id:
                return  # first shown with its id, with the code written so far
            first = call.code is None
            if call.code is None:
                call.code = CodeStream()
                piece = call.code.feed(call.arguments)
            else:
                piece = call.code.feed(arguments or "")
            if not first and not piece:
                return
            body: dict[str, Any] = {"input": piece}
            delta: dict[str, Any] = {"index": index, "type": call.name, call.name: body}
            if first:
                delta["id"] = call.id
                body["outputs"] = []
        elif turn.mcp is not None and call.name in turn.mcp.tools:
            if turn.mcp.needs_approval(call.name) or not call.id:
                return  # a call that waits for approval is shown once the turn ends, as its request
            piece = call.arguments if not announced else (arguments or "")
            if announced and not piece:
                return
            body = {"arguments": piece}
            if not announced:
                body.update(name=call.name, server_label=turn.mcp.tools[call.name].server["server_label"])
            delta = {"index": index, "type": "mcp", "mcp": body}
            if not announced:
                delta["id"] = call.id
        elif call.name in turn.builtin:
            if announced or not call.id:
                return  # a built-in call is shown once; its query and results come with the step
            delta = {"index": index, "id": call.id, "type": call.name, call.name: {}}
        else:
            function: dict[str, Any] = {}
            delta = {"index": index, "type": "function", "function": function}
            if call_id:
                delta["id"] = call_id
            if name:
                function["name"] = name
            function["arguments"] = arguments or ""
            function["output"] = None
        self._bus.soon(
            run.id,
            StreamEvent(
                "thread.run.step.delta",
                {
                    "id": turn.tool_step.id,
                    "object": "thread.run.step.delta",
                    "delta": {"step_details": {"type": "tool_calls", "tool_calls": [delta]}},
                },
            ),
        )

    async def _finish_turn(
        self, run_id: str, turn: _Turn, outcomes: dict[int, ToolOutcome], made: MadeFiles
    ) -> bool:
        """Store what the turn produced and move the run on; True when the model takes another turn."""
        await turn.saved()
        # What the turn streamed and is not written yet goes first in this transaction (a write less than
        # the flush's): the log keeps the order the events were made in.
        streamed = await self._bus.take(run_id)
        try:
            async with self._db.write() as session:
                run = await run_store.get_row_by_id(session, run_id)
                if run is None or run.status not in ("in_progress", "cancelling"):
                    self._bus.soon(run_id, *streamed)  # written by the next flush, as if never taken
                    return False
                events, go_on = await self._end_turn(session, run, turn, outcomes, made)
                sequenced = await self._bus.record(session, run_id, [*streamed, *events])
        except BaseException:
            self._bus.soon(run_id, *streamed)  # not written: the next flush writes them
            raise
        self._bus.deliver(run_id, sequenced)
        return go_on

    async def _end_turn(
        self,
        session: AsyncSession,
        run: RunRow,
        turn: _Turn,
        outcomes: dict[int, ToolOutcome],
        made: MadeFiles,
    ) -> tuple[list[StreamEvent], bool]:
        """In ``_finish_turn``'s transaction: close the turn's message and tool step and move the run on.
        The events that tell it, and whether the model takes another turn."""
        assert turn.usage is not None
        usage = stored_usage.of_turn(turn.usage)
        truncated = turn.finish_reason == "length"
        events = (
            [] if turn.message_closed else await self._close_message(session, turn, usage, made, truncated)
        )
        called = None
        if turn.tool_step is not None and turn.calls and not truncated:
            called = await self._close_tool_step(session, run, turn, usage, outcomes, made)
            events += called.events
        if run.api_key_id is not None:
            # The managed key's count for the day, in the transaction that records the turn: counted once.
            await api_keys.add_tokens(session, run.api_key_id, api_keys.day_of(now()), usage["total_tokens"])
        # Written with the run's transition below, or alone when the run goes on without one.
        total = stored_usage.added(run.usage, usage)
        if called is None:
            if truncated and run.max_completion_tokens is not None:
                reason = {"reason": "max_completion_tokens"}
                events += await state.transition(
                    session, run, "incomplete", incomplete_details=reason, usage=total
                )
            else:
                events += await state.transition(session, run, "completed", usage=total)
        elif run.status == "cancelling":
            events += await state.transition(session, run, "cancelled", usage=total)
        elif called.approvals and not called.functions:
            # MCP calls wait for the client's approval: the response ends with their requests, and the
            # next one (``mcp_approval_response`` items) runs them.
            events.append(StreamEvent("thread.run.step.completed", run_store.step_to_wire(called.step)))
            events += await state.transition(session, run, "completed", usage=total)
        elif called.functions:
            events += await state.transition(
                session,
                run,
                "requires_action",
                required_action=_required_action(called.functions),
                expires_in=self._settings.requires_action_expiry_seconds,
                usage=total,
            )
        else:
            # Only built-in tools were called, and they ran: the model answers with their results.
            events.append(StreamEvent("thread.run.step.completed", run_store.step_to_wire(called.step)))
            run.usage = total
            await save(session, run, "usage")
            return events, True
        return events, False

    async def _close_text(self, run: RunRow, turn: _Turn, made: MadeFiles) -> None:
        """The text the model wrote before its first tool call of the turn: its message completed now, so
        that it is done before the calls begin (the order of OpenAI's streams)."""
        if turn.message is None or turn.message_closed:
            return
        tail, annotations = turn.citations.flush()
        self._publish_text(run.id, turn, tail, annotations)
        async with self._db.write() as session:
            # No usage on its step: the turn's tool_calls step carries it.
            events = await self._close_message(session, turn, None, made, False)
        turn.message_closed = True
        self._bus.soon(run.id, *events)

    @staticmethod
    async def _close_message(
        session: AsyncSession, turn: _Turn, usage: dict[str, Any] | None, made: MadeFiles, truncated: bool
    ) -> list[StreamEvent]:
        """Store the turn's message, with what code_interpreter made that no message showed yet, and complete
        its message_creation step (which carries the turn's usage unless a tool_calls step follows it);
        the events that tell both."""
        if turn.message is None or turn.message_step is None:
            return []
        message, step = turn.message, turn.message_step
        parts = take_made(turn.citations.text, made, len(turn.citations.annotations))
        text = {"value": turn.citations.text, "annotations": turn.citations.annotations}
        message.content = with_made([{"type": "text", "text": text}], parts)
        message.attachments = [*(message.attachments or []), *parts.attachments]
        if truncated:
            message.status, message.incomplete_at = "incomplete", now()
            message.incomplete_details = {"reason": "max_tokens"}
        else:
            message.status, message.completed_at = "completed", now()
        step.status, step.completed_at = "completed", now()
        step.usage = usage if turn.tool_step is None else None
        kept = ("logprobs",) if turn.logprobs else ()
        message.logprobs = turn.logprobs or None
        await save(
            session,
            message,
            "content",
            "attachments",
            "status",
            "incomplete_at",
            "incomplete_details",
            "completed_at",
            *kept,
        )
        await save(session, step, "status", "completed_at", "usage")
        shown = [_message_delta(message.id, parts.delta)] if parts.delta else []
        name = "thread.message.incomplete" if truncated else "thread.message.completed"
        return [
            *shown,
            StreamEvent(name, message_store.to_wire(message)),
            StreamEvent("thread.run.step.completed", run_store.step_to_wire(step)),
        ]

    async def _close_tool_step(
        self,
        session: AsyncSession,
        run: RunRow,
        turn: _Turn,
        usage: dict[str, Any],
        outcomes: dict[int, ToolOutcome],
        made: MadeFiles,
    ) -> _Called:
        """Store the turn's tool_calls step with each call's details and the built-in calls' results (what
        code_interpreter made is kept in ``made`` for the messages that follow). The step is completed when
        no function call in it waits for the client's output."""
        assert turn.tool_step is not None
        step = turn.tool_step
        ordered = sorted(turn.calls.items())
        functions = [call for index, call in ordered if index not in outcomes]
        step.step_details = {
            "type": "tool_calls",
            "tool_calls": [self._call_details(run, call, outcomes.get(index)) for index, call in ordered],
        }
        approvals = any(isinstance(o, McpOutcome) and o.result is None for o in outcomes.values())
        for outcome in outcomes.values():
            if isinstance(outcome, CodeOutcome):
                made.images += outcome.images
                made.files.update(outcome.files)
        step.tool_io = {
            call.id: {
                "name": call.name,
                "arguments": call.arguments,
                "output": outcomes[index].output,
                "sources": {str(n): source.stored() for n, source in outcomes[index].sources.items()},
                **_found_attributes(outcomes[index]),
            }
            for index, call in ordered
            if index in outcomes and not _awaits_approval(outcomes[index])
        } or None
        step.usage = usage
        fields = ["step_details", "usage", "tool_io"]
        if not functions:
            step.status, step.completed_at = "completed", now()
            fields += ["status", "completed_at"]
        await save(session, step, *fields)
        # Built-in calls are done: their results are shown as a step delta before what follows.
        events = [self._results_delta(step)] if outcomes else []
        return _Called(step, functions, events, approvals)

    @staticmethod
    def _call_details(run: RunRow, call: _Call, outcome: ToolOutcome | None) -> dict[str, Any]:
        if outcome is None:
            return {"id": call.id, "type": "function", "function": {**call.function(), "output": None}}
        if isinstance(outcome, McpOutcome):
            return outcome.details(call.id)
        if isinstance(outcome, CodeOutcome):
            return {
                "id": call.id,
                "type": "code_interpreter",
                "code_interpreter": {"input": outcome.code, "outputs": outcome.outputs},
            }
        return {
            "id": call.id,
            "type": "file_search",
            "file_search": {"ranking_options": ranking_options(run.tools), "results": outcome.results},
        }

    @staticmethod
    def _results_delta(step: RunStepRow) -> StreamEvent:
        # Deltas carry no result content: like the step itself without include[], and far smaller.
        shown: list[dict[str, Any]] = []
        for position, call in enumerate(step.step_details["tool_calls"]):
            if call["type"] == "file_search":
                shown.append(
                    {
                        "index": position,
                        "id": call["id"],
                        "type": "file_search",
                        "file_search": {
                            "ranking_options": call["file_search"]["ranking_options"],
                            "results": [
                                {k: v for k, v in result.items() if k != "content"}
                                for result in call["file_search"]["results"]
                            ],
                        },
                    }
                )
            elif call["type"] in ("mcp", "mcp_approval_request"):
                shown.append(results_delta(position, call))
            elif call["type"] == "code_interpreter":
                outputs = call["code_interpreter"]["outputs"]
                shown.append(
                    {
                        "index": position,
                        "id": call["id"],
                        "type": "code_interpreter",
                        "code_interpreter": {
                            "outputs": [{"index": n, **output} for n, output in enumerate(outputs)]
                        },
                    }
                )
        return StreamEvent(
            "thread.run.step.delta",
            {
                "id": step.id,
                "object": "thread.run.step.delta",
                "delta": {"step_details": {"type": "tool_calls", "tool_calls": shown}},
            },
        )

    async def fail(self, run_id: str, code: str, message: str) -> None:
        await self._end(run_id, "failed", last_error={"code": code, "message": message})

    async def cancelled(self, run_id: str) -> None:
        await self._end(run_id, "cancelled")

    async def _end(self, run_id: str, status: str, **fields: Any) -> None:
        await self._bus.settle(run_id)
        async with self._db.write() as session:
            run = await run_store.get_row_by_id(session, run_id)
            if run is None or not state.can_transition(run.status, status):
                return
            sequenced = await self._bus.record(
                session, run_id, await state.transition(session, run, status, **fields)
            )
        self._bus.deliver(run_id, sequenced)


def _without_builtin(request: ChatRequest, builtin: set[str]) -> ChatRequest:
    """The request without the built-in tools, once the run's ``max_tool_calls`` is spent."""
    tools = [tool for tool in request.tools if tool["function"]["name"] not in builtin]
    choice = request.tool_choice
    if isinstance(choice, dict) and choice.get("function", {}).get("name") in builtin:
        choice = "auto"
    if not tools:
        return dataclasses.replace(request, tools=[], tool_choice=None, parallel_tool_calls=None)
    return dataclasses.replace(request, tools=tools, tool_choice=choice)


def _awaits_approval(outcome: ToolOutcome) -> bool:
    # Not shown to the model as a call until it is answered (the next response runs it).
    return isinstance(outcome, McpOutcome) and outcome.result is None


def _not_run(call: _Call, offer: McpOffer | None = None) -> ToolOutcome:
    # A call past the run's bound: recorded with its step (the model made it), not run.
    if offer is not None and call.name in offer.tools:
        error = {"type": "mcp_protocol_error", "code": -32000, "message": limits.NOT_RUN}
        label = offer.tools[call.name].server["server_label"]
        return McpOutcome(label, call.name, call.arguments, McpCallResult(None, error))
    if call.name == code_interpreter.NAME:
        return CodeOutcome(code_interpreter.code_of(call.arguments), [], limits.NOT_RUN)
    return Outcome([], limits.NOT_RUN, {})


def _message_delta(message_id: str, content: list[dict[str, Any]]) -> StreamEvent:
    return StreamEvent(
        "thread.message.delta",
        {"id": message_id, "object": "thread.message.delta", "delta": {"content": content}},
    )


def _found_attributes(outcome: ToolOutcome) -> dict[str, Any]:
    """A file search's results' file attributes, for the step's record (``tool_io``): a response shows them
    with its ``file_search_call`` results."""
    if isinstance(outcome, Outcome) and outcome.attributes:
        return {"attributes": outcome.attributes}
    return {}
