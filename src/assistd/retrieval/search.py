"""Retrieval for the search endpoint and the file_search tool: the best passages of some vector stores."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ..protocol.vector_stores import Filter, SearchMode
from ..store.database import Database
from ..store.models import ChunkRow, FileRow, VectorStoreFileRow, VectorStoreRow
from .embeddings import Embedder, StaticEmbedder
from .filters import matches
from .index import CANDIDATES, KEYWORD_WEIGHT, STATIC_KEYWORD_WEIGHT, VectorCache, fuse, top_rows


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
        static = isinstance(embedder, StaticEmbedder)
        self.keyword_weight = STATIC_KEYWORD_WEIGHT if static else KEYWORD_WEIGHT

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
        if not self.embedder.dimensions:
            await self.embedder.start()  # a service's dimensions are learnt from its first answer
        query_vectors = await self.embedder.embed(list(queries)) if mode != "keyword" else None
        pool = max(CANDIDATES, max_results * 3)
        dense: dict[int, float] = {}
        keyword: dict[int, float] = {}
        async with self._db.read() as session:
            files = await _allowed_files(session, stores, filters) if filters is not None else None
            for store in stores:
                index = await self._cache.get(session, store.id, store.generation, self.embedder.dimensions)
                matches = index.keyword_scores(queries) if mode != "dense" else None
                for number, segment in enumerate(index.segments):
                    allowed = segment.allowed(files)
                    # Each index proposes its best; the fusion sees both scores of every proposed chunk.
                    rows: set[int] = set()
                    if query_vectors is not None:
                        rows.update(row for row, _ in segment.dense(query_vectors, allowed, pool))
                    if matches is not None:
                        rows.update(row for row, _ in top_rows(matches[number], allowed, pool))
                    ordered = sorted(rows)
                    if query_vectors is not None and ordered:
                        for row, cosine in zip(ordered, segment.cosines(ordered, query_vectors), strict=True):
                            dense[int(segment.pks[row])] = float(cosine)
                    if matches is not None:
                        for row in ordered:
                            keyword[int(segment.pks[row])] = float(matches[number][row])
            if mode == "dense":
                ranked = {pk: max(0.0, score) for pk, score in dense.items()}
            elif mode == "keyword":
                ranked = fuse({}, keyword, keyword_weight=1.0)
            else:
                ranked = fuse(dense, keyword, self.keyword_weight)
            best = sorted(
                ((pk, score) for pk, score in ranked.items() if score > 0 and score >= score_threshold),
                key=lambda item: (-item[1], item[0]),
            )[:max_results]
            return await _passages(session, best)


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
