"""/v1/threads/{thread_id}/messages"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Query, Response

from ..protocol.messages import MessageCreateParams, MessageUpdateParams
from ..store import messages as store
from ..store import threads as thread_store
from ..store.pagination import PageQuery
from .deps import Db, Tenant
from .pagination import page_query
from .render import json_response

router = APIRouter(prefix="/v1/threads/{thread_id}/messages", tags=["messages"])


@router.post("")
async def create_message(thread_id: str, params: MessageCreateParams, tenant: Tenant, db: Db) -> Response:
    async with db.write() as session:
        thread = await thread_store.get_row(session, tenant, thread_id)
        await thread_store.ensure_no_active_run(session, thread)
        row = await store.insert(session, tenant, thread_id, params)
        return json_response(store.to_wire(row))


@router.get("")
async def list_messages(
    thread_id: str,
    tenant: Tenant,
    db: Db,
    query: Annotated[PageQuery, Depends(page_query)],
    run_id: Annotated[str | None, Query()] = None,
) -> Response:
    async with db.read() as session:
        await thread_store.get_row(session, tenant, thread_id)
        return json_response(await store.list_page(session, tenant, thread_id, query, run_id))


@router.get("/{message_id}")
async def retrieve_message(thread_id: str, message_id: str, tenant: Tenant, db: Db) -> Response:
    async with db.read() as session:
        return json_response(store.to_wire(await store.get_row(session, tenant, thread_id, message_id)))


@router.post("/{message_id}")
async def modify_message(
    thread_id: str,
    message_id: str,
    tenant: Tenant,
    db: Db,
    params: Annotated[MessageUpdateParams | None, Body()] = None,
) -> Response:
    async with db.write() as session:
        return json_response(
            await store.update(session, tenant, thread_id, message_id, params or MessageUpdateParams())
        )


@router.delete("/{message_id}")
async def delete_message(thread_id: str, message_id: str, tenant: Tenant, db: Db) -> Response:
    async with db.write() as session:
        return json_response(await store.remove(session, tenant, thread_id, message_id))
