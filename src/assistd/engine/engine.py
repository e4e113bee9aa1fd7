"""The run engine as the API sees it: create, cancel and feed runs, and follow their events."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from ..config import Settings
from ..errors import ConflictError, InvalidRequestError
from ..llm.registry import ProviderRegistry
from ..protocol.common import ListPage
from ..protocol.items import McpApprovalInput
from ..protocol.runs import (
    Run,
    RunCreateParams,
    RunUpdateParams,
    SubmitToolOutputsParams,
    ThreadAndRunCreateParams,
)
from ..protocol.threads import Thread, ThreadCreateParams
from ..retrieval.search import Retriever
from ..sandbox.base import Sandbox
from ..storage import FileStorage
from ..store import assistants as assistant_store
from ..store import jobs, references
from ..store import messages as message_store
from ..store import runs as run_store
from ..store import threads as thread_store
from ..store.clock import now
from ..store.database import Database
from ..store.detached import insert_rows, save
from ..store.models import AssistantRow, RunRow
from ..store.pagination import PageQuery
from ..tools.code_interpreter import CodeInterpreter
from ..tools.file_search import FileSearch
from ..tools.mcp import Sealer
from . import state
from .bus import MemoryBus, RunBus, RunSubscription, Sequenced
from .event_log import LogBus
from .events import FINAL_RUN_EVENTS, StreamEvent
from .executor import RunExecutor, Started
from .response_mcp import McpTools, write_approvals
from .worker import WorkerPool, new_process_id

# A resumed stream that hears nothing this long looks at the run itself (its log may be pruned).
_RESUME_RECHECK_SECONDS = 2.0

# The statuses the SDKs' poll helpers keep polling through; any other ends their loop.
POLL_WAIT_STATUSES = frozenset({"queued", "in_progress", "cancelling"})


@dataclass
class _NewRun:
    """The run a ``_creating`` transaction made, and whether it was started there too."""

    run_id: str = ""
    # Queued as this process's own (adopted once committed); False: left for the process holding the
    # thread's code session, or for any worker.
    held: bool = False
    started: Started | None = None
    # The run's first events (created, queued), recorded with it: delivered before ``started``'s.
    opened: list[Sequenced] = field(default_factory=list)


class Engine:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        providers: ProviderRegistry,
        retriever: Retriever,
        storage: FileStorage,
        sandbox: Sandbox,
        *,
        role: str = "both",
    ) -> None:
        self.settings = settings
        # False in an API-only replica (`serve --workers 0`): runs it creates are queued for the workers.
        self.executes = role != "api"
        self.db = db
        self.providers = providers
        # One process on SQLite shares nothing: its bus stays in memory. Anything else (PostgreSQL, or
        # several processes on one SQLite file) carries events through the database's log.
        self.bus: RunBus = MemoryBus() if db.is_sqlite and settings.processes <= 1 else LogBus(db)
        self.sandbox = sandbox
        process_id = new_process_id()
        code = CodeInterpreter(db, storage, sandbox, settings.max_upload_bytes, process_id)
        secret = settings.mcp_secret_key.get_secret_value() if settings.mcp_secret_key else None
        # Seals a response's MCP headers for its run's row (``tools/mcp.py``).
        self.mcp_sealer = Sealer(secret, settings.data_dir)
        mcp = McpTools(settings, db, self.bus, self.mcp_sealer)
        self.executor = RunExecutor(settings, db, self.bus, providers, FileSearch(db, retriever), code, mcp)
        self.pool = WorkerPool(settings, db, self.bus, self.executor, process_id, role)

    async def start(self) -> None:
        await self.bus.start()
        if self.executes:
            self.bus.on_job(jobs.RUNS.name, self.pool.wake)
            await self.pool.start()

    async def close(self) -> None:
        if self.executes:
            await self.pool.close()
        await self.bus.close()

    async def create_run(
        self,
        tenant: str,
        thread_id: str,
        params: RunCreateParams,
        listener: RunSubscription | None = None,
        *,
        key_id: str | None = None,
    ) -> Run:
        """Queue a run; ``key_id``: the managed key creating it, whose daily token count its usage adds to."""
        async with self._creating() as (session, new):
            thread = await thread_store.read_row(session, tenant, thread_id)
            assistant = await assistant_store.read_row(session, tenant, params.assistant_id)
            for index, message in enumerate(params.additional_messages or []):
                await message_store.insert(
                    session, tenant, thread.id, message, at=f"additional_messages[{index}]"
                )
            wire = await self._queue_run(session, tenant, thread.id, assistant, params, listener, new, key_id)
        return wire

    @contextlib.asynccontextmanager
    async def _creating(self) -> AsyncIterator[tuple[AsyncSession, _NewRun]]:
        """The write transaction that creates a run; once it commits, this process's pool runs it."""
        new = _NewRun()
        try:
            async with self.db.write() as session:
                yield session, new
        except BaseException:
            if new.started is not None:
                self.pool.unreserve()
            raise
        self.bus.deliver(new.run_id, new.opened)
        if new.held:
            self.pool.adopt(new.run_id, new.started)

    async def _start_here(
        self, session: AsyncSession, run: RunRow, opening: list[StreamEvent], fresh: bool
    ) -> Started | None:
        """Start a new run in the transaction that creates it, when this process has a free slot (a write
        transaction less per run), its ``opening`` events recorded first; None: it starts once a slot
        frees. Its answer still says queued. ``fresh``: as ``RunExecutor.start`` takes it."""
        if not self.executes or not await self.pool.reserve():
            return None
        try:
            return await self.executor.start(session, run.id, 1, run, opening, fresh=fresh)
        except BaseException:
            self.pool.unreserve()
            raise

    async def _queue_run(
        self,
        session: AsyncSession,
        tenant: str,
        thread_id: str,
        assistant: AssistantRow,
        params: RunCreateParams | ThreadAndRunCreateParams,
        listener: RunSubscription | None,
        new: _NewRun,
        key_id: str | None,
    ) -> Run:
        run = run_store.new_run_row(
            tenant, thread_id, assistant, params, self.settings.requires_action_expiry_seconds
        )
        # A run of the Assistants API is queued without steps.
        return await self._queue_row(session, run, listener, new, key_id, fresh=True)

    async def _queue_row(
        self,
        session: AsyncSession,
        run: RunRow,
        listener: RunSubscription | None,
        new: _NewRun,
        key_id: str | None,
        fresh: bool,
    ) -> Run:
        """Queue the new ``run`` (not inserted yet) on its thread, which it claims, in ``session``;
        ``fresh``: whether it has no steps yet (False: its first turn reads them)."""
        thread_id = run.thread_id
        run.api_key_id = key_id
        await thread_store.claim_for_run(session, thread_id, run.id)
        if listener is not None:
            # Nobody else can write the events of a run that is not committed yet.
            await listener.attach(run.id, after=0, read=False)
        wire = run_store.to_wire(run)
        opening = [StreamEvent("thread.run.created", wire), StreamEvent("thread.run.queued", wire)]
        new.run_id = run.id
        new.held = await self._enqueue_here(session, run.id, thread_id)
        if new.held:
            # Started before its row is inserted, the run is written once, already in progress.
            new.started = await self._start_here(session, run, opening, fresh)
        await insert_rows(session, run)
        if new.started is None:
            new.opened = await self.bus.record(session, run.id, opening)
        return wire

    async def create_prepared_run(
        self,
        prepare: Callable[[AsyncSession], Awaitable[tuple[RunRow, bool]]],
        listener: RunSubscription | None = None,
        *,
        key_id: str | None = None,
    ) -> Run:
        """Queue the run ``prepare`` makes, not inserted, in the transaction that creates it; ``prepare`` may
        write rows of its own there first (a thread, its messages, the record of what asked for the run,
        steps of the run): they commit with the run or not at all. For facades whose runs have no assistant
        to take their options from (a response of /v1/responses). ``prepare`` also says whether it wrote no
        steps into the run (fresh): its first turn then need not read them."""
        async with self._creating() as (session, new):
            run, fresh = await prepare(session)
            wire = await self._queue_row(session, run, listener, new, key_id, fresh)
        return wire

    async def _enqueue_here(self, session: AsyncSession, run_id: str, thread_id: str) -> bool:
        """Queue the run as claimed by this process's pool: True, and the caller adopts it once committed.
        False: it was queued for the worker holding the thread's code session (another live process), or,
        in an API-only replica, for any worker (the enqueue wakes them)."""
        lease = self.settings.run_lease_seconds
        held_by = self.pool.worker_id if self.executes else None
        return await jobs.enqueue(session, run_id, held_by=held_by, lease_seconds=lease, thread_id=thread_id)

    async def create_thread_and_run(
        self,
        tenant: str,
        params: ThreadAndRunCreateParams,
        listener: RunSubscription | None = None,
        *,
        key_id: str | None = None,
    ) -> tuple[Thread, Run]:
        async with self._creating() as (session, new):
            assistant = await assistant_store.read_row(session, tenant, params.assistant_id)
            thread_params = params.thread or ThreadCreateParams()
            resources_at = "thread.tool_resources"
            if params.tool_resources is not None and thread_params.tool_resources is None:
                thread_params = thread_params.model_copy(update={"tool_resources": params.tool_resources})
                resources_at = "tool_resources"
            elif params.tool_resources is not None:
                # Not used (the thread's own win), but a foreign or unknown id in them is still refused.
                await references.check_tool_resources(session, tenant, params.tool_resources)
            thread = await thread_store.create(
                session, tenant, thread_params, messages_at="thread.messages", resources_at=resources_at
            )
            wire = await self._queue_run(session, tenant, thread.id, assistant, params, listener, new, key_id)
        return thread, wire

    async def retrieve_run(self, tenant: str, thread_id: str, run_id: str, *, hold: bool = False) -> Run:
        """The run; with ``hold`` (the SDKs' poll helpers ask so) once it reaches a status that ends their
        polling, or as it is after ``long_poll_seconds``: a long poll, so that create_and_poll sees the run
        end at once instead of after its sleeps."""
        wait = self.settings.long_poll_seconds
        # Listening starts before the read, so a change between the read and the wait is not missed.
        listener = await self.listen(run_id) if hold and wait > 0 else None
        try:
            async with self.db.read() as session:
                run = await run_store.get_row(session, tenant, thread_id, run_id)
            if listener is None or run.status not in POLL_WAIT_STATUSES:
                return run_store.to_wire(run)
            ended = await self.wait_while(listener, POLL_WAIT_STATUSES, wait)
            # The event carries the run as committed: the same answer as reading it again, one read less.
            if ended is not None and isinstance(ended.data, Run):
                return ended.data
            async with self.db.read() as session:
                return run_store.to_wire(await run_store.get_row(session, tenant, thread_id, run_id))
        finally:
            if listener is not None:
                listener.close()

    async def list_runs(self, tenant: str, thread_id: str, query: PageQuery) -> ListPage[Run]:
        async with self.db.read() as session:
            await thread_store.get_row(session, tenant, thread_id)  # an unknown thread is a 404
            return await run_store.list_page(session, tenant, thread_id, query)

    async def modify_run(self, tenant: str, thread_id: str, run_id: str, params: RunUpdateParams) -> Run:
        """Change the run's metadata (the one field a client may change), whatever its status."""
        async with self.db.write() as session:
            run = await run_store.get_row(session, tenant, thread_id, run_id, for_change=True)
            if "metadata" in params.model_fields_set:
                run.meta = params.metadata or {}
                await save(session, run, "meta")
            return run_store.to_wire(run)

    async def cancel_run(self, tenant: str, thread_id: str, run_id: str) -> Run:
        async with self.db.write() as session:
            run = await run_store.get_row(session, tenant, thread_id, run_id, for_change=True)
            if run.status in state.TERMINAL or run.status == "cancelling":
                raise ConflictError(f"Cannot cancel run with status '{run.status}'.", param="run_id")
            final = run.status != "in_progress"
            events = await state.transition(session, run, "cancelled" if final else "cancelling")
            sequenced = await self.bus.record(session, run_id, events)
        self.bus.deliver(run_id, sequenced)
        if not final:
            self.pool.cancel(run_id)
        return state.run_of(events)

    async def submit_tool_outputs(
        self,
        tenant: str,
        thread_id: str,
        run_id: str,
        params: SubmitToolOutputsParams,
        listener: RunSubscription | None = None,
        options: dict[str, Any] | None = None,
        approvals: Sequence[McpApprovalInput] = (),
    ) -> Run:
        """Give the waiting run its tool outputs and queue it again. ``options``: run fields
        (``store.runs.TURN_OPTIONS``) its next turns take instead of its own, written with the outputs (a
        response that follows up another brings its own). ``approvals``: answers to MCP approval requests
        the run's waiting turn made beside its function calls, written with the outputs for its next turn
        to act on."""
        async with self.db.write() as session:
            run = await run_store.get_row(session, tenant, thread_id, run_id, for_change=True)
            if run.status != "requires_action" or not run.required_action:
                raise ConflictError(
                    f"Runs in status '{run.status}' do not accept tool outputs.", param="run_id"
                )
            expected = [call["id"] for call in run.required_action["submit_tool_outputs"]["tool_calls"]]
            outputs: dict[str, str] = {}
            for index, item in enumerate(params.tool_outputs):
                if item.tool_call_id is None:
                    raise InvalidRequestError(
                        "Missing required parameter: 'tool_outputs[].tool_call_id'.",
                        param=f"tool_outputs[{index}].tool_call_id",
                    )
                if item.tool_call_id not in expected:
                    raise InvalidRequestError(
                        f"Invalid tool_call_id: {item.tool_call_id}. No call with this id awaits output.",
                        param=f"tool_outputs[{index}].tool_call_id",
                    )
                outputs[item.tool_call_id] = item.output or ""
            missing = [call_id for call_id in expected if call_id not in outputs]
            if missing:
                raise InvalidRequestError(
                    f"Expected tool outputs for call_ids {expected}, got {list(outputs)}; missing {missing}.",
                    param="tool_outputs",
                )
            events: list[StreamEvent] = []
            for step in await state.open_steps(session, run.id):
                if step.type != "tool_calls":
                    continue
                details = dict(step.step_details)
                details["tool_calls"] = [
                    {**call, "function": {**call["function"], "output": outputs.get(call["id"])}}
                    if call.get("type") == "function"
                    else call
                    for call in details["tool_calls"]
                ]
                step.step_details = details
                step.status, step.completed_at = "completed", now()
                await session.flush()
                events.append(StreamEvent("thread.run.step.completed", run_store.step_to_wire(step)))
            await write_approvals(session, tenant, run, approvals)
            events += await state.transition(session, run, "queued", **(options or {}))
            held = await self._enqueue_here(session, run.id, run.thread_id)
            if listener is not None:
                await listener.attach(run.id)
            sequenced = await self.bus.record(session, run_id, events)
        self.bus.deliver(run_id, sequenced)
        if held:
            self.pool.adopt(run_id)
        return state.run_of(events)

    async def listen(self, run_id: str, after: int | None = None) -> RunSubscription:
        """A subscription to ``run_id``'s events after seq ``after`` (None: from now on); the caller
        closes it."""
        listener = self.bus.subscription()
        await listener.attach(run_id, after)
        return listener

    async def wait_while(
        self, listener: RunSubscription, statuses: frozenset[str], seconds: float
    ) -> StreamEvent | None:
        """The event of the listened run's first status outside ``statuses``, or None after ``seconds``.
        Its data is the run as that status's transaction committed it."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                while True:
                    event = await listener.get()
                    if event.is_run_status and event.event.removeprefix("thread.run.") not in statuses:
                        return event
        return None

    async def resume(
        self, tenant: str, thread_id: str, run_id: str, after: int
    ) -> AsyncIterator[StreamEvent]:
        """The run's stream after seq ``after``, live until the run ends or needs the client. A run that
        ended before its log was pruned replays it; one whose log is gone (or never reached this far)
        gets its final status event, read from the run itself, so the stream always ends."""
        async with self.db.read() as session:
            await run_store.get_row(session, tenant, thread_id, run_id)  # an unknown run is a 404
        listener = await self.listen(run_id, after)
        try:
            while True:
                try:
                    async with asyncio.timeout(_RESUME_RECHECK_SECONDS):
                        event = await listener.get()
                except TimeoutError:
                    async with self.db.read() as session:
                        run = run_store.to_wire(await run_store.get_row(session, tenant, thread_id, run_id))
                    if f"thread.run.{run.status}" in FINAL_RUN_EVENTS:
                        yield StreamEvent(f"thread.run.{run.status}", run)
                        return
                    continue
                yield event
                if event.event in FINAL_RUN_EVENTS:
                    return
        finally:
            listener.close()

    async def follow(self, listener: RunSubscription) -> AsyncIterator[StreamEvent]:
        """The events of the attached run until it ends or needs the client; closes the listener."""
        try:
            while True:
                event = await listener.get()
                yield event
                if event.event in FINAL_RUN_EVENTS:
                    return
        finally:
            listener.close()
