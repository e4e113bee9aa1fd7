"""Retrieval for the search endpoint and the file_search tool: the best passages of some vector stores."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ..protocol.vector_stores import Filter, SearchMode
from ..store.database import Database
from ..store.models import ChunkRow, FileRow, VectorStoreFileRow, VectorStoreRow
from .embeddings import Embedder
from .filters import matches
from .index import CANDIDATES, StoreVectors, VectorCache, dense_scores, fuse, keyword_search, top_dense


@dataclass(frozen=True)
class Passage:
    vector_store_id: str
    file_id: str
    filename: str
    attributes: dict[str, Any]
    text: str
    score: float


class Retriever:
    def __init__(self, db: Database, embedder: Embedder, cache: VectorCache | None = None) -> None:
        self._db = db
        self.embedder = embedder
        self._cache = cache or VectorCache()

    async def search(
        self,
        stores: Sequence[VectorStoreRow],
        queries: Sequence[str],
        *,
        max_results: int,
        filters: Filter | None = None,
        score_threshold: float = 0.0,
        mode: SearchMode = "hybrid",
    ) -> list[Passage]:
        """Passages best first, each scored in [0, 1]."""
        if not stores or not queries:
            return []
        query_vectors = await self.embedder.embed(list(queries)) if mode != "keyword" else None
        pool = max(CANDIDATES, max_results * 3)
        async with self._db.read() as session:
            allowed = await _allowed_files(session, stores, filters) if filters is not None else None
            vectors = [
                await self._cache.get(session, store.id, store.generation, self.embedder.dimensions)
                for store in stores
            ]
            keyword: dict[int, float] = {}
            if mode != "dense":
                keyword = await keyword_search(session, [store.id for store in stores], queries, pool)
            dense: dict[int, float] = {}
            known: dict[int, tuple[StoreVectors, int]] = {}
            for store_vectors in vectors:
                if query_vectors is None:
                    scores, mask = np.zeros(len(store_vectors.pks), np.float32), None
                else:
                    scores, mask = dense_scores(store_vectors, query_vectors, allowed)
                    for row, cosine in top_dense(store_vectors, scores, mask, pool):
                        dense[int(store_vectors.pks[row])] = cosine
                # Keyword candidates need their cosine and their file: find their rows by pk.
                if keyword:
                    wanted = np.fromiter(keyword, np.int64, len(keyword))
                    rows = np.searchsorted(store_vectors.pks, wanted)
                    for pk, row in zip(wanted.tolist(), rows.tolist(), strict=True):
                        if row < len(store_vectors.pks) and store_vectors.pks[row] == pk:
                            known[pk] = (store_vectors, row)
                            if query_vectors is not None and (mask is None or mask[row]):
                                dense.setdefault(pk, float(scores[row]))
            keyword = {
                pk: score
                for pk, score in keyword.items()
                if pk in known and _file_allowed(known[pk], allowed)
            }
            if mode == "dense":
                ranked = {pk: max(0.0, score) for pk, score in dense.items()}
            elif mode == "keyword":
                ranked = fuse({}, keyword, keyword_weight=1.0)
            else:
                ranked = fuse(dense, keyword)
            best = sorted(
                ((pk, score) for pk, score in ranked.items() if score >= score_threshold),
                key=lambda item: (-item[1], item[0]),
            )[:max_results]
            return await _passages(session, best)


def _file_allowed(found: tuple[StoreVectors, int], allowed: set[str] | None) -> bool:
    if allowed is None:
        return True
    vectors, row = found
    return vectors.file_ids[int(vectors.file_codes[row])] in allowed


async def _allowed_files(session: AsyncSession, stores: Sequence[VectorStoreRow], rule: Filter) -> set[str]:
    rows = await session.execute(
        select(VectorStoreFileRow.file_id, VectorStoreFileRow.attributes).where(
            VectorStoreFileRow.vector_store_id.in_([store.id for store in stores]),
            VectorStoreFileRow.status == "completed",
        )
    )
    return {file_id for file_id, attributes in rows.all() if matches(rule, attributes or {})}


async def _passages(session: AsyncSession, ranked: list[tuple[int, float]]) -> list[Passage]:
    if not ranked:
        return []
    pks = [pk for pk, _ in ranked]
    chunks = {
        row.pk: row
        for row in (
            await session.execute(
                select(ChunkRow.pk, ChunkRow.vector_store_id, ChunkRow.file_id, ChunkRow.text).where(
                    ChunkRow.pk.in_(pks)
                )
            )
        ).all()
    }
    file_ids = {row.file_id for row in chunks.values()}
    names = dict(
        (await session.execute(select(FileRow.id, FileRow.filename).where(FileRow.id.in_(file_ids)))).all()
    )
    store_files = {
        (store_id, file_id): attributes
        for store_id, file_id, attributes in (
            await session.execute(
                select(
                    VectorStoreFileRow.vector_store_id,
                    VectorStoreFileRow.file_id,
                    VectorStoreFileRow.attributes,
                ).where(VectorStoreFileRow.file_id.in_(file_ids))
            )
        ).all()
    }
    passages = []
    for pk, score in ranked:
        chunk = chunks.get(pk)
        if chunk is None:  # removed since the index was read
            continue
        passages.append(
            Passage(
                vector_store_id=chunk.vector_store_id,
                file_id=chunk.file_id,
                filename=names.get(chunk.file_id, ""),
                attributes=store_files.get((chunk.vector_store_id, chunk.file_id)) or {},
                text=chunk.text,
                score=round(min(1.0, max(0.0, score)), 6),
            )
        )
    return passages
