"""Assistant rows: create, read, modify, delete, list; mapped to ``protocol.Assistant``."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from ..errors import NotFoundError
from ..ids import new_id
from ..protocol.assistants import Assistant, AssistantCreateParams, AssistantUpdateParams
from ..protocol.common import DeletedObject, ListPage
from . import references, vector_stores
from .clock import now
from .detached import fetch_owned, owned
from .jsonable import dump
from .models import AssistantRow
from .pagination import PageQuery, fetch_page, page_of


def to_wire(row: AssistantRow) -> Assistant:
    return Assistant.model_validate(
        {
            "id": row.id,
            "created_at": row.created_at,
            "name": row.name,
            "description": row.description,
            "model": row.model,
            "instructions": row.instructions,
            "tools": row.tools,
            "tool_resources": row.tool_resources or {},
            "metadata": row.meta,
            "temperature": row.temperature,
            "top_p": row.top_p,
            "response_format": row.response_format if row.response_format is not None else "auto",
            "reasoning_effort": row.reasoning_effort,
        }
    )


_OWNED = owned(AssistantRow)


async def read_row(session: AsyncSession, tenant: str, assistant_id: str) -> AssistantRow:
    """The assistant, detached (see ``detached``): to read, not to change."""
    params = {"id": assistant_id, "tenant": tenant}
    return await fetch_owned(session, AssistantRow, _OWNED, params, "assistant")


async def get_row(session: AsyncSession, tenant: str, assistant_id: str) -> AssistantRow:
    row = await session.scalar(
        select(AssistantRow).where(AssistantRow.id == assistant_id, AssistantRow.tenant == tenant)
    )
    if row is None:
        raise NotFoundError(f"No assistant found with id '{assistant_id}'.", param="assistant_id")
    return row


async def create(session: AsyncSession, tenant: str, params: AssistantCreateParams) -> Assistant:
    await references.check_tool_resources(session, tenant, params.tool_resources)
    await vector_stores.create_requested_stores(session, tenant, params.tool_resources)
    row = AssistantRow(
        id=new_id("asst"),
        tenant=tenant,
        created_at=now(),
        name=params.name,
        description=params.description,
        model=params.model or "",
        instructions=params.instructions,
        tools=dump(params.tools),
        tool_resources=dump(params.tool_resources),
        meta=params.metadata or {},
        temperature=params.temperature,
        top_p=params.top_p,
        response_format=dump(params.response_format),
        reasoning_effort=params.reasoning_effort,
    )
    session.add(row)
    await session.flush()
    return to_wire(row)


async def update(
    session: AsyncSession, tenant: str, assistant_id: str, params: AssistantUpdateParams
) -> Assistant:
    row = await get_row(session, tenant, assistant_id)
    given = params.model_fields_set
    for field in ("name", "description", "instructions", "temperature", "top_p", "reasoning_effort"):
        if field in given:
            setattr(row, field, getattr(params, field))
    if "model" in given and params.model is not None:
        row.model = params.model
    if "tools" in given:
        row.tools = dump(params.tools or [])
    if "tool_resources" in given:
        await references.check_tool_resources(session, tenant, params.tool_resources)
        await vector_stores.create_requested_stores(session, tenant, params.tool_resources)
        row.tool_resources = dump(params.tool_resources)
    if "response_format" in given:
        row.response_format = dump(params.response_format)
    if "metadata" in given:
        row.meta = params.metadata or {}
    await session.flush()
    return to_wire(row)


async def remove(session: AsyncSession, tenant: str, assistant_id: str) -> DeletedObject:
    await get_row(session, tenant, assistant_id)
    await session.execute(delete(AssistantRow).where(AssistantRow.id == assistant_id))
    return DeletedObject(id=assistant_id, object="assistant.deleted")


async def list_page(session: AsyncSession, tenant: str, query: PageQuery) -> ListPage[Assistant]:
    rows, has_more = await fetch_page(session, AssistantRow, [AssistantRow.tenant == tenant], query)
    return page_of([to_wire(row) for row in rows], has_more)
