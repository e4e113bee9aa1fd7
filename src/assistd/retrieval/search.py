"""Retrieval for the search endpoint and the file_search tool: the best passages of some vector stores."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy.ext.asyncio import AsyncSession

from ..protocol.vector_stores import Filter, SearchMode
from ..store.database import Database
from ..store.models import VectorStoreRow
from .embeddings import Embedder, StaticEmbedder
from .filters import matches
from .index import (
    CANDIDATES,
    KEYWORD_WEIGHT,
    STATIC_KEYWORD_WEIGHT,
    Floats,
    Segment,
    StoreIndex,
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


@dataclass(frozen=True)
class Query:
    """A search's query texts and, unless it searches by keyword only, their embedding under way."""

    texts: list[str]
    mode: SearchMode
    vectors: asyncio.Future[Floats] | None


class Retriever:
    def __init__(self, db: Database, embedder: Embedder, cache: VectorCache | None = None) -> None:
        self._db = db
        self.embedder = embedder
        self._cache = cache or VectorCache()
        static = isinstance(embedder, StaticEmbedder)
        self.keyword_weight = STATIC_KEYWORD_WEIGHT if static else KEYWORD_WEIGHT

    @asynccontextmanager
    async def query(self, texts: Sequence[str], mode: SearchMode = "hybrid") -> AsyncIterator[Query]:
        """Starts embedding ``texts`` (in a thread) at once, so the caller's reads overlap it; the block
        searches with the query. The embedding is cancelled if the block ends without it."""
        if texts and not self.embedder.dimensions:
            # A service's dimensions are learnt from its first answer; the indexes are read with them.
            await self.embedder.start()
        vectors = (
            asyncio.ensure_future(self.embedder.embed(list(texts))) if mode != "keyword" and texts else None
        )
        try:
            yield Query(list(texts), mode, vectors)
        finally:
            if vectors is not None:
                _settle(vectors)

    async def search(
        self,
        stores: Sequence[VectorStoreRow],
        query: Query,
        *,
        max_results: int,
        filters: Filter | None = None,
        score_threshold: float = 0.0,
        session: AsyncSession | None = None,
    ) -> list[Passage]:
        """Passages best first, each scored in [0, 1]. A store whose index is not in memory yet is read in
        ``session`` when given (the caller's read of the stores), else in a read session of its own."""
        if not stores or not query.texts:
            return []
        async with self._reading(session) as reader:
            indexes = {
                store.id: await self._cache.get(reader, store.id, store.generation, self.embedder.dimensions)
                for store in stores
            }
        found = await self._rank(indexes, query, filters, max_results)
        best = sorted(
            (item for item in found.items() if item[1][0] > 0 and item[1][0] >= score_threshold),
            key=lambda item: (-item[1][0], item[0]),
        )[:max_results]
        passages = []
        for _, (score, (store_id, segment, row)) in best:
            file_id = segment.file_ids[segment.file_codes[row]]
            file = indexes[store_id].files.get(file_id)
            if file is None:  # removed while the index was read
                continue
            text = segment.texts[row]
            score = round(min(1.0, max(0.0, score)), 6)
            passages.append(Passage(store_id, file_id, file.filename, file.attributes, text, score))
        return passages

    @asynccontextmanager
    async def _reading(self, session: AsyncSession | None) -> AsyncIterator[AsyncSession]:
        if session is not None:
            yield session
        else:
            async with self._db.read() as own:
                yield own

    async def _rank(
        self, indexes: dict[str, StoreIndex], query: Query, filters: Filter | None, max_results: int
    ) -> dict[int, tuple[float, _Place]]:
        """The candidate chunks by pk, with their score (fused in ``hybrid`` mode, else the one index's) and
        where they are."""
        mode = query.mode
        pool = max(CANDIDATES, max_results * 3)
        # Each index proposes its best; the fusion sees both scores of every proposed chunk.
        proposals: list[tuple[str, Segment, npt.NDArray[np.bool_], Floats | None, set[int]]] = []
        for store_id, index in indexes.items():
            files = None if filters is None else _allowed_files(index, filters)
            by_segment = (
                index.keyword_scores(query.texts) if mode != "dense" else [None] * len(index.segments)
            )
            for segment, scores in zip(index.segments, by_segment, strict=True):
                allowed = segment.allowed(files)
                rows = set() if scores is None else {row for row, _ in top_rows(scores, allowed, pool)}
                proposals.append((store_id, segment, allowed, scores, rows))
        vectors = None if query.vectors is None else await query.vectors
        dense: dict[int, float] = {}
        keyword: dict[int, float] = {}
        places: dict[int, _Place] = {}
        for store_id, segment, allowed, scores, rows in proposals:
            if vectors is not None:
                rows.update(row for row, _ in segment.dense(vectors, allowed, pool))
            ordered = sorted(rows)
            pks = [int(segment.pks[row]) for row in ordered]
            places.update((pk, (store_id, segment, row)) for pk, row in zip(pks, ordered, strict=True))
            if vectors is not None and ordered:
                dense.update(zip(pks, segment.cosines(ordered, vectors).tolist(), strict=True))
            if scores is not None:
                keyword.update(zip(pks, scores[ordered].tolist(), strict=True))
        if mode == "dense":
            ranked = {pk: max(0.0, score) for pk, score in dense.items()}
        elif mode == "keyword":
            ranked = fuse({}, keyword, keyword_weight=1.0)
        else:
            ranked = fuse(dense, keyword, self.keyword_weight)
        return {pk: (score, places[pk]) for pk, score in ranked.items()}


# A chunk's place in memory: its store, its segment and its row there.
_Place = tuple[str, Segment, int]


def _settle(future: asyncio.Future[Floats]) -> None:
    """Cancels the embedding when the search ended without it, or marks its failure as seen."""
    if not future.done():
        future.cancel()
    elif not future.cancelled():
        future.exception()


def _allowed_files(index: StoreIndex, rule: Filter) -> set[str]:
    return {
        file_id for file_id, file in index.files.items() if file.completed and matches(rule, file.attributes)
    }
