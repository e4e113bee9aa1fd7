"""Fixtures: the scripted fake upstream, a real assistd server, and official SDK clients."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from openai import OpenAI

sys.path.insert(0, str(Path(__file__).parent)) if str(Path(__file__).parent) not in sys.path else None

from db_proxy import TcpProxy  # noqa: E402
from fake_upstream import FakeUpstream  # noqa: E402
from server import KEYS, AssistdServer  # noqa: E402

PG_ENV = "ASSISTD_TEST_DATABASE_URL"


class Databases:
    """Hands out fresh databases: SQLite files, or new PostgreSQL databases when ``PG_ENV`` is set.

    Each comes migrated to head, copied from a template migrated once per session: most tests start a
    server on a new database, and on PostgreSQL running every migration at each start cost about a
    second of the suite's time per server. Tests of migrations themselves ask for an ``empty`` one."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.pg = os.environ.get(PG_ENV)
        self.created: list[str] = []
        self._template: str | None = None

    def new(self, *, empty: bool = False) -> str:
        template = None if empty else self._migrated_template()
        if not self.pg:
            path = self.root / f"assistd-{uuid.uuid4().hex[:8]}.db"
            if template is not None:
                shutil.copyfile(template, path)
            return f"sqlite:///{path}"
        name = f"assistd_test_{uuid.uuid4().hex[:10]}"
        copy = f' TEMPLATE "{template}"' if template is not None else ""
        asyncio.run(self._admin(f'CREATE DATABASE "{name}"{copy}'))
        self.created.append(name)
        return self._url(name)

    def _url(self, name: str) -> str:
        assert self.pg is not None
        return self.pg.rsplit("/", 1)[0] + "/" + name

    def _migrated_template(self) -> str:
        """The template's file (SQLite) or database name (PostgreSQL), made on first use."""
        if self._template is None:
            if self.pg:
                name = f"assistd_template_{uuid.uuid4().hex[:10]}"
                asyncio.run(self._admin(f'CREATE DATABASE "{name}"'))
                self.created.append(name)
                asyncio.run(_migrate(self._url(name)))
                self._template = name
            else:
                path = self.root / "template.db"
                # Closed after migrating, so that SQLite folds its WAL into the file copied.
                asyncio.run(_migrate(f"sqlite:///{path}"))
                self._template = str(path)
        return self._template

    def drop_all(self) -> None:
        for name in self.created:
            asyncio.run(self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    async def _admin(self, sql: str) -> None:
        import asyncpg

        assert self.pg is not None
        conn = await asyncpg.connect(self.pg.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            await conn.execute(sql)
        finally:
            await conn.close()


async def _migrate(url: str) -> None:
    from assistd.store.database import Database

    db = Database(url)
    try:
        await db.migrate()
    finally:
        await db.close()


@pytest.fixture(scope="session")
def databases(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Databases]:
    dbs = Databases(tmp_path_factory.mktemp("db"))
    yield dbs
    dbs.drop_all()


@pytest.fixture
def migrated_url(databases: Databases) -> str:
    """A fresh database migrated to head, for tests of the store and engine below the HTTP server."""
    return databases.new()


@pytest.fixture(scope="session")
def fake() -> Iterator[FakeUpstream]:
    upstream = FakeUpstream(models=["fake-model", "fake-model-large"]).start()
    yield upstream
    upstream.stop()


@pytest.fixture(autouse=True)
def _fresh_fake(request: pytest.FixtureRequest) -> None:
    if "fake" in request.fixturenames:
        request.getfixturevalue("fake").reset()


def start_server(
    tmp_path_factory: pytest.TempPathFactory, databases: Databases, fake: FakeUpstream, **env: str
) -> AssistdServer:
    data_dir = tmp_path_factory.mktemp("assistd")
    settings = {"ASSISTD_UPSTREAM_BASE_URL": fake.base_url, "ASSISTD_UPSTREAM_API_KEY": "sk-upstream-secret"}
    settings.update({f"ASSISTD_{k.upper()}": v for k, v in env.items()})
    return AssistdServer(data_dir, databases.new(), settings).start()


@pytest.fixture(scope="session")
def server(
    tmp_path_factory: pytest.TempPathFactory, databases: Databases, fake: FakeUpstream
) -> Iterator[AssistdServer]:
    srv = start_server(tmp_path_factory, databases, fake, upstream_timeout_seconds="3")
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def local_server(tmp_path_factory: pytest.TempPathFactory, databases: Databases) -> Iterator[AssistdServer]:
    """One server on the bundled local model, no upstream, for every module that tests it: the model is
    loaded once per session, not once per module."""
    env = {"ASSISTD_LOCAL_MAX_TOKENS": "48", "ASSISTD_LOCAL_PARALLEL": "2"}
    srv = AssistdServer(tmp_path_factory.mktemp("local"), databases.new(), env).start()
    yield srv
    srv.stop()


@contextmanager
def server_behind_proxy(
    tmp_path_factory: pytest.TempPathFactory, databases: Databases, upstream: FakeUpstream, name: str
) -> Iterator[tuple[AssistdServer, TcpProxy]]:
    """A server on a new PostgreSQL database whose connections all go through a proxy the test cuts."""
    from sqlalchemy.engine import make_url

    direct = make_url(databases.new())
    proxy = TcpProxy(direct.host or "127.0.0.1", direct.port or 5432).start()
    through = direct.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    settings = {"ASSISTD_UPSTREAM_BASE_URL": upstream.base_url, "ASSISTD_UPSTREAM_API_KEY": "sk-upstream"}
    server = AssistdServer(tmp_path_factory.mktemp(name), through, settings).start()
    try:
        yield server, proxy
    finally:
        if proxy.is_cut:
            proxy.restore()  # so that the server shuts down as usual, releasing what it holds
        server.stop()
        proxy.stop()


def wait_for_processes(server: AssistdServer, processes: int, timeout: float = 60.0) -> None:
    """Until all of ``serve --processes N``'s processes are up: /healthz answers once one is ready, and
    each claims its numbered slot file first thing."""
    deadline = time.monotonic() + timeout
    while len(list((server.data_dir / "relay").glob("slot-*.lock"))) < processes:
        assert time.monotonic() < deadline, "not every process of the server started"
        time.sleep(0.1)


def make_client(server: AssistdServer, key: str = KEYS[0]) -> OpenAI:
    return OpenAI(base_url=server.base_url, api_key=key, max_retries=0, timeout=30)


@pytest.fixture
def client(server: AssistdServer) -> Iterator[OpenAI]:
    with make_client(server) as c:
        yield c


@pytest.fixture
def other_client(server: AssistdServer) -> Iterator[OpenAI]:
    with make_client(server, KEYS[1]) as c:
        yield c


@pytest.fixture
def agents_defaults() -> Iterator[None]:
    """The Agents SDK's global default client, key and tracing switch as they were, after the test
    (``agents_support.on_assistd`` sets them). Imported here: only these tests need the SDK."""
    from agents.models import _openai_shared
    from agents.tracing import get_trace_provider

    client, key = _openai_shared.get_default_openai_client(), _openai_shared.get_default_openai_key()
    provider = get_trace_provider()
    # The SDK offers no getter for the switch: its provider's own state is put back as it was.
    tracing = {
        name: getattr(provider, name) for name in ("_manual_disabled", "_disabled") if hasattr(provider, name)
    }
    try:
        yield
    finally:
        _openai_shared._default_openai_client = client
        _openai_shared._default_openai_key = key
        for name, value in tracing.items():
            setattr(provider, name, value)
