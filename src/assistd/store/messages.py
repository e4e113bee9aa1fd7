"""Message rows: what clients post and what runs write; mapped to ``protocol.Message``."""

from __future__ import annotations

from sqlalchemy import bindparam, delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from ..errors import NotFoundError
from ..ids import new_id
from ..protocol.common import DeletedObject, ListPage
from ..protocol.messages import Message, MessageCreateParams, MessageUpdateParams, content_from_param
from . import references, vector_stores
from .clock import now
from .detached import fetch_all, insert_rows, table_of
from .jsonable import dump
from .models import MessageRow
from .pagination import PageQuery, fetch_page, page_of


def to_wire(row: MessageRow) -> Message:
    return Message.model_validate(
        {
            "id": row.id,
            "created_at": row.created_at,
            "thread_id": row.thread_id,
            "status": row.status,
            "incomplete_details": row.incomplete_details,
            "completed_at": row.completed_at,
            "incomplete_at": row.incomplete_at,
            "role": row.role,
            "content": row.content,
            "assistant_id": row.assistant_id,
            "run_id": row.run_id,
            "attachments": row.attachments if row.attachments is not None else [],
            "metadata": row.meta,
        }
    )


async def insert(
    session: AsyncSession,
    tenant: str,
    thread_id: str,
    params: MessageCreateParams,
    *,
    run_id: str | None = None,
    assistant_id: str | None = None,
    at: str = "",
) -> MessageRow:
    """Add a client-written message, complete as posted (``at``: where the message is in the request body,
    e.g. ``messages[0]``, to name the param of a file it names that is not the tenant's)."""
    await references.check_message(session, tenant, params, at)
    created = now()
    row = MessageRow(
        id=new_id("msg"),
        tenant=tenant,
        thread_id=thread_id,
        created_at=created,
        role=params.role,
        content=dump(content_from_param(params.content)),
        status="completed",
        assistant_id=assistant_id,
        run_id=run_id,
        attachments=dump(params.attachments) or [],
        meta=params.metadata or {},
        completed_at=created,
    )
    await insert_rows(session, row)
    searched = [a.file_id for a in params.attachments or [] if any(t.type == "file_search" for t in a.tools)]
    if searched:
        await vector_stores.attach_to_thread(session, tenant, thread_id, searched)
    return row


def assistant_draft(tenant: str, thread_id: str, run_id: str, assistant_id: str | None) -> MessageRow:
    """The assistant message a run fills in as the model writes it (not yet added to a session)."""
    return MessageRow(
        id=new_id("msg"),
        tenant=tenant,
        thread_id=thread_id,
        created_at=now(),
        role="assistant",
        content=[],
        status="in_progress",
        assistant_id=assistant_id,
        run_id=run_id,
        attachments=[],
        meta={},
    )


async def get_row(session: AsyncSession, tenant: str, thread_id: str, message_id: str) -> MessageRow:
    row = await session.scalar(
        select(MessageRow).where(
            MessageRow.id == message_id, MessageRow.thread_id == thread_id, MessageRow.tenant == tenant
        )
    )
    if row is None:
        raise NotFoundError(f"No message found with id '{message_id}'.", param="message_id")
    return row


async def update(
    session: AsyncSession, tenant: str, thread_id: str, message_id: str, params: MessageUpdateParams
) -> Message:
    row = await get_row(session, tenant, thread_id, message_id)
    if "metadata" in params.model_fields_set:
        row.meta = params.metadata or {}
    await session.flush()
    return to_wire(row)


async def remove(session: AsyncSession, tenant: str, thread_id: str, message_id: str) -> DeletedObject:
    await get_row(session, tenant, thread_id, message_id)
    await session.execute(delete(MessageRow).where(MessageRow.id == message_id))
    return DeletedObject(id=message_id, object="thread.message.deleted")


async def list_page(
    session: AsyncSession, tenant: str, thread_id: str, query: PageQuery, run_id: str | None = None
) -> ListPage[Message]:
    scope = [MessageRow.thread_id == thread_id, MessageRow.tenant == tenant]
    # ``run_id`` narrows the page only: a cursor may be any message of the thread.
    narrowing = [] if run_id is None else [MessageRow.run_id == run_id]
    rows, has_more = await fetch_page(session, MessageRow, scope, query, narrowing=narrowing)
    return page_of([to_wire(row) for row in rows], has_more)


_MESSAGES = table_of(MessageRow)
_NEWEST_FIRST = (
    select(_MESSAGES).where(_MESSAGES.c.thread_id == bindparam("thread")).order_by(_MESSAGES.c.pk.desc())
)
_NEWEST = _NEWEST_FIRST.limit(bindparam("limit"))


async def history(session: AsyncSession, thread_id: str, limit: int | None = None) -> list[MessageRow]:
    """The thread's messages oldest first (detached); with ``limit``, only the newest ``limit`` of them."""
    if limit is None:
        rows = await fetch_all(session, MessageRow, _NEWEST_FIRST, {"thread": thread_id})
    else:
        rows = await fetch_all(session, MessageRow, _NEWEST, {"thread": thread_id, "limit": limit})
    rows.reverse()
    return rows


async def by_ids(session: AsyncSession, message_ids: list[str]) -> list[MessageRow]:
    return list((await session.scalars(select(MessageRow).where(MessageRow.id.in_(message_ids)))).all())


def text_of(row: MessageRow) -> str:
    """The text parts of a message, joined; images and other parts have no text to show."""
    return "".join(part["text"]["value"] for part in row.content if part.get("type") == "text")


_WRITTEN_BY = (
    select(_MESSAGES)
    .where(_MESSAGES.c.run_id == bindparam("run"), _MESSAGES.c.role == "assistant")
    .order_by(_MESSAGES.c.pk.asc())
)


async def written_by(session: AsyncSession, run_id: str) -> list[MessageRow]:
    """The assistant messages the run wrote, oldest first (detached)."""
    return await fetch_all(session, MessageRow, _WRITTEN_BY, {"run": run_id})
