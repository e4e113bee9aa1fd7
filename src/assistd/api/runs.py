"""/v1/threads/{thread_id}/runs, /v1/threads/runs and run steps."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response

from ..engine.bus import RunSubscription
from ..engine.engine import Engine
from ..engine.events import StreamEvent
from ..errors import InvalidRequestError
from ..protocol.run_steps import FILE_SEARCH_CONTENT_INCLUDE
from ..protocol.runs import (
    Run,
    RunCreateParams,
    RunUpdateParams,
    SubmitToolOutputsParams,
    ThreadAndRunCreateParams,
)
from ..protocol.threads import Thread
from ..store import runs as store
from ..store.pagination import PageQuery
from .deps import Db, PollHeaders, RunEngine, RunKey, Tenant
from .pagination import page_query
from .render import json_response
from .sse import event_stream

router = APIRouter(prefix="/v1/threads", tags=["runs"])

Include = Annotated[list[str] | None, Query(alias="include[]")]


def _include_content(include: list[str] | None) -> bool:
    for index, value in enumerate(include or []):
        if value != FILE_SEARCH_CONTENT_INCLUDE:
            raise InvalidRequestError(
                f"Invalid value for 'include': '{value}'. Supported: '{FILE_SEARCH_CONTENT_INCLUDE}'.",
                param=f"include[{index}]",
            )
    return bool(include)


async def _thread_created(thread: Thread) -> AsyncIterator[StreamEvent]:
    """create_and_run's stream opens with its new thread: the thread's event, not the run's, so the run's
    log (from thread.run.created on) does not hold it."""
    yield StreamEvent("thread.created", thread)


async def _stream(
    engine: RunEngine, listener: RunSubscription, *openings: AsyncIterator[StreamEvent]
) -> AsyncIterator[StreamEvent]:
    for opening in openings:
        async for event in opening:
            yield event
    async for event in engine.follow(listener):
        yield event


async def _run_response(
    poll: dict[str, str],
    engine: Engine,
    stream: bool | None,
    start: Callable[[RunSubscription | None], Awaitable[tuple[Run, list[AsyncIterator[StreamEvent]]]]],
) -> Response:
    """The run as JSON, or with ``stream`` its events from the first (``openings``) to the last as SSE."""
    listener = engine.bus.subscription() if stream else None
    try:
        run, openings = await start(listener)
    except BaseException:
        if listener is not None:
            listener.close()
        raise
    if listener is None:
        return json_response(run, headers=poll)
    return event_stream(_stream(engine, listener, *openings))


@router.post("/runs")
async def create_thread_and_run(
    params: ThreadAndRunCreateParams, poll: PollHeaders, tenant: Tenant, key: RunKey, engine: RunEngine
) -> Response:
    async def start(listener: RunSubscription | None) -> tuple[Run, list[AsyncIterator[StreamEvent]]]:
        thread, run = await engine.create_thread_and_run(tenant, params, listener, key_id=key)
        return run, [_thread_created(thread)]

    return await _run_response(poll, engine, params.stream, start)


@router.post("/{thread_id}/runs")
async def create_run(
    thread_id: str,
    params: RunCreateParams,
    poll: PollHeaders,
    tenant: Tenant,
    key: RunKey,
    engine: RunEngine,
    include: Include = None,
) -> Response:
    _include_content(include)

    async def start(listener: RunSubscription | None) -> tuple[Run, list[AsyncIterator[StreamEvent]]]:
        return await engine.create_run(tenant, thread_id, params, listener, key_id=key), []

    return await _run_response(poll, engine, params.stream, start)


@router.get("/{thread_id}/runs")
async def list_runs(
    thread_id: str, tenant: Tenant, engine: RunEngine, query: Annotated[PageQuery, Depends(page_query)]
) -> Response:
    return json_response(await engine.list_runs(tenant, thread_id, query))


@router.get("/{thread_id}/runs/{run_id}")
async def retrieve_run(
    thread_id: str, run_id: str, request: Request, poll: PollHeaders, tenant: Tenant, engine: RunEngine
) -> Response:
    # The SDKs' poll helpers say so in a header: their request is held until the run reaches a status that
    # ends their polling.
    hold = request.headers.get("x-stainless-poll-helper") == "true"
    run = await engine.retrieve_run(tenant, thread_id, run_id, hold=hold)
    return json_response(run, headers=poll)


@router.post("/{thread_id}/runs/{run_id}")
async def modify_run(
    thread_id: str, run_id: str, params: RunUpdateParams, poll: PollHeaders, tenant: Tenant, engine: RunEngine
) -> Response:
    run = await engine.modify_run(tenant, thread_id, run_id, params)
    return json_response(run, headers=poll)


@router.post("/{thread_id}/runs/{run_id}/cancel")
async def cancel_run(
    thread_id: str, run_id: str, poll: PollHeaders, tenant: Tenant, engine: RunEngine
) -> Response:
    return json_response(await engine.cancel_run(tenant, thread_id, run_id), headers=poll)


@router.post("/{thread_id}/runs/{run_id}/submit_tool_outputs")
async def submit_tool_outputs(
    thread_id: str,
    run_id: str,
    params: SubmitToolOutputsParams,
    poll: PollHeaders,
    tenant: Tenant,
    _key: RunKey,  # continuing a run spends tokens too: refused past the key's tokens per day
    engine: RunEngine,
) -> Response:
    async def start(listener: RunSubscription | None) -> tuple[Run, list[AsyncIterator[StreamEvent]]]:
        return await engine.submit_tool_outputs(tenant, thread_id, run_id, params, listener), []

    return await _run_response(poll, engine, params.stream, start)


@router.get("/{thread_id}/runs/{run_id}/events")
async def resume_run_stream(
    thread_id: str,
    run_id: str,
    request: Request,
    tenant: Tenant,
    engine: RunEngine,
    after: Annotated[int | None, Query(ge=0, le=2**31 - 1)] = None,
) -> Response:
    """An assistd extension: the run's stream again, from the event after ``after`` (or the SSE
    ``Last-Event-ID`` header a reconnecting client sends; 0, the default, is the whole stream), live until
    the run ends or needs the client. Any replica serves it, whichever one executes the run."""
    if after is None:
        after = _last_event_id(request.headers.get("last-event-id"))
    stream = engine.resume(tenant, thread_id, run_id, after)
    # The first event is awaited here, so that an unknown run is a 404, not a stream.
    try:
        first = await anext(stream)
    except StopAsyncIteration:
        first = None
    return event_stream(_prepended(first, stream))


async def _prepended(
    first: StreamEvent | None, rest: AsyncIterator[StreamEvent]
) -> AsyncIterator[StreamEvent]:
    if first is not None:
        yield first
    async for event in rest:
        yield event


def _last_event_id(value: str | None) -> int:
    if value is None or value == "":
        return 0
    if not value.isdigit() or int(value) > 2**31 - 1:
        raise InvalidRequestError(
            f"Invalid 'Last-Event-ID' header: {value!r}. Expected the id of an event of this stream.",
            param="Last-Event-ID",
        )
    return int(value)


@router.get("/{thread_id}/runs/{run_id}/steps")
async def list_run_steps(
    thread_id: str,
    run_id: str,
    tenant: Tenant,
    db: Db,
    query: Annotated[PageQuery, Depends(page_query)],
    include: Include = None,
) -> Response:
    content = _include_content(include)
    async with db.read() as session:
        await store.get_row(session, tenant, thread_id, run_id)
        return json_response(await store.list_steps_page(session, tenant, run_id, query, content))


@router.get("/{thread_id}/runs/{run_id}/steps/{step_id}")
async def retrieve_run_step(
    thread_id: str, run_id: str, step_id: str, tenant: Tenant, db: Db, include: Include = None
) -> Response:
    content = _include_content(include)
    async with db.read() as session:
        await store.get_row(session, tenant, thread_id, run_id)
        return json_response(
            store.step_to_wire(await store.get_step_row(session, tenant, run_id, step_id), content)
        )
