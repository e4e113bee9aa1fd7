"""``FileStorage`` in the database: file bytes that every host reads, for deployments with no shared disk.

Bytes are kept in chunks of ``CHUNK_BYTES``, each its own row, written and read one at a time: an upload
or a download holds one chunk in memory, never the whole file, and never one transaction open for its
whole length. ``local_path`` copies the bytes to a temporary file on this host for the tools that need a
path (parsing, the code sandbox) and removes it afterwards.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import tempfile
import time
from collections.abc import AsyncIterable, AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from sqlalchemy import delete, insert, select, update

from ..storage import StoredBlob, UploadTooLarge
from .database import Database
from .models import BlobChunkRow, BlobRow

__all__ = ["CHUNK_BYTES", "DatabaseFileStorage"]

# Large enough that a 512 MB file is 2,048 rows, small enough to sit well in memory per transfer.
CHUNK_BYTES = 256 * 1024


class DatabaseFileStorage:
    def __init__(self, db: Database, scratch: Path) -> None:
        self._db = db
        self._scratch = scratch  # where local_path's temporary copies go

    async def save(self, chunks: AsyncIterable[bytes], *, max_bytes: int) -> StoredBlob:
        key = secrets.token_hex(16)
        async with self._db.write() as session:
            await session.execute(
                insert(BlobRow).values(key=key, size=0, complete=False, created_at=time.time())
            )
        digest = hashlib.sha256()
        size, n = 0, 0
        pending = bytearray()
        try:
            async for chunk in chunks:
                size += len(chunk)
                if size > max_bytes:
                    raise UploadTooLarge(max_bytes)
                digest.update(chunk)
                pending += chunk
                while len(pending) >= CHUNK_BYTES:
                    await self._write_chunk(key, n, bytes(pending[:CHUNK_BYTES]))
                    del pending[:CHUNK_BYTES]
                    n += 1
            if pending or n == 0:
                await self._write_chunk(key, n, bytes(pending))
            async with self._db.write() as session:
                await session.execute(
                    update(BlobRow)
                    .where(BlobRow.key == key)
                    .values(size=size, sha256=digest.hexdigest(), complete=True)
                )
        except BaseException:
            # Shielded: it must also run when the upload's task is being cancelled.
            await asyncio.shield(self.delete(key))
            raise
        return StoredBlob(key=key, size=size, sha256=digest.hexdigest())

    async def _write_chunk(self, key: str, n: int, data: bytes) -> None:
        async with self._db.write() as session:
            await session.execute(insert(BlobChunkRow).values(key=key, n=n, data=data))

    async def open(self, key: str) -> AsyncIterator[bytes]:
        async with self._db.read() as session:
            complete = await session.scalar(select(BlobRow.complete).where(BlobRow.key == key))
        if not complete:
            raise FileNotFoundError(f"no stored bytes for key {key!r}")
        return self._chunks(key)

    async def _chunks(self, key: str) -> AsyncIterator[bytes]:
        n = 0
        while True:
            async with self._db.read() as session:
                data = await session.scalar(
                    select(BlobChunkRow.data).where(BlobChunkRow.key == key, BlobChunkRow.n == n)
                )
            if data is None:
                return
            if data:
                yield bytes(data)
            n += 1

    @asynccontextmanager
    async def local_path(self, key: str) -> AsyncIterator[Path]:
        chunks = await self.open(key)
        await asyncio.to_thread(self._scratch.mkdir, parents=True, exist_ok=True)
        descriptor, name = await asyncio.to_thread(tempfile.mkstemp, dir=self._scratch)
        path = Path(name)
        try:
            handle = await asyncio.to_thread(os.fdopen, descriptor, "wb")
            try:
                async for chunk in chunks:
                    await asyncio.to_thread(handle.write, chunk)
            finally:
                handle.close()
            yield path
        finally:
            # Inline, not in a thread: it must also run when the task using the path is being cancelled.
            path.unlink(missing_ok=True)  # noqa: ASYNC240

    async def delete(self, key: str) -> None:
        async with self._db.write() as session:
            await session.execute(delete(BlobChunkRow).where(BlobChunkRow.key == key))
            await session.execute(delete(BlobRow).where(BlobRow.key == key))

    async def sweep(self, older_than: float) -> int:
        """Delete uploads that never completed and started before ``older_than`` (their process died)."""
        async with self._db.read() as session:
            stale = list(
                (
                    await session.scalars(
                        select(BlobRow.key).where(
                            BlobRow.complete.is_(False), BlobRow.created_at < older_than
                        )
                    )
                ).all()
            )
        for key in stale:
            await self.delete(key)
        return len(stale)
