"""The database engine: URL normalisation, SQLite tuning, sessions, migrations and the schema's state."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import event, inspect, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from .sqlite_inline import InlineConnection

_MIGRATIONS = Path(__file__).parent / "migrations"

# Whether the running task holds a session of a Database already (see ``Database._turn``).
_in_session: ContextVar[bool] = ContextVar("assistd_in_session", default=False)
_VERSION_TABLE = "alembic_version"

# The PostgreSQL advisory lock that migrations hold: "assistd" in ASCII, as a 64-bit key. Any process
# migrating the same database (replicas starting at once, `assistd migrate`) waits for it.
_MIGRATION_LOCK = 0x6173736973746400

# How long opening a PostgreSQL connection may take. asyncpg's own default (60 s) would hold a request
# that long when the server's address stops answering, instead of failing it with a 503 (api/errors.py).
_CONNECT_TIMEOUT_SECONDS = 10.0


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

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = async_url(url)
        self.backend_pids: set[int] = set()
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
            # No pool_pre_ping: on asyncpg it costs three round trips (BEGIN, ";", ROLLBACK) per checkout,
            # about ten per run. A connection the server dropped (a restart, a failover) fails its first
            # statement instead; SQLAlchemy then sees a disconnect and empties the whole pool, that request
            # gets a 503 (api/errors.py) and the next ones connect afresh, so the service still recovers
            # by itself when the database comes back.
            self.engine = create_async_engine(
                self.url,
                pool_size=pool_size,
                max_overflow=pool_size,
                connect_args={"timeout": _CONNECT_TIMEOUT_SECONDS},
            )
            self._track_backends()
            # Reads run without BEGIN and COMMIT, a round trip each. Under PostgreSQL's READ COMMITTED
            # every statement takes its own snapshot inside a transaction too, so a read of several
            # statements sees exactly what it would see in one.
            self.read_engine = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        self._writer = async_sessionmaker(self.engine, expire_on_commit=False)
        self._reader = async_sessionmaker(self.read_engine, expire_on_commit=False)
        # SQLite has one write lock per database. Writers of this process take turns on an asyncio lock
        # rather than on retries of a busy database, which sleep between tries: under load the lock would
        # sit free while every waiter slept. Other processes' writers are still met by those retries.
        self._write_turn: asyncio.Lock | None = asyncio.Lock() if self.is_sqlite else None
        # PostgreSQL: at most ``pool_size`` sessions at once, the others wait their turn. Under load every
        # task is in the middle of a transaction; letting each open a connection of its own would open
        # (and prepare every statement on) connections past the pool's, closed again when returned.
        # Sessions opened inside another session of the same task pass (as a second checkout they would
        # otherwise wait for themselves); the pool's overflow is for them.
        self._turns: asyncio.Semaphore | None = None if self.is_sqlite else asyncio.Semaphore(pool_size)

    def _track_backends(self) -> None:
        """Keep ``backend_pids``: the PostgreSQL server processes of this pool's connections, which a
        NOTIFY names as its sender (so a listener can tell this process's own writes from others')."""
        pool = self.engine.sync_engine

        @event.listens_for(pool, "connect")
        def _connected(_dbapi: Any, record: Any) -> None:
            self.backend_pids.add(record.driver_connection.get_server_pid())

        @event.listens_for(pool, "close")
        @event.listens_for(pool, "invalidate")
        def _gone(_dbapi: Any, record: Any, *_: Any) -> None:
            if record.driver_connection is not None:
                self.backend_pids.discard(record.driver_connection.get_server_pid())

    @asynccontextmanager
    async def _turn(self) -> AsyncIterator[None]:
        if self._turns is None or _in_session.get():
            yield
            return
        async with self._turns:
            token = _in_session.set(True)
            try:
                yield
            finally:
                _in_session.reset(token)

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """A session in a transaction that commits when the block ends without error."""
        if self._write_turn is None:
            async with self._turn(), self._writer() as session, session.begin():
                yield session
            return
        async with self._write_turn, self._writer() as session, session.begin():
            yield session

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        async with self._turn(), self._reader() as session, session.begin():
            yield session

    async def migrate(self, revision: str = "head") -> None:
        await migrate(self.engine, revision)

    async def schema(self) -> Schema:
        """Where this database's schema stands against the migrations this code ships."""

        def _current(connection: Connection) -> str | None:
            # Read directly: alembic's MigrationContext logs two lines at info each time, and readiness
            # probes ask every few seconds.
            if not inspect(connection).has_table(_VERSION_TABLE):
                return None
            return connection.execute(text(f"SELECT version_num FROM {_VERSION_TABLE}")).scalar()

        async with self.read_engine.connect() as conn:
            return Schema(await conn.run_sync(_current))

    async def close(self) -> None:
        await self.engine.dispose()
        if self.is_sqlite:
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


async def migrate(engine: AsyncEngine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` (the newest migration by default); safe to run from several
    processes at once.

    The upgrade runs in one transaction. On PostgreSQL it first takes an advisory lock for that
    transaction: without it, processes starting together would each find the schema old and run the same
    DDL, and all but one would fail. The others wait, then find the schema current and do nothing. On
    SQLite the write transaction's ``BEGIN IMMEDIATE`` serialises them the same way.
    """

    def _upgrade(connection: Connection) -> None:
        command.upgrade(_alembic_config(connection), revision)

    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
        await conn.run_sync(_upgrade)


@cache
def _scripts() -> ScriptDirectory:
    return ScriptDirectory(str(_MIGRATIONS))


def head_revision() -> str:
    """The newest migration this code ships."""
    head = _scripts().get_current_head()
    assert head is not None, "the migrations have one head"
    return head


@dataclass(frozen=True)
class Schema:
    """A database's migration revision (None: never migrated) and how it compares with the code's."""

    current: str | None

    @property
    def head(self) -> str:
        return head_revision()

    @property
    def state(self) -> Literal["current", "behind", "ahead"]:
        """``behind``: migrations of this code are not applied yet (or none is). ``ahead``: a revision this
        code does not know, so a newer assistd migrated the database (during a rolling deploy)."""
        if self.current == self.head:
            return "current"
        known = {script.revision for script in _scripts().walk_revisions()}
        return "behind" if self.current is None or self.current in known else "ahead"
