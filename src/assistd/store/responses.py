"""Response rows (``/v1/responses``), and the thread a response continues from an earlier one."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlalchemy import bindparam, delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from ..errors import InvalidRequestError
from ..ids import new_id
from ..protocol.common import ListPage
from ..protocol.messages import Message
from . import threads as thread_store
from .clock import now
from .detached import fetch_one, fetch_owned, insert_rows, owned
from .messages import to_wire as message_to_wire
from .models import MessageRow, ResponseRow, RunRow, ThreadRow
from .pagination import PageQuery, fetch_page

_OWNED = owned(ResponseRow)


def new_row(
    tenant: str,
    run_id: str,
    thread_id: str,
    *,
    conversation_id: str | None,
    previous_response_id: str | None,
    request: dict[str, Any],
    metadata: dict[str, str],
    input_message_ids: list[str],
) -> ResponseRow:
    return ResponseRow(
        id=new_id("resp"),
        tenant=tenant,
        created_at=now(),
        meta=metadata,
        run_id=run_id,
        thread_id=thread_id,
        conversation_id=conversation_id,
        previous_response_id=previous_response_id,
        request=request,
        input_message_ids=input_message_ids,
    )


async def insert(session: AsyncSession, row: ResponseRow) -> None:
    await insert_rows(session, row)


async def get_row(session: AsyncSession, tenant: str, response_id: str) -> ResponseRow:
    """The stored response, detached, or OpenAI's 404."""
    return await fetch_owned(session, ResponseRow, _OWNED, {"id": response_id, "tenant": tenant}, "response")


async def previous_row(session: AsyncSession, tenant: str, response_id: str) -> ResponseRow:
    """The response a new one continues, or the 400 OpenAI answers for one it does not know."""
    row = await fetch_one(session, ResponseRow, _OWNED, {"id": response_id, "tenant": tenant})
    if row is None:
        raise InvalidRequestError(
            f"Previous response with id '{response_id}' not found.",
            param="previous_response_id",
            code="previous_response_not_found",
        )
    return row


async def is_response_run(session: AsyncSession, run_id: str) -> bool:
    """Whether ``run_id`` is the run of a stored response (a response made with a prompt has an assistant,
    so its run's ``assistant_id`` does not tell it from an Assistants API run)."""
    found = await session.execute(select(ResponseRow.id).where(ResponseRow.run_id == run_id).limit(1))
    return found.first() is not None


async def remove(session: AsyncSession, tenant: str, response_id: str) -> None:
    """Delete the response's record. Its thread, messages and run stay: a later response of the chain may
    share that thread (``continuation``), and a conversation's are the conversation's."""
    await get_row(session, tenant, response_id)
    await session.execute(delete(ResponseRow).where(ResponseRow.id == response_id))


async def input_items_page(
    session: AsyncSession, row: ResponseRow, query: PageQuery
) -> tuple[list[Message], bool]:
    """A page of the messages that were the response's input, as messages (the caller makes them items)."""
    scope = [MessageRow.thread_id == row.thread_id, MessageRow.id.in_(row.input_message_ids or [""])]
    rows, has_more = await fetch_page(session, MessageRow, scope, query)
    return [message_to_wire(message) for message in rows], has_more


def page(items: list[dict[str, Any]], has_more: bool) -> ListPage[Any]:
    return ListPage(
        data=items,
        first_id=items[0]["id"] if items else None,
        last_id=items[-1]["id"] if items else None,
        has_more=has_more,
    )


# Continuing a chain -------------------------------------------------------------------------------

_LAST_RUN = (
    select(RunRow.id).where(RunRow.thread_id == bindparam("thread")).order_by(RunRow.pk.desc()).limit(1)
)
_LAST_MESSAGE = (
    select(MessageRow.id, MessageRow.run_id)
    .where(MessageRow.thread_id == bindparam("thread"))
    .order_by(MessageRow.pk.desc())
    .limit(1)
)


