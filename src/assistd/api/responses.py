"""/v1/responses: OpenAI's Responses API, each response a run on a thread (``engine/responses.py``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from ..engine import input_tokens
from ..engine.response_replay import answer_queued, replay
from ..engine.responses import Responses
from ..protocol.responses import InputTokenCountParams, ResponseCreateParams
from ..store.pagination import PageQuery
from .deps import RunEngine, RunKey, Tenant
from .include import IncludeBrackets, IncludePlain, checked_include
from .pagination import page_query
from .render import json_response
from .response_stream import response_events, resumed_response_events
from .sse import response_stream

router = APIRouter(prefix="/v1/responses", tags=["responses"])


async def get_responses(engine: RunEngine) -> Responses:
    return Responses(engine)


Service = Annotated[Responses, Depends(get_responses)]


@router.post("")
async def create_response(
    params: ResponseCreateParams, tenant: Tenant, key: RunKey, responses: Service
) -> Response:
    # Created before answering, so that a refusal (an unknown previous response, a busy conversation) is
    # an ordinary error response, a stream's included.
    created = await responses.create(tenant, params, key_id=key)
    if params.stream:
        return response_stream(response_events(responses, created))
    if params.background:
        return json_response(await answer_queued(responses, created))
    return json_response(await responses.answer(created))


@router.get("/{response_id}")
async def retrieve_response(
    response_id: str,
    tenant: Tenant,
    engine: RunEngine,
    responses: Service,
    include: IncludeBrackets = None,
    include_plain: IncludePlain = None,
    stream: Annotated[bool, Query()] = False,
    starting_after: Annotated[int | None, Query(ge=0, le=2**31 - 1)] = None,
    # Accepted and moot, as on create: assistd's deltas carry no obfuscation padding.
    include_obfuscation: Annotated[bool | None, Query()] = None,
) -> Response:
    if stream:
        # A background response's stream again, from the event after ``starting_after``.
        replayed = await replay(engine, tenant, response_id)
        return response_stream(resumed_response_events(responses, replayed, starting_after))
    # As OpenAI: a retrieve shows what its own ``include`` asks for, whatever the create's was.
    included = checked_include(include, include_plain)
    return json_response(await responses.retrieve(tenant, response_id, included))


@router.delete("/{response_id}")
async def delete_response(response_id: str, tenant: Tenant, responses: Service) -> Response:
    return json_response(await responses.delete(tenant, response_id))


@router.post("/{response_id}/cancel")
async def cancel_response(response_id: str, tenant: Tenant, responses: Service) -> Response:
    return json_response(await responses.cancel(tenant, response_id))


@router.get("/{response_id}/input_items")
async def list_input_items(
    response_id: str,
    tenant: Tenant,
    responses: Service,
    query: Annotated[PageQuery, Depends(page_query)],
) -> Response:
    return json_response(await responses.input_items(tenant, response_id, query))


@router.post("/input_tokens")
async def count_input_tokens(params: InputTokenCountParams, tenant: Tenant, engine: RunEngine) -> Response:
    return json_response(await input_tokens.count_input_tokens(engine, tenant, params))
