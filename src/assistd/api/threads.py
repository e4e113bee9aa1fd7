"""/v1/threads"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Response

from ..protocol.threads import ThreadCreateParams, ThreadUpdateParams
from ..store import threads as store
from ..store.pagination import PageQuery
from .deps import Db, RunEngine, Tenant
from .pagination import page_query
from .render import json_response

router = APIRouter(prefix="/v1/threads", tags=["threads"])


@router.post("")
async def create_thread(
    tenant: Tenant, db: Db, params: Annotated[ThreadCreateParams | None, Body()] = None
) -> Response:
    async with db.write() as session:
        return json_response(await store.create(session, tenant, params or ThreadCreateParams()))


@router.get("")
async def list_threads(tenant: Tenant, db: Db, query: Annotated[PageQuery, Depends(page_query)]) -> Response:
    """An assistd extension: OpenAI had no way to list threads."""
    async with db.read() as session:
        return json_response(await store.list_page(session, tenant, query))


@router.get("/{thread_id}")
async def retrieve_thread(thread_id: str, tenant: Tenant, db: Db) -> Response:
    async with db.read() as session:
        return json_response(store.to_wire(await store.get_row(session, tenant, thread_id)))


@router.post("/{thread_id}")
async def modify_thread(
    thread_id: str, tenant: Tenant, db: Db, params: Annotated[ThreadUpdateParams | None, Body()] = None
) -> Response:
    async with db.write() as session:
        return json_response(await store.update(session, tenant, thread_id, params or ThreadUpdateParams()))


@router.delete("/{thread_id}")
async def delete_thread(thread_id: str, tenant: Tenant, db: Db, engine: RunEngine) -> Response:
    async with db.write() as session:
        deleted = await store.remove(session, tenant, thread_id)
    # The thread's code session and its files go with it.
    await engine.sandbox.forget(thread_id)
    return json_response(deleted)
