"""A SQLite connection for SQLAlchemy's aiosqlite dialect that runs each call on the event loop's thread.

aiosqlite hands every call to a thread of its own and waits for the answer: three or four thread round trips
per statement, which cost about twenty times more CPU than the (mostly sub-millisecond) SQLite calls they
carry. Here the calls run inline, behind the same awaitable interface, so the dialect cannot tell.

What must not happen inline is waiting for SQLite's lock while another process holds it: that would stall
every request of this one. The connection therefore has no busy timeout, and a statement that meets a busy
database is retried after an asyncio sleep, which leaves the loop free meanwhile. Writers of this process
never meet each other here: ``Database`` gives them turns on an asyncio lock.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

# How long a statement keeps retrying a database that another process holds, as busy_timeout did.
BUSY_PATIENCE_SECONDS = 30.0
_FIRST_PAUSE_SECONDS = 0.0005
_LONGEST_PAUSE_SECONDS = 0.004


def _is_busy(error: sqlite3.OperationalError) -> bool:
    return getattr(error, "sqlite_errorcode", None) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


async def _when_free(call: Callable[..., Any], *args: Any) -> None:
    """``call(*args)``, retried while another process holds the database (a busy statement did nothing)."""
    deadline = None
    pause = _FIRST_PAUSE_SECONDS
    while True:
        try:
            call(*args)
            return
        except sqlite3.OperationalError as error:
            if not _is_busy(error):
                raise
            deadline = deadline or time.monotonic() + BUSY_PATIENCE_SECONDS
            if time.monotonic() >= deadline:
                raise
        await asyncio.sleep(pause)
        pause = min(pause * 2, _LONGEST_PAUSE_SECONDS)


class InlineCursor:
    """The awaitable cursor aiosqlite's would be, over a plain ``sqlite3.Cursor``."""

    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor

    async def __aenter__(self) -> InlineCursor:
        return self

    async def __aexit__(self, *_: object) -> None:
        self._cursor.close()

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value

    async def execute(self, sql: str, parameters: Any = ()) -> InlineCursor:
        await _when_free(self._cursor.execute, sql, parameters)
        return self

    async def executemany(self, sql: str, parameters: Iterable[Any]) -> InlineCursor:
        self._cursor.executemany(sql, parameters)
        return self

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        return self._cursor.fetchmany(self._cursor.arraysize if size is None else size)

    async def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    async def close(self) -> None:
        self._cursor.close()

    async def nextset(self) -> None:
        return None

    async def setinputsizes(self, *_: Sequence[Any]) -> None:
        return None


class InlineConnection:
    """The awaitable connection aiosqlite's would be, over a plain ``sqlite3.Connection``."""

    def __init__(self, database: str) -> None:
        # Transactions are begun by SQLAlchemy (see database._tune_sqlite), never by the driver.
        self._connection: sqlite3.Connection | None = sqlite3.connect(
            database, isolation_level=None, check_same_thread=False, timeout=0
        )

    @property
    def _conn(self) -> sqlite3.Connection:
        if self._connection is None:
            raise ValueError("no active connection")
        return self._connection

    @property
    def isolation_level(self) -> str | None:
        return self._conn.isolation_level

    def cursor(self) -> InlineCursor:
        return InlineCursor(self._conn.cursor())

    async def execute(self, sql: str, parameters: Any = ()) -> InlineCursor:
        return await self.cursor().execute(sql, parameters)

    async def commit(self) -> None:
        await _when_free(self._conn.commit)

    async def rollback(self) -> None:
        self._conn.rollback()

    async def create_function(self, *args: Any, **kwargs: Any) -> None:
        self._conn.create_function(*args, **kwargs)

    async def close(self) -> None:
        self.stop()

    def stop(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
