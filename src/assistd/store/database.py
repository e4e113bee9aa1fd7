"""The database engine: URL normalisation, SQLite tuning, sessions and migrations at start."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from .sqlite_inline import InlineConnection

_MIGRATIONS = Path(__file__).parent / "migrations"


def async_url(url: str) -> str:
    """Map the URLs users write (``sqlite:///x.db``, ``postgresql://...``) to async drivers."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        parsed = parsed.set(drivername="sqlite+aiosqlite")
    elif backend in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+asyncpg")
    else:
        raise ValueError(f"unsupported database URL scheme: {parsed.drivername}")
    return parsed.render_as_string(hide_password=False)


class Database:
    """The engines and sessions of one database.

    On SQLite, writes go through an engine whose transactions take the write lock up front, and reads
    through a second engine whose transactions don't, so polls never queue behind writers.
    """

    def __init__(self, url: str) -> None:
        self.url = async_url(url)
        self.is_sqlite = self.url.startswith("sqlite")
        if self.is_sqlite:
            database = make_url(self.url).database
            if database and database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            self.engine = _inline_sqlite_engine(self.url)
            _tune_sqlite(self.engine, immediate=True)
            self.read_engine = _inline_sqlite_engine(self.url)
            _tune_sqlite(self.read_engine, immediate=False)
        else:
            self.engine = create_async_engine(self.url, pool_size=10, max_overflow=20, pool_pre_ping=True)
            self.read_engine = self.engine
        self._writer = async_sessionmaker(self.engine, expire_on_commit=False)
        self._reader = async_sessionmaker(self.read_engine, expire_on_commit=False)
        # SQLite has one write lock per database. Writers of this process take turns on an asyncio lock
        # rather than on retries of a busy database, which sleep between tries: under load the lock would
        # sit free while every waiter slept. Other processes' writers are still met by those retries.
        self._write_turn: asyncio.Lock | None = asyncio.Lock() if self.is_sqlite else None

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """A session in a transaction that commits when the block ends without error."""
        if self._write_turn is None:
            async with self._writer() as session, session.begin():
                yield session
            return
        async with self._write_turn, self._writer() as session, session.begin():
            yield session

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        async with self._reader() as session, session.begin():
            yield session

    async def migrate(self) -> None:
        await migrate(self.engine)

    async def close(self) -> None:
        await self.engine.dispose()
        if self.read_engine is not self.engine:
            await self.read_engine.dispose()


def _inline_sqlite_engine(url: str) -> AsyncEngine:
    """An engine of the aiosqlite dialect whose connections run SQLite on the loop's thread (see
    ``sqlite_inline``). The connections leave transactions to SQLAlchemy, so "begin" below decides
    their kind, and wait for other processes' locks without blocking the loop."""
    database = make_url(url).database or ":memory:"

    async def connect() -> InlineConnection:
        return InlineConnection(database)

    return create_async_engine(url, async_creator=connect, pool_size=8, max_overflow=8)


def _tune_sqlite(engine: AsyncEngine, *, immediate: bool) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    # IMMEDIATE takes the write lock up front: a deferred transaction that later writes can fail
    # with SQLITE_BUSY at once, without waiting on busy_timeout, when another writer went first.
    begin = "BEGIN IMMEDIATE" if immediate else "BEGIN"

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql(begin)


def _alembic_config(connection: Connection) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


async def migrate(engine: AsyncEngine) -> None:
    """Bring the schema to the newest migration."""

    def _upgrade(connection: Connection) -> None:
        command.upgrade(_alembic_config(connection), "head")

    async with engine.begin() as conn:
        await conn.run_sync(_upgrade)
