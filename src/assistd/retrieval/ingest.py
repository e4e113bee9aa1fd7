"""Ingestion of one vector store file: parse, chunk, embed (through the cache), store the chunks.

The file's status moves from ``in_progress`` to ``completed`` or ``failed`` with a conditional UPDATE, so a
file cancelled or removed meanwhile is left alone and its chunks are never written.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Sequence

import numpy as np
from sqlalchemy import delete, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from ..storage import FileStorage
from ..store import vector_stores as store
from ..store.database import Database
from ..store.jobs import INGESTION
from ..store.models import ChunkRow, EmbeddingCacheRow, FileRow, VectorStoreFileRow
from .chunking import chunk_text
from .embeddings import Embedder
from .parsing import ParseError, extract_text

log = logging.getLogger(__name__)

# Rows per statement when reading the cache or writing chunks: well under every backend's parameter limit.
BATCH = 500
EMBED_BATCH = 256


class Ingestor:
    def __init__(self, db: Database, storage: FileStorage, embedder: Embedder) -> None:
        self._db = db
        self._storage = storage
        self._embedder = embedder

    async def ingest(self, vector_store_id: str, file_id: str) -> None:
        async with self._db.read() as session:
            member = await session.scalar(
                select(VectorStoreFileRow).where(
                    VectorStoreFileRow.vector_store_id == vector_store_id,
                    VectorStoreFileRow.file_id == file_id,
                )
            )
            file = await session.scalar(select(FileRow).where(FileRow.id == file_id))
        if member is None or member.status != "in_progress":
            await self._drop_job(vector_store_id, file_id)
            return
        if file is None:
            await self.fail(vector_store_id, file_id, "invalid_file", "The file was deleted.")
            return
        strategy = member.chunking_strategy["static"]
        try:
            async with self._storage.local_path(file.storage_key) as path:
                text = await asyncio.to_thread(extract_text, path, file.filename)
        except ParseError as exc:
            code = "unsupported_file" if "nsupported" in str(exc) else "invalid_file"
            await self.fail(vector_store_id, file_id, code, str(exc))
            return
        except FileNotFoundError:
            await self.fail(vector_store_id, file_id, "invalid_file", "The file's content is missing.")
            return
        chunks = await asyncio.to_thread(
            chunk_text,
            text,
            self._embedder.tokenizer,
            strategy["max_chunk_size_tokens"],
            strategy["chunk_overlap_tokens"],
        )
        vectors = await self._embeddings([chunk.text for chunk in chunks])
        rows = [
            {
                "vector_store_id": vector_store_id,
                "file_id": file_id,
                "seq": seq,
                "text": chunk.text,
                "embedding": vector.astype(np.float32).tobytes(),
            }
            for seq, (chunk, vector) in enumerate(zip(chunks, vectors, strict=True))
        ]
        usage = sum(len(row["text"].encode()) + len(row["embedding"]) for row in rows)
        async with self._db.write() as session:
            if not await _set_status(session, vector_store_id, file_id, "completed", usage_bytes=usage):
                await INGESTION.finish(session, store.job_id(vector_store_id, file_id))
                return
            await session.execute(
                delete(ChunkRow).where(
                    ChunkRow.vector_store_id == vector_store_id, ChunkRow.file_id == file_id
                )
            )
            for start in range(0, len(rows), BATCH):
                await session.execute(insert(ChunkRow), rows[start : start + BATCH])
            await store.bump_generation(session, vector_store_id)
            await INGESTION.finish(session, store.job_id(vector_store_id, file_id))

    async def fail(self, vector_store_id: str, file_id: str, code: str, message: str) -> None:
        async with self._db.write() as session:
            await _set_status(
                session, vector_store_id, file_id, "failed", last_error={"code": code, "message": message}
            )
            await INGESTION.finish(session, store.job_id(vector_store_id, file_id))

    async def _drop_job(self, vector_store_id: str, file_id: str) -> None:
        async with self._db.write() as session:
            await INGESTION.finish(session, store.job_id(vector_store_id, file_id))

    async def _embeddings(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors for ``texts``, embedding only those the cache has not seen with this embedder."""
        if not self._embedder.dimensions:
            await self._embedder.start()  # a service's dimensions are learnt from its first answer
        dims = self._embedder.dimensions
        keys = [hashlib.sha256(f"{self._embedder.name}\n{text}".encode()).hexdigest() for text in texts]
        known: dict[str, bytes] = {}
        async with self._db.read() as session:
            unique = list(dict.fromkeys(keys))
            for start in range(0, len(unique), BATCH):
                found = await session.execute(
                    select(EmbeddingCacheRow.key, EmbeddingCacheRow.embedding).where(
                        EmbeddingCacheRow.key.in_(unique[start : start + BATCH])
                    )
                )
                known.update({key: blob for key, blob in found.all() if len(blob) == dims * 4})
        missing = [i for i, key in enumerate(keys) if key not in known]
        fresh: list[dict[str, object]] = []
        for start in range(0, len(missing), EMBED_BATCH):
            batch = missing[start : start + EMBED_BATCH]
            vectors = await self._embedder.embed([texts[i] for i in batch])
            for i, vector in zip(batch, vectors, strict=True):
                if keys[i] not in known:
                    known[keys[i]] = vector.astype(np.float32).tobytes()
                    fresh.append({"key": keys[i], "embedding": known[keys[i]]})
        if fresh:
            async with self._db.write() as session:
                for start in range(0, len(fresh), BATCH):
                    await _insert_ignoring_duplicates(session, fresh[start : start + BATCH])
        if not keys:
            return np.zeros((0, dims), np.float32)
        return np.frombuffer(b"".join(known[key] for key in keys), np.float32).reshape(len(keys), dims)


async def _insert_ignoring_duplicates(session: AsyncSession, rows: list[dict[str, object]]) -> None:
    # Two workers may embed the same text at once; the second insert must not fail the file.
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    await session.execute(dialect.insert(EmbeddingCacheRow).on_conflict_do_nothing(), rows)


async def _set_status(
    session: AsyncSession, vector_store_id: str, file_id: str, status: str, **values: object
) -> bool:
    result = await session.execute(
        update(VectorStoreFileRow)
        .where(
            VectorStoreFileRow.vector_store_id == vector_store_id,
            VectorStoreFileRow.file_id == file_id,
            VectorStoreFileRow.status == "in_progress",
        )
        .values(status=status, **values)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]
