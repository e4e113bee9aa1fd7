"""File bytes kept in the database: streamed in and out in chunks, all or nothing, readable from another
engine (another host) at once."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from assistd.storage import UploadTooLarge
from assistd.store.blob_storage import CHUNK_BYTES, DatabaseFileStorage
from assistd.store.database import Database


async def _pieces(data: bytes, size: int = 10_000) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def _read(storage: DatabaseFileStorage, key: str) -> bytes:
    return b"".join([chunk async for chunk in await storage.open(key)])


def test_bytes_saved_by_one_host_are_read_back_whole_by_another(migrated_url: str, tmp_path: Path) -> None:
    data = os.urandom(3 * CHUNK_BYTES + 12345)

    async def main() -> None:
        writer_db, reader_db = Database(migrated_url), Database(migrated_url)
        try:
            writer = DatabaseFileStorage(writer_db, tmp_path / "a")
            reader = DatabaseFileStorage(reader_db, tmp_path / "b")
            blob = await writer.save(_pieces(data), max_bytes=len(data))
            assert (blob.size, blob.sha256) == (len(data), hashlib.sha256(data).hexdigest())
            assert await _read(reader, blob.key) == data
            async with reader.local_path(blob.key) as path:
                assert path.read_bytes() == data
                assert path.parent == tmp_path / "b"
            assert not path.exists()
            await reader.delete(blob.key)
            with pytest.raises(FileNotFoundError):
                await reader.open(blob.key)
        finally:
            await writer_db.close()
            await reader_db.close()

    asyncio.run(main())


def test_an_empty_file_round_trips(migrated_url: str, tmp_path: Path) -> None:
    async def main() -> None:
        db = Database(migrated_url)
        try:
            storage = DatabaseFileStorage(db, tmp_path)
            blob = await storage.save(_pieces(b""), max_bytes=10)
            assert blob.size == 0
            assert await _read(storage, blob.key) == b""
        finally:
            await db.close()

    asyncio.run(main())


def test_an_upload_past_its_limit_leaves_nothing(migrated_url: str, tmp_path: Path) -> None:
    data = os.urandom(2 * CHUNK_BYTES)

    async def main() -> None:
        db = Database(migrated_url)
        try:
            storage = DatabaseFileStorage(db, tmp_path)
            with pytest.raises(UploadTooLarge):
                await storage.save(_pieces(data), max_bytes=CHUNK_BYTES + 1)
            assert await storage.sweep(time.time() + 60) == 0  # nothing incomplete was left behind
        finally:
            await db.close()

    asyncio.run(main())


def test_an_unfinished_upload_is_invisible_and_swept(migrated_url: str, tmp_path: Path) -> None:
    async def main() -> None:
        db = Database(migrated_url)
        try:
            storage = DatabaseFileStorage(db, tmp_path)
            started = asyncio.Event()

            async def stalled() -> AsyncIterator[bytes]:
                yield os.urandom(CHUNK_BYTES)
                yield b"x"
                started.set()
                await asyncio.Event().wait()  # the client stops sending
                yield b""  # pragma: no cover

            upload = asyncio.create_task(storage.save(stalled(), max_bytes=10 * CHUNK_BYTES))
            await started.wait()
            assert await storage.sweep(time.time() - 60) == 0  # too recent to be a dead upload
            assert await storage.sweep(time.time() + 60) == 1
            upload.cancel()
            with pytest.raises(asyncio.CancelledError):
                await upload
        finally:
            await db.close()

    asyncio.run(main())
