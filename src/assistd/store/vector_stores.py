"""Vector stores, their files and file batches: rows, counts, and the wire objects they map to."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import ValidationError
from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ..errors import InvalidRequestError, NotFoundError
from ..ids import new_id
from ..protocol.common import DeletedObject, ListPage, ToolResources
from ..protocol.vector_stores import (
    MAX_FILES_PER_STORE,
    ChunkingStrategyParam,
    ExpiresAfter,
    FileCounts,
    VectorStore,
    VectorStoreCreateParams,
    VectorStoreFile,
    VectorStoreFileBatch,
    VectorStoreUpdateParams,
    resolved_chunking,
)
from . import references
from .clock import now
from .jobs import INGESTION
from .models import (
    ChunkRow,
    FileBatchRow,
    IngestJobRow,
    ThreadRow,
    VectorStoreFileRow,
    VectorStoreRow,
)
from .pagination import PageQuery, fetch_page, page_of

DAY = 86_400


def job_id(vector_store_id: str, file_id: str) -> str:
    return f"{vector_store_id}/{file_id}"


def split_job_id(job: str) -> tuple[str, str]:
    vector_store_id, _, file_id = job.partition("/")
    return vector_store_id, file_id


# Vector stores ----------------------------------------------------------------------------------


def is_expired(row: VectorStoreRow, at: int | None = None) -> bool:
    return row.expired or (row.expires_at is not None and (at or now()) >= row.expires_at)


def to_wire(row: VectorStoreRow, counts: FileCounts, usage_bytes: int) -> VectorStore:
    status = "expired" if is_expired(row) else "in_progress" if counts.in_progress else "completed"
    return VectorStore.model_validate(
        {
            "id": row.id,
            "created_at": row.created_at,
            "name": row.name or "",
            "usage_bytes": usage_bytes,
            "file_counts": counts,
            "status": status,
            "expires_after": row.expires_after,
            "expires_at": row.expires_at,
            "last_active_at": row.last_active_at,
            "metadata": row.meta,
        }
    )


async def counts_of(
    session: AsyncSession, store_ids: Iterable[str], batch_id: str | None = None
) -> tuple[dict[str, FileCounts], dict[str, int]]:
    """File counts by status and bytes used, per store (or for one batch's files)."""
    ids = list(store_ids)
    counts = {store_id: FileCounts() for store_id in ids}
    usage = dict.fromkeys(ids, 0)
    if not ids:
        return counts, usage
    stmt = select(
        VectorStoreFileRow.vector_store_id,
        VectorStoreFileRow.status,
        func.count(),
        func.coalesce(func.sum(VectorStoreFileRow.usage_bytes), 0),
    ).where(VectorStoreFileRow.vector_store_id.in_(ids))
    if batch_id is not None:
        stmt = stmt.where(VectorStoreFileRow.batch_id == batch_id)
    stmt = stmt.group_by(VectorStoreFileRow.vector_store_id, VectorStoreFileRow.status)
    for store_id, status, count, used in (await session.execute(stmt)).all():
        entry = counts[store_id]
        setattr(entry, status, getattr(entry, status) + int(count))
        entry.total += int(count)
        usage[store_id] += int(used)
    return counts, usage


async def render(session: AsyncSession, row: VectorStoreRow) -> VectorStore:
    counts, usage = await counts_of(session, [row.id])
    return to_wire(row, counts[row.id], usage[row.id])


async def get_row(session: AsyncSession, tenant: str, vector_store_id: str) -> VectorStoreRow:
    row = await session.scalar(
        select(VectorStoreRow).where(VectorStoreRow.id == vector_store_id, VectorStoreRow.tenant == tenant)
    )
    if row is None:
        raise NotFoundError(f"No vector store found with id '{vector_store_id}'.", param="vector_store_id")
    return row


def _expiry(expires_after: dict[str, Any] | None, last_active_at: int) -> int | None:
    return last_active_at + int(expires_after["days"]) * DAY if expires_after else None


async def create(
    session: AsyncSession, tenant: str, params: VectorStoreCreateParams, at: str = "file_ids"
) -> VectorStoreRow:
    """A store with ``params.file_ids`` queued for ingestion (``at``: where those are in the body)."""
    await references.require_files(session, tenant, references.indexed(params.file_ids, at))
    created = now()
    expires_after = params.expires_after.model_dump() if params.expires_after else None
    row = VectorStoreRow(
        id=new_id("vs"),
        tenant=tenant,
        created_at=created,
        meta=params.metadata or {},
        name=params.name,
        expires_after=expires_after,
        last_active_at=created,
        expires_at=_expiry(expires_after, created),
        expired=False,
        generation=0,
    )
    session.add(row)
    await session.flush()
    for file_id in dict.fromkeys(params.file_ids):
        await attach_file(session, tenant, row, file_id, None, params.chunking_strategy, param=at)
    return row


async def update_store(
    session: AsyncSession, tenant: str, vector_store_id: str, params: VectorStoreUpdateParams
) -> VectorStoreRow:
    row = await get_row(session, tenant, vector_store_id)
    if "name" in params.model_fields_set:
        row.name = params.name
    if params.metadata is not None:
        row.meta = params.metadata
    if "expires_after" in params.model_fields_set:
        row.expires_after = params.expires_after.model_dump() if params.expires_after else None
        row.expires_at = _expiry(row.expires_after, row.last_active_at or row.created_at)
    return row


# Use within this many seconds of the last recorded use is not written again: a search needs no write.
TOUCH_GRANULARITY = 60


def needs_touch(rows: Iterable[VectorStoreRow]) -> bool:
    at = now()
    return any((row.last_active_at or 0) + TOUCH_GRANULARITY <= at for row in rows)


async def touch(session: AsyncSession, rows: Iterable[VectorStoreRow]) -> None:
    """Mark stores used now, which moves their expiry forward."""
    at = now()
    for row in rows:
        row.last_active_at = at
        row.expires_at = _expiry(row.expires_after, at)


async def list_page(session: AsyncSession, tenant: str, query: PageQuery) -> ListPage[VectorStore]:
    rows, has_more = await fetch_page(session, VectorStoreRow, [VectorStoreRow.tenant == tenant], query)
    counts, usage = await counts_of(session, [row.id for row in rows])
    return page_of([to_wire(row, counts[row.id], usage[row.id]) for row in rows], has_more)


async def remove(session: AsyncSession, tenant: str, vector_store_id: str) -> DeletedObject:
    row = await get_row(session, tenant, vector_store_id)
    # In the ingestion lock order (see ``detach_file``): the store's files, their chunks, the store, the jobs.
    await session.execute(delete(VectorStoreFileRow).where(VectorStoreFileRow.vector_store_id == row.id))
    await session.execute(delete(ChunkRow).where(ChunkRow.vector_store_id == row.id))
    await session.execute(delete(FileBatchRow).where(FileBatchRow.vector_store_id == row.id))
    await session.delete(row)
    await session.flush()
    await session.execute(delete(IngestJobRow).where(IngestJobRow.job_id.startswith(f"{row.id}/")))
    return DeletedObject(id=vector_store_id, object="vector_store.deleted")


async def bump_generation(session: AsyncSession, vector_store_id: str) -> None:
    await session.execute(
        update(VectorStoreRow)
        .where(VectorStoreRow.id == vector_store_id)
        .values(generation=VectorStoreRow.generation + 1)
    )


# Vector store files ------------------------------------------------------------------------------


def file_to_wire(row: VectorStoreFileRow) -> VectorStoreFile:
    return VectorStoreFile.model_validate(
        {
            "id": row.file_id,
            "created_at": row.created_at,
            "vector_store_id": row.vector_store_id,
            "status": row.status,
            "usage_bytes": row.usage_bytes,
            "last_error": row.last_error,
            "chunking_strategy": row.chunking_strategy,
            "attributes": row.attributes or {},
        }
    )


async def attach_file(
    session: AsyncSession,
    tenant: str,
    store: VectorStoreRow,
    file_id: str,
    attributes: dict[str, Any] | None,
    chunking: ChunkingStrategyParam | None,
    *,
    batch_id: str | None = None,
    param: str = "file_id",
) -> VectorStoreFileRow:
    """Add an uploaded file to a store and queue its ingestion; a file already there is returned as is."""
    await references.require_files(session, tenant, [(file_id, param)])
    existing = await session.scalar(
        select(VectorStoreFileRow).where(
            VectorStoreFileRow.vector_store_id == store.id, VectorStoreFileRow.file_id == file_id
        )
    )
    if existing is not None:
        return existing
    count = await session.scalar(select(func.count()).where(VectorStoreFileRow.vector_store_id == store.id))
    if int(count or 0) >= MAX_FILES_PER_STORE:
        raise InvalidRequestError(
            f"A vector store can hold at most {MAX_FILES_PER_STORE} files.", param=param
        )
    row = VectorStoreFileRow(
        vector_store_id=store.id,
        file_id=file_id,
        tenant=tenant,
        created_at=now(),
        status="in_progress",
        usage_bytes=0,
        last_error=None,
        chunking_strategy=resolved_chunking(chunking),
        attributes=attributes or {},
        batch_id=batch_id,
    )
    session.add(row)
    await INGESTION.enqueue(session, job_id(store.id, file_id))
    await session.flush()
    return row


async def get_file_row(
    session: AsyncSession, tenant: str, vector_store_id: str, file_id: str
) -> VectorStoreFileRow:
    row = await session.scalar(
        select(VectorStoreFileRow).where(
            VectorStoreFileRow.vector_store_id == vector_store_id,
            VectorStoreFileRow.file_id == file_id,
            VectorStoreFileRow.tenant == tenant,
        )
    )
    if row is None:
        raise NotFoundError(
            f"No file found with id '{file_id}' in vector store '{vector_store_id}'.", param="file_id"
        )
    return row


async def list_files(
    session: AsyncSession,
    vector_store_id: str,
    query: PageQuery,
    status: str | None,
    batch_id: str | None = None,
) -> ListPage[VectorStoreFile]:
    # The collection is the store's files, or a batch's: a cursor must be one of them. ``status`` (the
    # ``filter`` parameter) narrows the page only.
    scope = [VectorStoreFileRow.vector_store_id == vector_store_id]
    if batch_id is not None:
        scope.append(VectorStoreFileRow.batch_id == batch_id)
    narrowing = [] if status is None else [VectorStoreFileRow.status == status]
    rows, has_more = await fetch_page(session, VectorStoreFileRow, scope, query, narrowing=narrowing)
    return page_of([file_to_wire(row) for row in rows], has_more)


# The ingestion lock order. A file's ingestion completes (retrieval/ingest.py) by writing, in one
# transaction: the store's file row, its chunks, the store's generation, then the ingest job. Whatever else
# writes several of these takes them in the same order: taken the other way round (the job first), removing
# a file while its ingestion completed deadlocked on PostgreSQL, which broke the deadlock by failing the
# removal (a 503).


async def detach_file(session: AsyncSession, row: VectorStoreFileRow) -> None:
    """Remove a file from a store with its chunks and any pending ingestion (the file itself stays)."""
    vector_store_id, file_id = row.vector_store_id, row.file_id
    await session.delete(row)
    await session.flush()
    await session.execute(
        delete(ChunkRow).where(ChunkRow.vector_store_id == vector_store_id, ChunkRow.file_id == file_id)
    )
    await bump_generation(session, vector_store_id)
    await INGESTION.finish(session, job_id(vector_store_id, file_id))


async def detach_everywhere(session: AsyncSession, tenant: str, file_id: str) -> None:
    """A deleted file leaves every store that held it."""
    rows = (
        await session.scalars(
            select(VectorStoreFileRow).where(
                VectorStoreFileRow.file_id == file_id, VectorStoreFileRow.tenant == tenant
            )
        )
    ).all()
    for row in rows:
        await detach_file(session, row)


# File batches -----------------------------------------------------------------------------------


def batch_to_wire(row: FileBatchRow, counts: FileCounts) -> VectorStoreFileBatch:
    if row.cancelled:
        status = "cancelled"
    elif counts.in_progress:
        status = "in_progress"
    elif counts.total and counts.failed == counts.total:
        status = "failed"
    else:
        status = "completed"
    return VectorStoreFileBatch.model_validate(
        {
            "id": row.id,
            "created_at": row.created_at,
            "vector_store_id": row.vector_store_id,
            "status": status,
            "file_counts": counts,
        }
    )


async def render_batch(session: AsyncSession, row: FileBatchRow) -> VectorStoreFileBatch:
    counts, _ = await counts_of(session, [row.vector_store_id], batch_id=row.id)
    return batch_to_wire(row, counts[row.vector_store_id])


async def create_batch(session: AsyncSession, tenant: str, store: VectorStoreRow) -> FileBatchRow:
    row = FileBatchRow(
        id=new_id("vsfb"), vector_store_id=store.id, tenant=tenant, created_at=now(), cancelled=False
    )
    session.add(row)
    await session.flush()
    return row


async def get_batch(session: AsyncSession, tenant: str, vector_store_id: str, batch_id: str) -> FileBatchRow:
    row = await session.scalar(
        select(FileBatchRow).where(
            FileBatchRow.id == batch_id,
            FileBatchRow.vector_store_id == vector_store_id,
            FileBatchRow.tenant == tenant,
        )
    )
    if row is None:
        raise NotFoundError(f"No file batch found with id '{batch_id}'.", param="batch_id")
    return row


async def cancel_batch(session: AsyncSession, row: FileBatchRow) -> None:
    """Files of the batch not yet ingested end ``cancelled``; those done stay."""
    pending = (
        await session.scalars(
            select(VectorStoreFileRow).where(
                VectorStoreFileRow.batch_id == row.id, VectorStoreFileRow.status == "in_progress"
            )
        )
    ).all()
    for file in pending:
        file.status = "cancelled"
        await INGESTION.finish(session, job_id(file.vector_store_id, file.file_id))
    row.cancelled = True


def deleted_file(file_id: str) -> DeletedObject:
    return DeletedObject(id=file_id, object="vector_store.file.deleted")


# Stores made on a client's behalf ---------------------------------------------------------------

# Stores made for a thread's attachments expire after a week unused, as OpenAI's do.
THREAD_STORE_EXPIRY = ExpiresAfter(anchor="last_active_at", days=7)


async def attach_to_thread(session: AsyncSession, tenant: str, thread_id: str, file_ids: list[str]) -> None:
    """Files attached to a message for file_search go into the thread's store, made when it has none."""
    thread = await session.scalar(
        select(ThreadRow).where(ThreadRow.id == thread_id, ThreadRow.tenant == tenant)
    )
    if thread is None or not file_ids:
        return
    resources = dict(thread.tool_resources or {})
    search = dict(resources.get("file_search") or {})
    known = list(search.get("vector_store_ids") or [])
    target = None
    if known:
        target = await session.scalar(
            select(VectorStoreRow).where(VectorStoreRow.id == known[0], VectorStoreRow.tenant == tenant)
        )
    if target is None:
        target = await create(
            session,
            tenant,
            VectorStoreCreateParams(name=f"Files of {thread_id}", expires_after=THREAD_STORE_EXPIRY),
        )
        search["vector_store_ids"] = [target.id]
        resources["file_search"] = search
        thread.tool_resources = resources
    for file_id in file_ids:
        await attach_file(session, tenant, target, file_id, None, None, param="attachments")


async def create_requested_stores(
    session: AsyncSession, tenant: str, resources: ToolResources | None, at: str = "tool_resources"
) -> None:
    """``tool_resources.file_search.vector_stores``: stores to make from files, named by their new ids
    (``at``: where ``resources`` are in the request body)."""
    search = resources.file_search if resources is not None else None
    if search is None or not search.vector_stores:
        return
    for index, spec in enumerate(search.vector_stores):
        try:
            params = VectorStoreCreateParams.model_validate(spec)
        except ValidationError as exc:
            raise InvalidRequestError(
                f"Invalid vector store in '{at}.file_search.vector_stores[{index}]'.",
                param=f"{at}.file_search.vector_stores[{index}]",
            ) from exc
        row = await create(session, tenant, params, at=f"{at}.file_search.vector_stores[{index}].file_ids")
        search.vector_store_ids.append(row.id)
    search.vector_stores = None
