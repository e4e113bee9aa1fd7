"""Thread rows, and the per-thread lock that allows one active run at a time."""

from __future__ import annotations

from sqlalchemy import bindparam, delete, select
from sqlalchemy import update as sql_update
from sqlalchemy.ext.asyncio import AsyncSession

from ..errors import ConflictError, NotFoundError
from ..ids import new_id
from ..protocol.common import DeletedObject, ListPage, ToolResources
from ..protocol.threads import Thread, ThreadCreateParams, ThreadUpdateParams
from . import code_sessions, messages, references, vector_stores
from .clock import now
from .detached import fetch_owned, insert_rows, owned, table_of
from .jsonable import dump
from .models import MessageRow, ResponseRow, RunJobRow, RunRow, RunStepRow, ThreadRow
from .pagination import PageQuery, fetch_page, page_of


def to_wire(row: ThreadRow) -> Thread:
    return Thread(
        id=row.id,
        created_at=row.created_at,
        tool_resources=ToolResources.model_validate(row.tool_resources or {}),
        metadata=row.meta,
    )


_THREADS = table_of(ThreadRow)
_OWNED = owned(ThreadRow)


async def read_row(session: AsyncSession, tenant: str, thread_id: str) -> ThreadRow:
    """The thread, detached (see ``detached``): to read, not to change."""
    return await fetch_owned(session, ThreadRow, _OWNED, {"id": thread_id, "tenant": tenant}, "thread")


async def get_row(session: AsyncSession, tenant: str, thread_id: str) -> ThreadRow:
    row = await session.scalar(select(ThreadRow).where(ThreadRow.id == thread_id, ThreadRow.tenant == tenant))
    if row is None:
        raise NotFoundError(f"No thread found with id '{thread_id}'.", param="thread_id")
    return row


async def create(
    session: AsyncSession,
    tenant: str,
    params: ThreadCreateParams,
    *,
    messages_at: str = "messages",
    resources_at: str = "tool_resources",
) -> Thread:
    """A thread with its messages; ``messages_at`` and ``resources_at`` say where those are in the request
    body (create_and_run nests them in ``thread``), to name the param of an id that is not the tenant's."""
    await references.check_tool_resources(session, tenant, params.tool_resources, resources_at)
    await vector_stores.create_requested_stores(session, tenant, params.tool_resources, resources_at)
    row = ThreadRow(
        id=new_id("thread"),
        tenant=tenant,
        created_at=now(),
        tool_resources=dump(params.tool_resources),
        meta=params.metadata or {},
    )
    await insert_rows(session, row)
    for index, message in enumerate(params.messages):
        await messages.insert(session, tenant, row.id, message, at=f"{messages_at}[{index}]")
    return to_wire(row)


async def update(session: AsyncSession, tenant: str, thread_id: str, params: ThreadUpdateParams) -> Thread:
    row = await get_row(session, tenant, thread_id)
    if "tool_resources" in params.model_fields_set:
        await references.check_tool_resources(session, tenant, params.tool_resources)
        await vector_stores.create_requested_stores(session, tenant, params.tool_resources)
        row.tool_resources = dump(params.tool_resources)
    if "metadata" in params.model_fields_set:
        row.meta = params.metadata or {}
    await session.flush()
    return to_wire(row)


async def remove(session: AsyncSession, tenant: str, thread_id: str) -> DeletedObject:
    await get_row(session, tenant, thread_id)
    run_ids = select(RunRow.id).where(RunRow.thread_id == thread_id).scalar_subquery()
    await session.execute(delete(RunJobRow).where(RunJobRow.run_id.in_(run_ids)))
    await session.execute(delete(RunStepRow).where(RunStepRow.thread_id == thread_id))
    await session.execute(delete(RunRow).where(RunRow.thread_id == thread_id))
    await session.execute(delete(MessageRow).where(MessageRow.thread_id == thread_id))
    # The responses that ran on it: what they were (their run, their messages) is gone.
    await session.execute(delete(ResponseRow).where(ResponseRow.thread_id == thread_id))
    await session.execute(delete(ThreadRow).where(ThreadRow.id == thread_id))
    await code_sessions.forget(session, thread_id)
    return DeletedObject(id=thread_id, object="thread.deleted")


async def list_page(session: AsyncSession, tenant: str, query: PageQuery) -> ListPage[Thread]:
    """Listing threads is an assistd extension (OpenAI had no such endpoint)."""
    rows, has_more = await fetch_page(session, ThreadRow, [ThreadRow.tenant == tenant], query)
    return page_of([to_wire(row) for row in rows], has_more)


_CLAIM = (
    sql_update(_THREADS)
    .where(_THREADS.c.id == bindparam("thread"), _THREADS.c.active_run_id.is_(None))
    .values(active_run_id=bindparam("run"))
)
_RELEASE = (
    sql_update(_THREADS)
    .where(_THREADS.c.id == bindparam("thread"), _THREADS.c.active_run_id == bindparam("run"))
    .values(active_run_id=None)
)


async def claim_for_run(session: AsyncSession, thread_id: str, run_id: str) -> None:
    """Make ``run_id`` the thread's active run, or refuse because another run is active."""
    result = await session.execute(_CLAIM, {"thread": thread_id, "run": run_id})
    if result.rowcount == 0:  # type: ignore[attr-defined]
        active = await session.scalar(select(ThreadRow.active_run_id).where(ThreadRow.id == thread_id))
        raise ConflictError(f"Thread {thread_id} already has an active run {active}.", param="thread_id")


async def release_run(session: AsyncSession, thread_id: str, run_id: str) -> None:
    await session.execute(_RELEASE, {"thread": thread_id, "run": run_id})


async def ensure_no_active_run(session: AsyncSession, row: ThreadRow) -> None:
    if row.active_run_id is not None:
        raise ConflictError(
            f"Can't add messages to {row.id} while a run {row.active_run_id} is active.", param="thread_id"
        )


_ACTIVE_RUN = select(_THREADS.c.active_run_id).where(_THREADS.c.id == bindparam("thread"))
_EXISTS = select(_THREADS.c.id).where(_THREADS.c.id == bindparam("thread"))


async def active_run_of(session: AsyncSession, thread_id: str) -> str | None:
    """The id of the run that holds the thread now, if any (None too when there is no such thread)."""
    active: str | None = (await session.execute(_ACTIVE_RUN, {"thread": thread_id})).scalar()
    return active


async def exists(session: AsyncSession, thread_id: str) -> bool:
    return (await session.execute(_EXISTS, {"thread": thread_id})).scalar() is not None
