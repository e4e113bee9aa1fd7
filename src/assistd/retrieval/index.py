"""Search over vector stores' chunks: dense vectors held in memory per store, keyword search in the database,
and a weighted fusion of the two.

Vectors live in the database (durable, one place of truth) and are read into one float32 matrix per store
the first time the store is searched after it changed (its ``generation`` moved). A query then costs one
matrix-vector product over the stores it names, not a read of every vector.
"""

from __future__ import annotations

import asyncio
import re
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from ..store.models import ChunkRow

# Fusion weight of the keyword score; the dense score gets the rest. Chosen on bench/retrieval.py: see
# docs/benchmarks.md. Keyword matches mostly break ties among passages that embed alike.
KEYWORD_WEIGHT = 0.3
# How many candidates each index proposes to the fusion, at least.
CANDIDATES = 50

_STOPWORDS = frozenset(
    [
        "a",
        "about",
        "above",
        "after",
        "again",
        "all",
        "am",
        "an",
        "and",
        "any",
        "are",
        "as",
        "at",
        "be",
        "because",
        "been",
        "before",
        "being",
        "below",
        "between",
        "both",
        "but",
        "by",
        "can",
        "could",
        "did",
        "do",
        "does",
        "doing",
        "down",
        "during",
        "each",
        "few",
        "for",
        "from",
        "further",
        "had",
        "has",
        "have",
        "having",
        "he",
        "her",
        "here",
        "hers",
        "him",
        "his",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "itself",
        "just",
        "me",
        "more",
        "most",
        "my",
        "no",
        "nor",
        "not",
        "now",
        "of",
        "off",
        "on",
        "once",
        "only",
        "or",
        "other",
        "our",
        "ours",
        "out",
        "over",
        "own",
        "same",
        "she",
        "should",
        "so",
        "some",
        "such",
        "than",
        "that",
        "the",
        "their",
        "theirs",
        "them",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "through",
        "to",
        "too",
        "under",
        "until",
        "up",
        "very",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "while",
        "who",
        "whom",
        "why",
        "will",
        "with",
        "would",
        "you",
        "your",
        "yours",
    ]
)


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

    @property
    def nbytes(self) -> int:
        return int(self.matrix.nbytes + self.pks.nbytes + self.file_codes.nbytes)


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
            select(ChunkRow.pk, ChunkRow.file_id, ChunkRow.embedding)
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
    return StoreVectors(generation, pks, codes, list(file_ids), matrix)


def dense_scores(
    vectors: StoreVectors, queries: np.ndarray, allowed: set[str] | None
) -> tuple[np.ndarray, np.ndarray]:
    """Cosine of each chunk to its nearest query, and a mask of chunks the filters allow."""
    if len(vectors.pks) == 0:
        return np.zeros(0, np.float32), np.zeros(0, bool)
    scores = (vectors.matrix @ queries.T).max(axis=1)
    if allowed is None:
        mask = np.ones(len(scores), bool)
    else:
        allowed_codes = [code for code, file_id in enumerate(vectors.file_ids) if file_id in allowed]
        mask = np.isin(vectors.file_codes, allowed_codes)
    return scores, mask


def top_dense(vectors: StoreVectors, scores: np.ndarray, mask: np.ndarray, k: int) -> list[tuple[int, float]]:
    """The ``k`` best allowed chunks as (row, cosine)."""
    candidates = np.flatnonzero(mask)
    if len(candidates) == 0:
        return []
    picked = scores[candidates]
    if len(candidates) > k:
        best = np.argpartition(-picked, k - 1)[:k]
        candidates, picked = candidates[best], picked[best]
    order = np.argsort(-picked, kind="stable")
    return [(int(candidates[i]), float(picked[i])) for i in order]


def keyword_terms(query: str) -> list[str]:
    words = re.findall(r"[^\W_]+", query.lower())
    kept = [w for w in words if w not in _STOPWORDS]
    return list(dict.fromkeys(kept or words))


async def keyword_search(
    session: AsyncSession, store_ids: Sequence[str], queries: Sequence[str], k: int
) -> dict[int, float]:
    """Chunk pk → keyword relevance (higher is better, not normalised) for the best ``k`` matches."""
    terms = list(dict.fromkeys(term for query in queries for term in keyword_terms(query)))
    if not terms or not store_ids:
        return {}
    params: dict[str, object] = {f"s{i}": store_id for i, store_id in enumerate(store_ids)}
    stores = ", ".join(f":s{i}" for i in range(len(store_ids)))
    params["k"] = k
    if session.get_bind().dialect.name == "postgresql":
        params["q"] = " | ".join(terms)
        sql = (
            "SELECT c.pk, ts_rank(c.text_search, q) AS score FROM chunks c, to_tsquery('english', :q) q "
            f"WHERE c.vector_store_id IN ({stores}) AND c.text_search @@ q ORDER BY score DESC LIMIT :k"
        )
    else:
        params["q"] = " OR ".join(f'"{term}"' for term in terms)
        # bm25() is lower for better matches; negate it so that higher is better everywhere.
        sql = (
            "SELECT c.pk, -bm25(chunks_fts) AS score FROM chunks_fts "
            "JOIN chunks c ON c.pk = chunks_fts.rowid "
            f"WHERE chunks_fts MATCH :q AND c.vector_store_id IN ({stores}) ORDER BY score DESC LIMIT :k"
        )
    rows = (await session.execute(text(sql), params)).all()
    return {int(pk): float(score) for pk, score in rows}


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