async def can_continue_in_place(session: AsyncSession, previous: ResponseRow) -> bool:
    """Whether a response after ``previous`` may go on in ``previous``'s own thread: the thread is the
    response's own (not a conversation), and nothing came after ``previous`` there (no later run, no later
    message), so it holds exactly ``previous``'s context. A second response after the same ``previous`` (a
    fork) finds the first one's run there and gets a copy instead."""
    if previous.conversation_id is not None:
        return False
    params = {"thread": previous.thread_id}
    if (await session.execute(_LAST_RUN, params)).scalar() != previous.run_id:
        return False
    last = (await session.execute(_LAST_MESSAGE, params)).first()
    return last is None or last.run_id == previous.run_id or last.id in (previous.input_message_ids or [])


async def copy_context(session: AsyncSession, tenant: str, previous: ResponseRow) -> str:
    """A new thread holding ``previous``'s context: the messages of its thread up to its last input or
    output message, copied (new ids, no run: they are context, not any run's output). Its id."""
    own = [*(previous.input_message_ids or [])]
    last_pk = await session.scalar(
        select(func.max(MessageRow.pk)).where(
            MessageRow.thread_id == previous.thread_id,
            (MessageRow.run_id == previous.run_id) | MessageRow.id.in_(own or [""]),
        )
    )
    thread = new_thread(tenant)
    await insert_rows(session, thread)
    if last_pk is None:
        return thread.id
    rows = (
        await session.scalars(
            select(MessageRow)
            .where(MessageRow.thread_id == previous.thread_id, MessageRow.pk <= last_pk)
            .order_by(MessageRow.pk.asc())
        )
    ).all()
    created = now()
    copies = [
        MessageRow(
            id=new_id("msg"),
            tenant=tenant,
            thread_id=thread.id,
            created_at=created,
            role=row.role,
            content=row.content,
            status=row.status,
            assistant_id=row.assistant_id,
            run_id=None,
            attachments=row.attachments,
            incomplete_details=row.incomplete_details,
            completed_at=row.completed_at,
            incomplete_at=row.incomplete_at,
            meta=row.meta,
        )
        for row in rows
    ]
    await insert_rows(session, *copies)
    return thread.id


def new_thread(tenant: str) -> ThreadRow:
    """The thread of a response of its own (neither conversation nor previous response)."""
    return ThreadRow(id=new_id("thread"), tenant=tenant, created_at=now(), tool_resources=None, meta={})


# Retention ----------------------------------------------------------------------------------------


# Responses one pruning transaction deletes at most.
PRUNE_BATCH = 500


async def prune(
    session: AsyncSession, older_than: int, terminal: Collection[str], limit: int = PRUNE_BATCH
) -> int:
    """Delete the stored responses created before ``older_than`` (Unix seconds) whose run has ended (its
    status is in ``terminal``) or is gone, at most ``limit`` of them; how many went. A response's thread of
    its own (not a conversation) goes with it once no stored response is left on it (a chain shares one
    thread: the oldest responses go first, the thread with the last) and no run is active there."""
    rows = (
        await session.execute(
            select(ResponseRow.id, ResponseRow.tenant, ResponseRow.thread_id, ResponseRow.conversation_id)
            .outerjoin(RunRow, RunRow.id == ResponseRow.run_id)
            .where(ResponseRow.created_at < older_than, or_(RunRow.id.is_(None), RunRow.status.in_(terminal)))
            .order_by(ResponseRow.created_at)
            .limit(limit)
        )
    ).all()
    if not rows:
        return 0
    await session.execute(delete(ResponseRow).where(ResponseRow.id.in_([row.id for row in rows])))
    own = sorted({(row.tenant, row.thread_id) for row in rows if row.conversation_id is None})
    for tenant, thread_id in own:
        kept = await session.scalar(select(ResponseRow.id).where(ResponseRow.thread_id == thread_id).limit(1))
        free = await session.scalar(
            select(ThreadRow.id).where(ThreadRow.id == thread_id, ThreadRow.active_run_id.is_(None))
        )
        if kept is None and free is not None:
            await thread_store.remove(session, tenant, thread_id)
    return len(rows)
