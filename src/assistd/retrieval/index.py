"""Search over vector stores' chunks: dense vectors and a BM25 keyword index held in memory per store, and a
weighted fusion of the two.

Chunks live in the database (durable, one place of truth) and are read into one float32 matrix and one
keyword index per store the first time the store is searched after it changed (its ``generation`` moved). A
query then costs one matrix-vector product and a few posting lists over the stores it names, not a read of
every vector.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ..store.models import ChunkRow
from .keyword import KeywordIndex

# Fusion weight of the keyword score; the dense score gets the rest. Chosen on bench/retrieval.py: see
# docs/benchmarks.md. Keyword matches mostly break ties among passages that embed alike.
KEYWORD_WEIGHT = 0.3
# How many candidates each index proposes to the fusion, at least.
CANDIDATES = 50


@dataclass(frozen=True)
class Hit:
    chunk_pk: int
    vector_store_id: str
    file_id: str
    score: float


@dataclass
class StoreVectors:
    generation: int
    pks: np.ndarray  # int64, ascending
    file_codes: np.ndarray  # int32 index into file_ids
    file_ids: list[str]
    matrix: np.ndarray  # (n, dims) float32, rows unit length
    keywords: KeywordIndex  # documents in the order of the matrix rows

    @property
    def nbytes(self) -> int:
        return int(self.matrix.nbytes + self.pks.nbytes + self.file_codes.nbytes + self.keywords.nbytes)


class VectorCache:
    """Per-store matrices, least recently used dropped first once ``max_bytes`` is exceeded."""

    def __init__(self, max_bytes: int = 1 << 30) -> None:
        self._max_bytes = max_bytes
        self._stores: OrderedDict[str, StoreVectors] = OrderedDict()
        self._locks: dict[str, asyncio.Lock] = {}

    async def get(
        self, session: AsyncSession, vector_store_id: str, generation: int, dims: int
    ) -> StoreVectors:
        cached = self._stores.get(vector_store_id)
        if cached is not None and cached.generation == generation:
            self._stores.move_to_end(vector_store_id)
            return cached
        lock = self._locks.setdefault(vector_store_id, asyncio.Lock())
        async with lock:  # one load per store however many queries wait for it
            cached = self._stores.get(vector_store_id)
            if cached is not None and cached.generation == generation:
                return cached
            loaded = await _load(session, vector_store_id, generation, dims)
            self._stores[vector_store_id] = loaded
            self._stores.move_to_end(vector_store_id)
            self._evict()
            return loaded

    def _evict(self) -> None:
        total = sum(entry.nbytes for entry in self._stores.values())
        while total > self._max_bytes and len(self._stores) > 1:
            _, dropped = self._stores.popitem(last=False)
            total -= dropped.nbytes


async def _load(session: AsyncSession, vector_store_id: str, generation: int, dims: int) -> StoreVectors:
    rows = (
        await session.execute(
            select(ChunkRow.pk, ChunkRow.file_id, ChunkRow.embedding, ChunkRow.text)
            .where(ChunkRow.vector_store_id == vector_store_id)
            .order_by(ChunkRow.pk)
        )
    ).all()
    width = dims * 4
    # Chunks embedded by another model (the embedder was changed) cannot be compared: leave them out.
    rows = [row for row in rows if len(row[2]) == width]
    file_ids: dict[str, int] = {}
    codes = np.fromiter((file_ids.setdefault(row[1], len(file_ids)) for row in rows), np.int32, len(rows))
    pks = np.fromiter((row[0] for row in rows), np.int64, len(rows))
    matrix = np.frombuffer(b"".join(row[2] for row in rows), dtype=np.float32).reshape(len(rows), dims)
    keywords = await asyncio.to_thread(KeywordIndex.build, [row[3] for row in rows])
    return StoreVectors(generation, pks, codes, list(file_ids), matrix, keywords)


def dense_scores(vectors: StoreVectors, queries: np.ndarray) -> np.ndarray:
    """Cosine of each chunk to its nearest query."""
    scores: np.ndarray = (vectors.matrix @ queries.T).max(axis=1)
    return scores


def allowed_rows(vectors: StoreVectors, allowed: set[str] | None) -> np.ndarray:
    """A mask of the chunks whose files the filters allow."""
    if allowed is None:
        return np.ones(len(vectors.pks), bool)
    codes = [code for code, file_id in enumerate(vectors.file_ids) if file_id in allowed]
    mask: np.ndarray = np.isin(vectors.file_codes, codes)
    return mask


def top_rows(scores: np.ndarray, mask: np.ndarray, k: int) -> list[tuple[int, float]]:
    """The ``k`` best allowed rows by ``scores``, as (row, score), best first."""
    candidates = np.flatnonzero(mask)
    if len(candidates) == 0:
        return []
    picked = scores[candidates]
    if len(candidates) > k:
        best = np.argpartition(-picked, k - 1)[:k]
        candidates, picked = candidates[best], picked[best]
    order = np.argsort(-picked, kind="stable")
    return [(int(candidates[i]), float(picked[i])) for i in order]


def fuse(
    dense: dict[int, float], keyword: dict[int, float], keyword_weight: float = KEYWORD_WEIGHT
) -> dict[int, float]:
    """Weighted sum of the cosine (clipped at 0) and the keyword score scaled to the best keyword match."""
    best = max(keyword.values(), default=0.0)
    fused: dict[int, float] = {}
    for pk in dense.keys() | keyword.keys():
        keyword_part = keyword.get(pk, 0.0) / best if best > 0 else 0.0
        fused[pk] = (1 - keyword_weight) * max(0.0, dense.get(pk, 0.0)) + keyword_weight * keyword_part
    return fused
