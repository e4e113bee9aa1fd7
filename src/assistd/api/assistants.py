"""/v1/assistants"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response

from ..protocol.assistants import AssistantCreateParams, AssistantUpdateParams
from ..store import assistants as store
from ..store.pagination import PageQuery
from .deps import Db, Providers, Tenant
from .pagination import page_query
from .render import json_response

router = APIRouter(prefix="/v1/assistants", tags=["assistants"])


@router.post("")
async def create_assistant(
    params: AssistantCreateParams, tenant: Tenant, db: Db, providers: Providers
) -> Response:
    if params.model is None:
        params = params.model_copy(update={"model": await providers.require_default_model()})
    async with db.write() as session:
        return json_response(await store.create(session, tenant, params))


@router.get("")
async def list_assistants(
    tenant: Tenant, db: Db, query: Annotated[PageQuery, Depends(page_query)]
) -> Response:
    async with db.read() as session:
        return json_response(await store.list_page(session, tenant, query))


@router.get("/{assistant_id}")
async def retrieve_assistant(assistant_id: str, tenant: Tenant, db: Db) -> Response:
    async with db.read() as session:
        return json_response(store.to_wire(await store.get_row(session, tenant, assistant_id)))


@router.post("/{assistant_id}")
async def modify_assistant(
    assistant_id: str, params: AssistantUpdateParams, tenant: Tenant, db: Db
) -> Response:
    async with db.write() as session:
        return json_response(await store.update(session, tenant, assistant_id, params))


@router.delete("/{assistant_id}")
async def delete_assistant(assistant_id: str, tenant: Tenant, db: Db) -> Response:
    async with db.write() as session:
        return json_response(await store.remove(session, tenant, assistant_id))
