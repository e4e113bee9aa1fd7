"""Where the bytes of uploaded files live: the ``FileStorage`` interface and its local-disk backend.

Rows in ``files`` name their bytes by an opaque ``storage_key``; nothing outside this module knows how a
key maps to a place, so another backend (object storage) can replace the local one.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
import re
import secrets
from collections.abc import AsyncIterable, AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from io import BufferedReader, BufferedWriter
from pathlib import Path
from typing import Protocol

__all__ = ["FileStorage", "LocalFileStorage", "StorageFull", "StoredBlob", "UploadTooLarge"]

# Bytes gathered before one write in a worker thread: large enough that thread hops stay rare.
_WRITE_BUFFER = 1024 * 1024
_READ_CHUNK = 256 * 1024
_KEY = re.compile(r"[0-9a-f]{32}")
# A full disk, or a full quota: what an upload meets when there is no room left for its bytes.
_NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})


@dataclass(frozen=True)
class StoredBlob:
    key: str
    size: int
    sha256: str


class UploadTooLarge(Exception):
    """The bytes given to ``save`` ran past its ``max_bytes``; nothing of them was kept."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"more than {limit} bytes")
        self.limit = limit


class StorageFull(Exception):
    """There was no room left for the bytes given to ``save``; nothing of them was kept."""


class FileStorage(Protocol):
    async def save(self, chunks: AsyncIterable[bytes], *, max_bytes: int) -> StoredBlob:
        """Store the bytes ``chunks`` yields, all or nothing; raise ``UploadTooLarge`` past ``max_bytes``,
        ``StorageFull`` when there is no room for them."""
        ...

    async def open(self, key: str) -> AsyncIterator[bytes]:
        """The stored bytes in chunks; raises ``FileNotFoundError`` (before any chunk) if there are none."""
        ...

    def local_path(self, key: str) -> AbstractAsyncContextManager[Path]:
        """A path on this machine holding the bytes while the context lasts (remote backends download)."""
        ...

    async def delete(self, key: str) -> None:
        """Forget the bytes; deleting what is already gone is not an error."""
        ...


class LocalFileStorage:
    """Files under ``root``: ``root/ab/abcdef…`` for key ``abcdef…``, written under ``root/tmp`` first.

    A file reaches its final name only complete and flushed to disk (an atomic rename), so a crash or an
    aborted upload can leave a stray file in ``tmp`` but never a half-written one under a key.
    """

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def _path(self, key: str) -> Path:
        # Keys come from our own rows, but a key that could climb out of root must never be opened.
        if not _KEY.fullmatch(key):
            raise FileNotFoundError(f"not a storage key: {key!r}")
        return self.root / key[:2] / key

    async def save(self, chunks: AsyncIterable[bytes], *, max_bytes: int) -> StoredBlob:
        key = secrets.token_hex(16)
        temp = self.root / "tmp" / f"{key}.part"
        try:
            handle = await asyncio.to_thread(_create, temp)
        except OSError as exc:
            if exc.errno in _NO_SPACE:
                raise StorageFull() from exc
            raise
        digest = hashlib.sha256()
        size = 0
        pending: list[bytes] = []
        pending_size = 0
        try:
            async for chunk in chunks:
                size += len(chunk)
                if size > max_bytes:
                    raise UploadTooLarge(max_bytes)
                pending.append(chunk)
                pending_size += len(chunk)
                if pending_size >= _WRITE_BUFFER:
                    await asyncio.to_thread(_write, handle, digest, pending)
                    pending, pending_size = [], 0
            await asyncio.to_thread(_write, handle, digest, pending)
            await asyncio.to_thread(_publish, handle, temp, self._path(key))
        except BaseException as exc:
            # Inline rather than in a thread: it must also run when this task is being cancelled. Closing
            # flushes what is buffered, which fails again on a full disk: the part file goes all the same.
            with contextlib.suppress(OSError):
                handle.close()
            temp.unlink(missing_ok=True)
            if isinstance(exc, OSError) and exc.errno in _NO_SPACE:
                raise StorageFull() from exc
            raise
        return StoredBlob(key=key, size=size, sha256=digest.hexdigest())

    async def open(self, key: str) -> AsyncIterator[bytes]:
        handle = await asyncio.to_thread(self._path(key).open, "rb")
        return _chunks_of(handle)

    @asynccontextmanager
    async def local_path(self, key: str) -> AsyncIterator[Path]:
        path = self._path(key)
        if not await asyncio.to_thread(path.is_file):
            raise FileNotFoundError(str(path))
        yield path

    async def delete(self, key: str) -> None:
        try:
            path = self._path(key)
        except FileNotFoundError:
            return
        await asyncio.to_thread(path.unlink, missing_ok=True)


def _create(temp: Path) -> BufferedWriter:
    temp.parent.mkdir(parents=True, exist_ok=True)
    return temp.open("xb")


def _write(handle: BufferedWriter, digest: hashlib._Hash, pieces: list[bytes]) -> None:
    for piece in pieces:
        digest.update(piece)
        handle.write(piece)


def _publish(handle: BufferedWriter, temp: Path, final: Path) -> None:
    handle.flush()
    os.fsync(handle.fileno())
    handle.close()
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(temp, final)
    _fsync_dir(final.parent)


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable; not every platform can open a directory, and that is fine.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


async def _chunks_of(handle: BufferedReader) -> AsyncIterator[bytes]:
    try:
        while chunk := await asyncio.to_thread(handle.read, _READ_CHUNK):
            yield chunk
    finally:
        handle.close()
