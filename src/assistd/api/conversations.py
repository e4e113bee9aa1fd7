"""/v1/conversations and /v1/conversations/{conversation_id}/items: threads through the Conversations API."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Query, Response

from ..protocol.conversations import ConversationCreateParams, ConversationUpdateParams, ItemCreateParams
from ..store import conversations as store
from .deps import Db, RunEngine, Tenant
from .include import IncludeBrackets, IncludePlain, checked_include
from .render import json_response

router = APIRouter(prefix="/v1/conversations", tags=["conversations"])


def _json(value: dict[str, Any]) -> Response:
    # An item is a plain dict (protocol.items), not a wire model.
    return Response(content=json.dumps(value, ensure_ascii=False), media_type="application/json")


@router.post("")
async def create_conversation(
    tenant: Tenant, db: Db, params: Annotated[ConversationCreateParams | None, Body()] = None
) -> Response:
    params = params or ConversationCreateParams()
    items = store.parse_items(params.items or [], "items")
    async with db.write() as session:
        return json_response(await store.create(session, tenant, items, params.metadata))


@router.get("/{conversation_id}")
async def retrieve_conversation(conversation_id: str, tenant: Tenant, db: Db) -> Response:
    async with db.read() as session:
        return json_response(store.to_wire(await store.get_row(session, tenant, conversation_id)))


@router.post("/{conversation_id}")
async def update_conversation(
    conversation_id: str, tenant: Tenant, db: Db, params: Annotated[ConversationUpdateParams, Body()]
) -> Response:
    async with db.write() as session:
        return json_response(await store.update(session, tenant, conversation_id, params.metadata))


@router.delete("/{conversation_id}")
async def delete_conversation(conversation_id: str, tenant: Tenant, db: Db, engine: RunEngine) -> Response:
    async with db.write() as session:
        deleted = await store.remove(session, tenant, conversation_id)
    # The thread's code session and its files go with it, as on DELETE /v1/threads.
    await engine.sandbox.forget(conversation_id)
    return json_response(deleted)


@router.post("/{conversation_id}/items")
async def create_items(
    conversation_id: str,
    params: ItemCreateParams,
    tenant: Tenant,
    db: Db,
    include: IncludeBrackets = None,
    include_plain: IncludePlain = None,
) -> Response:
    checked_include(include, include_plain)
    items = store.parse_items(params.items, "items")
    async with db.write() as session:
        return json_response(await store.add_items(session, tenant, conversation_id, items))


@router.get("/{conversation_id}/items")
async def list_items(
    conversation_id: str,
    tenant: Tenant,
    db: Db,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    order: Annotated[Literal["asc", "desc"], Query()] = "desc",
    after: Annotated[str | None, Query()] = None,
    include: IncludeBrackets = None,
    include_plain: IncludePlain = None,
) -> Response:
    included = checked_include(include, include_plain)
    async with db.read() as session:
        page = await store.list_items(
            session, tenant, conversation_id, limit=limit, order=order, after=after or None, include=included
        )
    return json_response(page)


@router.get("/{conversation_id}/items/{item_id}")
async def retrieve_item(
    conversation_id: str,
    item_id: str,
    tenant: Tenant,
    db: Db,
    include: IncludeBrackets = None,
    include_plain: IncludePlain = None,
) -> Response:
    included = checked_include(include, include_plain)
    async with db.read() as session:
        return _json(await store.get_item(session, tenant, conversation_id, item_id, included))


@router.delete("/{conversation_id}/items/{item_id}")
async def delete_item(conversation_id: str, item_id: str, tenant: Tenant, db: Db) -> Response:
    async with db.write() as session:
        return json_response(await store.delete_item(session, tenant, conversation_id, item_id))
