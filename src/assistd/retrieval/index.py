"""Search over vector stores' chunks: dense vectors and BM25 held in memory per store, and a weighted fusion.

Chunks live in the database (durable, one place of truth). A store's chunks are read into memory the first
time it is searched, as segments: each a range of chunk pks with its own float32 matrix and postings. When
the store changes (its ``generation`` moves) and no old chunk was removed, only the new chunks are read, as
one more segment; neighbouring segments of like size are merged, so a store that grows by many small files
is read about log(n) times over, not once per file. A removal reloads the store.

Every search reads the stores' rows, and with them their generations: a change made by any process on any
host (a file added, removed, its attributes changed) moves it, so no process searches a stale index, and
that costs no query more. Whether chunks were only added is told by the chunks at or below the index's last
pk: their count and the sum of their pks, in one query, must be what the index holds. Both matter on
PostgreSQL, where two ingestions commit in any order: one may add chunks below the last pk after the index
was read, while a removal takes as many away.

Large segments are also clustered (an inverted-file index): a query compares itself with the cluster
centres and reads only the nearest clusters' vectors, instead of every vector of the store.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from ..store.models import ChunkRow, FileRow, VectorStoreFileRow
from .keyword import KeywordIndex, bm25_idf

# Fusion weight of the keyword score; the dense score gets the rest. Chosen on bench/retrieval.py (see
# docs/benchmarks.md): with the transformer's vectors keywords only break near-ties (0.05 ranked best);
# the static model's weaker vectors gain from a larger keyword share (0.3).
KEYWORD_WEIGHT = 0.05
STATIC_KEYWORD_WEIGHT = 0.3
# How many candidates each index proposes to the fusion, at least.
CANDIDATES = 50
# Segments smaller than this are searched exhaustively; larger ones through clusters.
CLUSTERED_MIN_ROWS = 20_000
ROWS_PER_CLUSTER = 400
# Share of a segment's clusters a query reads: enough that the nearest chunks are almost always among them.
PROBE_SHARE = 0.15

Floats = npt.NDArray[np.float32]
# Bytes a str object costs beyond its characters (CPython 3.11, ASCII text).
_STR_OVERHEAD = 49


@dataclass
class Clusters:
    """Cluster centres of a segment whose rows are stored grouped by cluster: each cluster is a slice."""

    centroids: Floats  # (c, dims), unit rows
    offsets: npt.NDArray[np.int64]  # cluster c holds rows offsets[c]:offsets[c + 1]

    @staticmethod
    def assign(matrix: Floats, seed: int = 0) -> tuple[Floats, npt.NDArray[np.int64]]:
        """Centres for ``matrix`` (spherical k-means on a sample) and each row's nearest centre."""
        count = max(2, len(matrix) // ROWS_PER_CLUSTER)
        rng = np.random.default_rng(seed)
        sample = matrix[rng.choice(len(matrix), min(len(matrix), count * 40), replace=False)]
        centroids = sample[rng.choice(len(sample), count, replace=False)].copy()
        for _ in range(8):  # spherical k-means on a sample
            nearest = np.argmax(sample @ centroids.T, axis=1)
            sums = np.zeros_like(centroids)
            np.add.at(sums, nearest, sample)
            norms = np.linalg.norm(sums, axis=1, keepdims=True)
            filled = norms[:, 0] > 0
            centroids[filled] = sums[filled] / norms[filled]
        assignment = np.concatenate(
            [np.argmax(matrix[i : i + 8192] @ centroids.T, axis=1) for i in range(0, len(matrix), 8192)]
        )
        return centroids.astype(np.float32), assignment

    def slices_near(self, queries: Floats) -> list[slice]:
        probes = max(1, int(len(self.centroids) * PROBE_SHARE))
        closeness = (queries @ self.centroids.T).max(axis=0)
        nearest = np.sort(np.argpartition(-closeness, probes - 1)[:probes])
        return [slice(int(self.offsets[c]), int(self.offsets[c + 1])) for c in nearest]


@dataclass
class Segment:
    """A range of a store's chunks: rows in pk order, or grouped by cluster when clustered."""

    pks: npt.NDArray[np.int64]
    file_codes: npt.NDArray[np.int32]  # index into file_ids
    file_ids: list[str]
    matrix: Floats  # (n, dims), unit rows
    keywords: KeywordIndex  # documents in row order
    texts: list[str]  # in row order: a search's passages are read from here, not from the database
    clusters: Clusters | None = None

    @property
    def nbytes(self) -> int:
        centroids = 0 if self.clusters is None else int(self.clusters.centroids.nbytes)
        arrays = int(self.matrix.nbytes) + int(self.pks.nbytes) + int(self.file_codes.nbytes)
        texts = sum(len(text) for text in self.texts) + _STR_OVERHEAD * len(self.texts)
        return arrays + centroids + self.keywords.nbytes + texts

    def allowed(self, files: set[str] | None) -> npt.NDArray[np.bool_]:
        if files is None:
            return np.ones(len(self.pks), bool)
        codes = [code for code, file_id in enumerate(self.file_ids) if file_id in files]
        return np.isin(self.file_codes, codes)

    def dense(self, queries: Floats, allowed: npt.NDArray[np.bool_], k: int) -> list[tuple[int, float]]:
        """The ``k`` allowed rows nearest the queries, as (row, cosine)."""
        parts = self.clusters.slices_near(queries) if self.clusters is not None else [slice(0, len(self.pks))]
        if len(parts) == 1:
            rows = None
            scores = self._scores(self.matrix[parts[0]], queries)
        else:
            # Clusters are contiguous: each is scored on a view, without copying its vectors.
            rows = np.concatenate([np.arange(part.start, part.stop) for part in parts])
            scores = np.concatenate([self._scores(self.matrix[part], queries) for part in parts])
        best = top_rows(scores, allowed if rows is None else allowed[rows], k)
        return best if rows is None else [(int(rows[i]), score) for i, score in best]

    @staticmethod
    def _scores(matrix: Floats, queries: Floats) -> Floats:
        scores: Floats = matrix @ queries[0] if len(queries) == 1 else (matrix @ queries.T).max(axis=1)
        return scores

    def cosines(self, rows: Sequence[int], queries: Floats) -> Floats:
        scores: Floats = (self.matrix[list(rows)] @ queries.T).max(axis=1)
        return scores


@dataclass(frozen=True)
class StoreFile:
    """What a search shows of a file in a store, and what its filters read."""

    filename: str
    attributes: dict[str, Any]
    completed: bool


@dataclass
class StoreIndex:
    generation: int
    segments: list[Segment] = field(default_factory=list)
    # Every file of the store, read with the chunks; attribute updates move the generation too.
    files: dict[str, StoreFile] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return sum(len(segment.pks) for segment in self.segments)

    @property
    def last_pk(self) -> int:
        return int(self.segments[-1].pks.max()) if self.segments else 0

    @property
    def pk_sum(self) -> int:
        return sum(int(segment.pks.sum()) for segment in self.segments)

    @property
    def nbytes(self) -> int:
        return sum(segment.nbytes for segment in self.segments) + 500 * len(self.files)

    def keyword_scores(self, queries: Sequence[str]) -> list[Floats]:
        idf, average = bm25_idf([segment.keywords for segment in self.segments], queries)
        return [segment.keywords.scores(idf, average) for segment in self.segments]


class VectorCache:
    """Per-store indexes, least recently used dropped first once ``max_bytes`` is exceeded."""

    def __init__(self, max_bytes: int = 2 << 30) -> None:
        self._max_bytes = max_bytes
        self._stores: OrderedDict[str, StoreIndex] = OrderedDict()
        self._locks: dict[str, asyncio.Lock] = {}

    async def get(
        self, session: AsyncSession, vector_store_id: str, generation: int, dims: int
    ) -> StoreIndex:
        cached = self._stores.get(vector_store_id)
        if cached is not None and cached.generation == generation:
            self._stores.move_to_end(vector_store_id)
            return cached
        lock = self._locks.setdefault(vector_store_id, asyncio.Lock())
        async with lock:  # one load per store however many queries wait for it
            cached = self._stores.get(vector_store_id)
            if cached is None or cached.generation != generation:
                cached = await _refresh(session, vector_store_id, cached, generation, dims)
                self._stores[vector_store_id] = cached
            self._stores.move_to_end(vector_store_id)
            self._evict()
            return cached

    def _evict(self) -> None:
        total = sum(entry.nbytes for entry in self._stores.values())
        while total > self._max_bytes and len(self._stores) > 1:
            _, dropped = self._stores.popitem(last=False)
            total -= dropped.nbytes


async def _refresh(
    session: AsyncSession, store_id: str, cached: StoreIndex | None, generation: int, dims: int
) -> StoreIndex:
    files = await _files(session, store_id)
    if cached is not None and not cached.files.keys() <= files.keys():
        cached = None  # a file left the store: only reading it whole takes its chunks out
    index = await _segments(session, store_id, cached, generation, dims)
    index.files = files
    return index


async def _files(session: AsyncSession, store_id: str) -> dict[str, StoreFile]:
    rows = await session.execute(
        select(
            VectorStoreFileRow.file_id,
            FileRow.filename,
            VectorStoreFileRow.attributes,
            VectorStoreFileRow.status,
        )
        .outerjoin(FileRow, FileRow.id == VectorStoreFileRow.file_id)
        .where(VectorStoreFileRow.vector_store_id == store_id)
    )
    return {
        file_id: StoreFile(filename or "", attributes or {}, status == "completed")
        for file_id, filename, attributes, status in rows.all()
    }


async def _segments(
    session: AsyncSession, store_id: str, cached: StoreIndex | None, generation: int, dims: int
) -> StoreIndex:
    if cached is not None and cached.segments:
        kept = await session.execute(
            select(func.count(), func.coalesce(func.sum(ChunkRow.pk), 0)).where(
                ChunkRow.vector_store_id == store_id, ChunkRow.pk <= cached.last_pk
            )
        )
        count, pk_sum = kept.one()
        if (int(count), int(pk_sum)) == (cached.count, cached.pk_sum):  # only added: read just those
            index = StoreIndex(generation, list(cached.segments))
            added = await _segment(session, store_id, dims, after=index.last_pk)
            if added is not None:
                index.segments.append(added)
            while len(index.segments) > 1 and len(index.segments[-2].pks) <= 2 * len(index.segments[-1].pks):
                first = index.segments[-2]
                merged = await _segment(
                    session, store_id, dims, after=int(first.pks.min()) - 1, until=index.last_pk
                )
                index.segments[-2:] = [merged] if merged is not None else []
            return index
    whole = await _segment(session, store_id, dims, after=0)
    return StoreIndex(generation, [whole] if whole is not None else [])


async def _segment(
    session: AsyncSession, store_id: str, dims: int, *, after: int, until: int | None = None
) -> Segment | None:
    stmt = select(ChunkRow.pk, ChunkRow.file_id, ChunkRow.embedding, ChunkRow.text).where(
        ChunkRow.vector_store_id == store_id, ChunkRow.pk > after
    )
    if until is not None:
        stmt = stmt.where(ChunkRow.pk <= until)
    rows = (await session.execute(stmt.order_by(ChunkRow.pk))).all()
    if not rows:
        return None
    return await asyncio.to_thread(build_segment, rows, dims)


def build_segment(rows: Sequence[tuple[int, str, bytes, str]], dims: int) -> Segment:
    width = dims * 4
    # Chunks embedded by another model (the embedder was changed) cannot be compared: they count as zero.
    blob = b"".join(row[2] if len(row[2]) == width else bytes(width) for row in rows)
    matrix = np.frombuffer(blob, dtype=np.float32).reshape(len(rows), dims)
    clusters = None
    if len(rows) >= CLUSTERED_MIN_ROWS:
        centroids, assignment = Clusters.assign(matrix)
        order = np.argsort(assignment, kind="stable")
        offsets = np.zeros(len(centroids) + 1, np.int64)
        np.cumsum(np.bincount(assignment, minlength=len(centroids)), out=offsets[1:])
        clusters = Clusters(centroids, offsets)
        matrix = np.ascontiguousarray(matrix[order])
        rows = [rows[i] for i in order.tolist()]
    file_ids: dict[str, int] = {}
    codes = np.fromiter((file_ids.setdefault(row[1], len(file_ids)) for row in rows), np.int32, len(rows))
    pks = np.fromiter((row[0] for row in rows), np.int64, len(rows))
    texts = [row[3] for row in rows]
    return Segment(pks, codes, list(file_ids), matrix, KeywordIndex.build(texts), texts, clusters)


def top_rows(scores: Floats, mask: npt.NDArray[np.bool_], k: int) -> list[tuple[int, float]]:
    """The ``k`` best rows with a positive score that ``mask`` allows, as (row, score), best first."""
    candidates = np.flatnonzero(mask & (scores > 0))
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
