"""/v1/vector_stores: stores, their files, file batches and search."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Literal, Protocol, TypeVar

from fastapi import APIRouter, Depends, Query, Response

from ..errors import InvalidRequestError
from ..protocol.vector_stores import (
    FileBatchCreateParams,
    FileContentPage,
    FileContentPart,
    SearchResult,
    SearchResultsPage,
    VectorStoreCreateParams,
    VectorStoreFile,
    VectorStoreFileBatch,
    VectorStoreFileCreateParams,
    VectorStoreFileUpdateParams,
    VectorStoreSearchParams,
    VectorStoreUpdateParams,
)
from ..retrieval.parsing import ParseError, extract_text
from ..retrieval.search import Passage
from ..store import files as file_store
from ..store import vector_stores as store
from ..store.pagination import PageQuery
from .deps import Db, Ingestion, LongPoll, PollHeaders, Search, Storage, Tenant
from .pagination import page_query
from .render import json_response

router = APIRouter(prefix="/v1/vector_stores", tags=["vector_stores"])

Status = Literal["in_progress", "completed", "failed", "cancelled"]


Page = Annotated[PageQuery, Depends(page_query)]


class _WithStatus(Protocol):
    @property
    def status(self) -> str: ...


W = TypeVar("W", bound=_WithStatus)


async def _long_poll(seconds: float, load: Callable[[], Awaitable[W]]) -> W:
    """The object ``load`` reads; read again while its ingestion is in progress, up to ``seconds``."""
    wire = await load()
    deadline = time.monotonic() + seconds
    while wire.status == "in_progress" and time.monotonic() < deadline:
        # Polled, not notified: ingestion may run in another process.
        await asyncio.sleep(0.02)
        wire = await load()
    return wire


# Vector stores ----------------------------------------------------------------------------------


@router.post("")
async def create_vector_store(
    params: VectorStoreCreateParams, tenant: Tenant, db: Db, ingestion: Ingestion
) -> Response:
    async with db.write() as session:
        row = await store.create(session, tenant, params)
        wire = await store.render(session, row)
    ingestion.wake()
    return json_response(wire)


@router.get("")
async def list_vector_stores(tenant: Tenant, db: Db, query: Page) -> Response:
    async with db.read() as session:
        return json_response(await store.list_page(session, tenant, query))


@router.get("/{vector_store_id}")
async def retrieve_vector_store(vector_store_id: str, tenant: Tenant, db: Db) -> Response:
    async with db.read() as session:
        return json_response(
            await store.render(session, await store.get_row(session, tenant, vector_store_id))
        )


@router.post("/{vector_store_id}")
async def modify_vector_store(
    vector_store_id: str, params: VectorStoreUpdateParams, tenant: Tenant, db: Db
) -> Response:
    async with db.write() as session:
        row = await store.update_store(session, tenant, vector_store_id, params)
        return json_response(await store.render(session, row))


@router.delete("/{vector_store_id}")
async def delete_vector_store(vector_store_id: str, tenant: Tenant, db: Db) -> Response:
    async with db.write() as session:
        return json_response(await store.remove(session, tenant, vector_store_id))


@router.post("/{vector_store_id}/search")
async def search_vector_store(
    vector_store_id: str, params: VectorStoreSearchParams, tenant: Tenant, db: Db, retriever: Search
) -> Response:
    options = params.ranking_options
    async with retriever.query(params.queries(), params.search_mode) as query, db.read() as session:
        row = await store.get_row(session, tenant, vector_store_id)
        if store.is_expired(row):
            raise InvalidRequestError(
                f"Vector store '{vector_store_id}' has expired.", param="vector_store_id"
            )
        passages = await retriever.search(
            [row],
            query,
            max_results=params.max_num_results,
            filters=params.filters,
            score_threshold=options.score_threshold if options else 0.0,
            session=session,
        )
    if store.needs_touch([row]):
        async with db.write() as session:
            await store.touch(session, [await store.get_row(session, tenant, vector_store_id)])
    return json_response(SearchResultsPage(search_query=params.queries(), data=group_by_file(passages)))


def group_by_file(passages: list[Passage]) -> list[SearchResult]:
    """One result per file, best file first, carrying its matching passages best first."""
    results: dict[str, SearchResult] = {}
    for passage in passages:
        result = results.get(passage.file_id)
        if result is None:
            results[passage.file_id] = SearchResult(
                file_id=passage.file_id,
                filename=passage.filename,
                score=passage.score,
                attributes=passage.attributes,
                content=[FileContentPart(text=passage.text)],
            )
        else:
            result.content.append(FileContentPart(text=passage.text))
    return list(results.values())


# Vector store files ------------------------------------------------------------------------------


@router.post("/{vector_store_id}/files")
async def create_vector_store_file(
    vector_store_id: str,
    params: VectorStoreFileCreateParams,
    tenant: Tenant,
    db: Db,
    ingestion: Ingestion,
) -> Response:
    async with db.write() as session:
        row = await store.get_row(session, tenant, vector_store_id)
        member = await store.attach_file(
            session, tenant, row, params.file_id, params.attributes, params.chunking_strategy
        )
        wire = store.file_to_wire(member)
    ingestion.wake()
    return json_response(wire)


@router.get("/{vector_store_id}/files")
async def list_vector_store_files(
    vector_store_id: str,
    tenant: Tenant,
    db: Db,
    query: Page,
    status: Annotated[Status | None, Query(alias="filter")] = None,
) -> Response:
    async with db.read() as session:
        await store.get_row(session, tenant, vector_store_id)
        return json_response(await store.list_files(session, vector_store_id, query, status))


@router.get("/{vector_store_id}/files/{file_id}")
async def retrieve_vector_store_file(
    vector_store_id: str, file_id: str, tenant: Tenant, db: Db, wait: LongPoll, headers: PollHeaders
) -> Response:
    async def load() -> VectorStoreFile:
        async with db.read() as session:
            return store.file_to_wire(await store.get_file_row(session, tenant, vector_store_id, file_id))

    return json_response(await _long_poll(wait, load), headers=headers)


@router.post("/{vector_store_id}/files/{file_id}")
async def update_vector_store_file(
    vector_store_id: str, file_id: str, params: VectorStoreFileUpdateParams, tenant: Tenant, db: Db
) -> Response:
    async with db.write() as session:
        member = await store.get_file_row(session, tenant, vector_store_id, file_id)
        member.attributes = params.attributes or {}
        # Searches read attributes from the store's index in memory, which a new generation refreshes.
        await store.bump_generation(session, vector_store_id)
        return json_response(store.file_to_wire(member))


@router.delete("/{vector_store_id}/files/{file_id}")
async def delete_vector_store_file(vector_store_id: str, file_id: str, tenant: Tenant, db: Db) -> Response:
    async with db.write() as session:
        member = await store.get_file_row(session, tenant, vector_store_id, file_id)
        await store.detach_file(session, member)
    return json_response(store.deleted_file(file_id))


@router.get("/{vector_store_id}/files/{file_id}/content")
async def vector_store_file_content(
    vector_store_id: str, file_id: str, tenant: Tenant, db: Db, storage: Storage
) -> Response:
    """The file's text as ingestion parsed it (parsed again: chunks overlap, so they don't add up to it)."""
    async with db.read() as session:
        await store.get_file_row(session, tenant, vector_store_id, file_id)
        file = await file_store.get_row(session, tenant, file_id)
    try:
        async with storage.local_path(file.storage_key) as path:
            text = await asyncio.to_thread(extract_text, path, file.filename)
    except ParseError as exc:
        raise InvalidRequestError(str(exc), param="file_id") from exc
    return json_response(FileContentPage(data=[FileContentPart(text=text)]))


# File batches -----------------------------------------------------------------------------------


@router.post("/{vector_store_id}/file_batches")
async def create_file_batch(
    vector_store_id: str, params: FileBatchCreateParams, tenant: Tenant, db: Db, ingestion: Ingestion
) -> Response:
    async with db.write() as session:
        row = await store.get_row(session, tenant, vector_store_id)
        batch = await store.create_batch(session, tenant, row)
        # The param names the id itself: ``file_ids[2]``, or ``files[2].file_id``.
        field = "files[{}].file_id" if params.files is not None else "file_ids[{}]"
        for index, entry in enumerate(params.entries()):
            await store.attach_file(
                session,
                tenant,
                row,
                entry.file_id,
                entry.attributes,
                entry.chunking_strategy,
                batch_id=batch.id,
                param=field.format(index),
            )
        wire = await store.render_batch(session, batch)
    ingestion.wake()
    return json_response(wire)


@router.get("/{vector_store_id}/file_batches/{batch_id}")
async def retrieve_file_batch(
    vector_store_id: str, batch_id: str, tenant: Tenant, db: Db, wait: LongPoll, headers: PollHeaders
) -> Response:
    async def load() -> VectorStoreFileBatch:
        async with db.read() as session:
            return await store.render_batch(
                session, await store.get_batch(session, tenant, vector_store_id, batch_id)
            )

    return json_response(await _long_poll(wait, load), headers=headers)


@router.post("/{vector_store_id}/file_batches/{batch_id}/cancel")
async def cancel_file_batch(vector_store_id: str, batch_id: str, tenant: Tenant, db: Db) -> Response:
    async with db.write() as session:
        batch = await store.get_batch(session, tenant, vector_store_id, batch_id)
        await store.cancel_batch(session, batch)
        return json_response(await store.render_batch(session, batch))


@router.get("/{vector_store_id}/file_batches/{batch_id}/files")
async def list_file_batch_files(
    vector_store_id: str,
    batch_id: str,
    tenant: Tenant,
    db: Db,
    query: Page,
    status: Annotated[Status | None, Query(alias="filter")] = None,
) -> Response:
    async with db.read() as session:
        await store.get_batch(session, tenant, vector_store_id, batch_id)
        return json_response(await store.list_files(session, vector_store_id, query, status, batch_id))
