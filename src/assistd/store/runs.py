"""Run rows and run step rows, mapped to ``protocol.Run`` and ``protocol.RunStep``.

Status changes do not happen here: ``engine.state`` owns the run state machine.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import and_, bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from ..errors import NotFoundError
from ..ids import new_id
from ..protocol.common import ListPage
from ..protocol.run_steps import RunStep
from ..protocol.runs import Run, RunCreateParams, ThreadAndRunCreateParams
from .clock import now
from .detached import detached, fetch_all, fetch_one, fetch_owned, owned, table_of
from .jsonable import dump
from .models import AssistantRow, MessageRow, RunRow, RunStepRow, ThreadRow
from .pagination import PageQuery, fetch_page, page_of

DEFAULT_TRUNCATION: dict[str, Any] = {"type": "auto", "last_messages": None}


# What a run (or step) of a response shows for the assistant it has none of: the Assistants wire types
# (and the SDKs' models) require a string.
NO_ASSISTANT = ""


def to_wire(row: RunRow) -> Run:
    return Run.model_validate(
        {
            "id": row.id,
            "created_at": row.created_at,
            "thread_id": row.thread_id,
            "assistant_id": row.assistant_id or NO_ASSISTANT,
            "status": row.status,
            "required_action": row.required_action,
            "last_error": row.last_error,
            "expires_at": row.expires_at,
            "started_at": row.started_at,
            "cancelled_at": row.cancelled_at,
            "failed_at": row.failed_at,
            "completed_at": row.completed_at,
            "incomplete_details": row.incomplete_details,
            "model": row.model,
            "instructions": row.instructions,
            # A response's MCP servers (``engine/response_mcp.py``) have no Assistants tool type: not shown.
            "tools": [tool for tool in row.tools if tool.get("type") != "mcp"],
            "metadata": row.meta,
            "usage": row.usage,
            "temperature": row.temperature,
            "top_p": row.top_p,
            "max_prompt_tokens": row.max_prompt_tokens,
            "max_completion_tokens": row.max_completion_tokens,
            "truncation_strategy": row.truncation_strategy,
            "tool_choice": row.tool_choice,
            "parallel_tool_calls": row.parallel_tool_calls,
            "response_format": row.response_format,
            "reasoning_effort": row.reasoning_effort,
        }
    )


def new_run_row(
    tenant: str,
    thread_id: str,
    assistant: AssistantRow,
    params: RunCreateParams | ThreadAndRunCreateParams,
    expires_in: float,
) -> RunRow:
    """A queued run whose options fall back on the assistant's, as OpenAI's do."""
    instructions = params.instructions if params.instructions is not None else assistant.instructions or ""
    extra = getattr(params, "additional_instructions", None)
    if extra:
        instructions = f"{instructions}\n\n{extra}" if instructions else extra
    return queued_row(
        tenant,
        thread_id,
        expires_in,
        meta=params.metadata or {},
        assistant_id=assistant.id,
        model=params.model or assistant.model,
        instructions=instructions,
        tools=dump(params.tools) if params.tools is not None else assistant.tools,
        temperature=params.temperature if params.temperature is not None else assistant.temperature,
        top_p=params.top_p if params.top_p is not None else assistant.top_p,
        max_prompt_tokens=params.max_prompt_tokens,
        max_completion_tokens=params.max_completion_tokens,
        truncation_strategy=dump(params.truncation_strategy) or dict(DEFAULT_TRUNCATION),
        tool_choice=dump(params.tool_choice) if params.tool_choice is not None else "auto",
        parallel_tool_calls=params.parallel_tool_calls if params.parallel_tool_calls is not None else True,
        response_format=dump(params.response_format) or assistant.response_format or "auto",
        reasoning_effort=params.reasoning_effort or assistant.reasoning_effort,
    )


def queued_row(tenant: str, thread_id: str, expires_in: float, **options: Any) -> RunRow:
    """A new queued run on ``thread_id`` with its ``options`` (the RunRow fields a run is created with,
    resolved by the caller: from an assistant, or from a response's request)."""
    created = now()
    return RunRow(
        id=new_id("run"),
        tenant=tenant,
        created_at=created,
        thread_id=thread_id,
        status="queued",
        expires_at=created + int(expires_in),
        **options,
    )


# The options a run's next model turns are made of (``engine/context.py`` reads them each turn): a response
# that gives a waiting run its function outputs brings its own, which the run takes with the outputs.
TURN_OPTIONS = (
    "model",
    "instructions",
    "tools",
    "tool_choice",
    "temperature",
    "top_p",
    "max_completion_tokens",
    "response_format",
    "parallel_tool_calls",
    "reasoning_effort",
    "top_logprobs",
)


def turn_options(options: RunRow, completion_used: int) -> dict[str, Any]:
    """The ``TURN_OPTIONS`` of ``options`` (a run made from a request, not inserted), for a run whose turns
    so far wrote ``completion_used`` tokens: its ``max_completion_tokens`` bounds the run's tokens from now
    on (a run's bound is its total), so it is added to them."""
    taken = {name: getattr(options, name) for name in TURN_OPTIONS}
    if options.max_completion_tokens is not None:
        taken["max_completion_tokens"] = completion_used + options.max_completion_tokens
    return taken


def completion_used(steps: list[RunStepRow]) -> int:
    """The completion tokens a run's ``steps`` used, as its context counts them (a failed step's turn
    started over, and is not counted)."""
    used = [step.usage or {} for step in steps if step.status != "failed"]
    return sum(int(usage.get("completion_tokens", 0)) for usage in used)


# Runs are read detached (see ``detached``): ``engine.state`` writes the fields a transition changes.
_RUNS = table_of(RunRow)
# Every change of a run reads it FOR UPDATE first (a no-op on SQLite, whose write transactions are
# exclusive): on PostgreSQL two replicas changing one run at once (a cancel and the turn's end, two submits
# of tool outputs) then take turns, and the second sees what the first did, instead of both deciding from
# the status they read and one of them overwriting the other's.
_FOR_CHANGE = select(_RUNS).where(_RUNS.c.id == bindparam("id")).with_for_update()
_OWNED = owned(RunRow, "thread_id")
_OWNED_FOR_CHANGE = _OWNED.with_for_update()


async def get_row(
    session: AsyncSession, tenant: str, thread_id: str, run_id: str, *, for_change: bool = False
) -> RunRow:
    """The run, or OpenAI's 404; ``for_change``: locked until the transaction ends (see ``_FOR_CHANGE``)."""
    params = {"id": run_id, "thread_id": thread_id, "tenant": tenant}
    return await fetch_owned(session, RunRow, _OWNED_FOR_CHANGE if for_change else _OWNED, params, "run")


async def get_row_by_id(session: AsyncSession, run_id: str) -> RunRow | None:
    """The run, locked for a change until the transaction ends (see ``_FOR_CHANGE``)."""
    return await fetch_one(session, RunRow, _FOR_CHANGE, {"id": run_id})


_STATUS = select(_RUNS.c.status).where(_RUNS.c.id == bindparam("id"))


async def status_of(session: AsyncSession, run_id: str) -> str | None:
    """The run's status; None when there is no such run (its thread was deleted)."""
    status: str | None = (await session.execute(_STATUS, {"id": run_id})).scalar()
    return status


async def list_page(session: AsyncSession, tenant: str, thread_id: str, query: PageQuery) -> ListPage[Run]:
    scope = [RunRow.thread_id == thread_id, RunRow.tenant == tenant]
    rows, has_more = await fetch_page(session, RunRow, scope, query)
    return page_of([to_wire(row) for row in rows], has_more)


# Run steps --------------------------------------------------------------------------------------


def step_to_wire(row: RunStepRow, include_file_search_content: bool = False) -> RunStep:
    details = row.step_details
    if not include_file_search_content and details.get("type") == "tool_calls":
        details = _without_file_search_content(details)
    return RunStep.model_validate(
        {
            "id": row.id,
            "created_at": row.created_at,
            "assistant_id": row.assistant_id or NO_ASSISTANT,
            "thread_id": row.thread_id,
            "run_id": row.run_id,
            "type": row.type,
            "status": row.status,
            "step_details": details,
            "last_error": row.last_error,
            "expired_at": row.expired_at,
            "cancelled_at": row.cancelled_at,
            "failed_at": row.failed_at,
            "completed_at": row.completed_at,
            "metadata": row.meta,
            "usage": row.usage,
        }
    )


def _without_file_search_content(details: dict[str, Any]) -> dict[str, Any]:
    calls = []
    for call in details.get("tool_calls", []):
        if call.get("type") == "file_search" and call.get("file_search", {}).get("results"):
            results = [{k: v for k, v in r.items() if k != "content"} for r in call["file_search"]["results"]]
            call = {**call, "file_search": {**call["file_search"], "results": results}}
        calls.append(call)
    return {**details, "tool_calls": calls}


def new_step_row(run: RunRow, step_type: str, details: dict[str, Any]) -> RunStepRow:
    return RunStepRow(
        id=new_id("step"),
        tenant=run.tenant,
        created_at=now(),
        meta={},
        run_id=run.id,
        thread_id=run.thread_id,
        assistant_id=run.assistant_id,
        type=step_type,
        status="in_progress",
        step_details=details,
    )


async def get_step_row(session: AsyncSession, tenant: str, run_id: str, step_id: str) -> RunStepRow:
    row = await session.scalar(
        select(RunStepRow).where(
            RunStepRow.id == step_id, RunStepRow.run_id == run_id, RunStepRow.tenant == tenant
        )
    )
    if row is None:
        raise NotFoundError(f"No run step found with id '{step_id}'.", param="step_id")
    return row


_STEPS = table_of(RunStepRow)
_STEPS_OF = select(_STEPS).where(_STEPS.c.run_id == bindparam("run_id")).order_by(_STEPS.c.pk.asc())


async def steps_of(session: AsyncSession, run_id: str) -> list[RunStepRow]:
    """The run's steps in the order they were made, detached."""
    return await fetch_all(session, RunStepRow, _STEPS_OF, {"run_id": run_id})


_MESSAGES = table_of(MessageRow)
_RUN_SIDE, _STEP_SIDE, _MESSAGE_SIDE = "r_", "s_", "m_"
# A run with its steps, each with the message it wrote (if any), in one statement: a response read once its
# run has ended is one round trip to the database, not three.
_WITH_STEPS = (
    select(
        *(column.label(_RUN_SIDE + column.name) for column in _RUNS.c),
        *(column.label(_STEP_SIDE + column.name) for column in _STEPS.c),
        *(column.label(_MESSAGE_SIDE + column.name) for column in _MESSAGES.c),
    )
    .select_from(
        _RUNS.outerjoin(_STEPS, _STEPS.c.run_id == _RUNS.c.id).outerjoin(
            _MESSAGES,
            and_(
                _STEPS.c.type == "message_creation",
                _MESSAGES.c.id == _STEPS.c.step_details[("message_creation", "message_id")].as_string(),
            ),
        )
    )
    .where(
        _RUNS.c.id == bindparam("id"),
        _RUNS.c.tenant == bindparam("tenant"),
        _RUNS.c.thread_id == bindparam("thread_id"),
    )
    .order_by(_STEPS.c.pk.asc())
)


def _side(found: Mapping[Any, Any], prefix: str) -> dict[str, Any]:
    return {key.removeprefix(prefix): value for key, value in found.items() if key.startswith(prefix)}


async def get_row_with_steps(
    session: AsyncSession, tenant: str, thread_id: str, run_id: str
) -> tuple[RunRow, list[RunStepRow], list[MessageRow]]:
    """The run (or OpenAI's 404), its steps in the order they were made and the messages they wrote,
    detached: what ``get_row``, ``steps_of`` and the messages' read give, in one statement."""
    found = (
        (await session.execute(_WITH_STEPS, {"id": run_id, "tenant": tenant, "thread_id": thread_id}))
        .mappings()
        .all()
    )
    if not found:
        raise NotFoundError(f"No run found with id '{run_id}'.", param="run_id")
    run = detached(RunRow, _side(found[0], _RUN_SIDE))
    steps: list[RunStepRow] = []
    messages: list[MessageRow] = []
    for each in found:
        if each[_STEP_SIDE + "id"] is None:
            continue  # a run without steps: its one row
        steps.append(detached(RunStepRow, _side(each, _STEP_SIDE)))
        if each[_MESSAGE_SIDE + "id"] is not None:
            messages.append(detached(MessageRow, _side(each, _MESSAGE_SIDE)))
    return run, steps, messages


async def list_steps_page(
    session: AsyncSession, tenant: str, run_id: str, query: PageQuery, include_content: bool
) -> ListPage[RunStep]:
    scope = [RunStepRow.run_id == run_id, RunStepRow.tenant == tenant]
    rows, has_more = await fetch_page(session, RunStepRow, scope, query)
    return page_of([step_to_wire(row, include_content) for row in rows], has_more)


def container_of(tools: list[dict[str, Any]] | None, thread_id: str) -> str:
    """The thread whose code session a run's code runs in (its container): the run's own ``thread_id``,
    unless its code_interpreter tools entry names another (a response's ``container``,
    ``engine/response_tools.py``)."""
    for tool in tools or []:
        if tool.get("type") == "code_interpreter":
            named = (tool.get("code_interpreter") or {}).get("container_id")
            if isinstance(named, str) and named:
                return named
    return thread_id


async def tool_resource_ids(session: AsyncSession, run: RunRow, tool: str, key: str) -> list[str]:
    """``tool_resources[tool][key]`` of the run's assistant (a response's run has none), then of its thread
    (e.g. the vector store ids of file_search, the file ids of code_interpreter). A response names them per
    request: they come first, from the run's own tools entry (``engine/response_tools.py``)."""
    ids: list[str] = []
    for entry in run.tools:
        if entry.get("type") == tool:
            ids += (entry.get(tool) or {}).get(key) or []
    owners: list[tuple[type[AssistantRow] | type[ThreadRow], str]] = [(ThreadRow, run.thread_id)]
    if run.assistant_id is not None:
        owners.insert(0, (AssistantRow, run.assistant_id))
    for model, owner_id in owners:
        resources = await session.scalar(select(model.tool_resources).where(model.id == owner_id))
        ids += ((resources or {}).get(tool) or {}).get(key) or []
    return ids
