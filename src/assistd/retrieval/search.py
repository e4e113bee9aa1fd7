"""Retrieval for the search endpoint and the file_search tool: the best passages of some vector stores."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import and_, select
from sqlalchemy.ext.asyncio import AsyncSession

from ..protocol.vector_stores import Filter, SearchMode
from ..store.database import Database
from ..store.models import ChunkRow, FileRow, VectorStoreFileRow, VectorStoreRow
from .embeddings import Embedder, StaticEmbedder
from .filters import matches
from .index import (
    CANDIDATES,
    KEYWORD_WEIGHT,
    STATIC_KEYWORD_WEIGHT,
    Floats,
    Segment,
    VectorCache,
    fuse,
    top_rows,
)


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
        session: AsyncSession | None = None,
    ) -> list[Passage]:
        """Passages best first, each scored in [0, 1]. Read in ``session`` when given (the caller's read of
        the stores), else in a read session of its own."""
        if not stores or not queries:
            return []
        if not self.embedder.dimensions:
            await self.embedder.start()  # a service's dimensions are learnt from its first answer
        # The queries are embedded (in a thread) while the indexes are read and searched by keyword.
        embedding = asyncio.ensure_future(self.embedder.embed(list(queries))) if mode != "keyword" else None
        try:
            async with self._reading(session) as reader:
                ranked = await self._rank(reader, stores, queries, embedding, filters, mode, max_results)
                best = sorted(
                    ((pk, score) for pk, score in ranked.items() if score > 0 and score >= score_threshold),
                    key=lambda item: (-item[1], item[0]),
                )[:max_results]
                return await _passages(reader, best)
        finally:
            if embedding is not None:
                _settle(embedding)

    @asynccontextmanager
    async def _reading(self, session: AsyncSession | None) -> AsyncIterator[AsyncSession]:
        if session is not None:
            yield session
        else:
            async with self._db.read() as own:
                yield own

    async def _rank(
        self,
        session: AsyncSession,
        stores: Sequence[VectorStoreRow],
        queries: Sequence[str],
        embedding: asyncio.Future[Floats] | None,
        filters: Filter | None,
        mode: SearchMode,
        max_results: int,
    ) -> dict[int, float]:
        """The candidate chunks' scores by pk: fused in ``hybrid`` mode, else the one index's."""
        pool = max(CANDIDATES, max_results * 3)
        files = await _allowed_files(session, stores, filters) if filters is not None else None
        # Each index proposes its best; the fusion sees both scores of every proposed chunk.
        proposals: list[tuple[Segment, npt.NDArray[np.bool_], Floats | None, set[int]]] = []
        for store in stores:
            index = await self._cache.get(session, store.id, store.generation, self.embedder.dimensions)
            matches = index.keyword_scores(queries) if mode != "dense" else [None] * len(index.segments)
            for segment, scores in zip(index.segments, matches, strict=True):
                allowed = segment.allowed(files)
                rows = set() if scores is None else {row for row, _ in top_rows(scores, allowed, pool)}
                proposals.append((segment, allowed, scores, rows))
        vectors = None if embedding is None else await embedding
        dense: dict[int, float] = {}
        keyword: dict[int, float] = {}
        for segment, allowed, scores, rows in proposals:
            if vectors is not None:
                rows.update(row for row, _ in segment.dense(vectors, allowed, pool))
            ordered = sorted(rows)
            if vectors is not None and ordered:
                for row, cosine in zip(ordered, segment.cosines(ordered, vectors), strict=True):
                    dense[int(segment.pks[row])] = float(cosine)
            if scores is not None:
                for row in ordered:
                    keyword[int(segment.pks[row])] = float(scores[row])
        if mode == "dense":
            return {pk: max(0.0, score) for pk, score in dense.items()}
        if mode == "keyword":
            return fuse({}, keyword, keyword_weight=1.0)
        return fuse(dense, keyword, self.keyword_weight)


def _settle(future: asyncio.Future[Floats]) -> None:
    """Cancels the embedding when the search ended without it, or marks its failure as seen."""
    if not future.done():
        future.cancel()
    elif not future.cancelled():
        future.exception()


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
    in_store = and_(
        VectorStoreFileRow.vector_store_id == ChunkRow.vector_store_id,
        VectorStoreFileRow.file_id == ChunkRow.file_id,
    )
    rows = await session.execute(
        select(
            ChunkRow.pk,
            ChunkRow.vector_store_id,
            ChunkRow.file_id,
            ChunkRow.text,
            FileRow.filename,
            VectorStoreFileRow.attributes,
        )
        .outerjoin(FileRow, FileRow.id == ChunkRow.file_id)
        .outerjoin(VectorStoreFileRow, in_store)
        .where(ChunkRow.pk.in_([pk for pk, _ in ranked]))
    )
    chunks = {row.pk: row for row in rows.all()}
    passages = []
    for pk, score in ranked:
        chunk = chunks.get(pk)
        if chunk is None:  # removed since the index was read
            continue
        passages.append(
            Passage(
                vector_store_id=chunk.vector_store_id,
                file_id=chunk.file_id,
                filename=chunk.filename or "",
                attributes=chunk.attributes or {},
                text=chunk.text,
                score=round(min(1.0, max(0.0, score)), 6),
            )
        )
    return passages
