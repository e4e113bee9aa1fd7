"""Deploying many replicas: `assistd migrate` as a release step, servers that do not migrate themselves,
concurrent migrations of one database, and the /healthz and /readyz probes."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from assistd.store.database import Database, head_revision
from conftest import Databases, make_client
from fake_upstream import FakeUpstream, Text
from schema import downgrade
from server import AssistdServer


def _migrate_command(database_url: str, cwd: Path, *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASSISTD_")}
    return subprocess.Popen(
        [sys.executable, "-m", "assistd", "migrate", *args],
        env={**env, "ASSISTD_DATABASE_URL": database_url},
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _migrate(database_url: str, cwd: Path, *args: str) -> str:
    process = _migrate_command(database_url, cwd, *args)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    return out


def _server(tmp_path: Path, database_url: str, fake: FakeUpstream, **env: str) -> AssistdServer:
    settings = {"ASSISTD_UPSTREAM_BASE_URL": fake.base_url, "ASSISTD_UPSTREAM_API_KEY": "sk-upstream"}
    settings.update({f"ASSISTD_{k.upper()}": v for k, v in env.items()})
    data_dir = tmp_path / f"server-{len(list(tmp_path.glob('server-*')))}"
    data_dir.mkdir()
    return AssistdServer(data_dir, database_url, settings)


async def _revision(database_url: str) -> str | None:
    db = Database(database_url)
    try:
        return (await db.schema()).current
    finally:
        await db.close()


async def _set_revision(database_url: str, revision: str) -> None:
    """What the database looks like after a newer release's migrations: a revision this code lacks."""
    db = Database(database_url)
    try:
        async with db.write() as session:
            await session.execute(text("UPDATE alembic_version SET version_num = :r"), {"r": revision})
    finally:
        await db.close()


def _answers(server: AssistdServer, fake: FakeUpstream) -> None:
    fake.push(Text("served"))
    with make_client(server) as client:
        assistant = client.beta.assistants.create(model="fake-model")
        thread = client.beta.threads.create(messages=[{"role": "user", "content": "hi"}])
        run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
        assert run.status == "completed", run.last_error


def test_healthz_and_readyz_answer_without_a_key(server: AssistdServer) -> None:
    alive = httpx.get(f"{server.url}/healthz")
    assert (alive.status_code, alive.json()) == (200, {"status": "ok"})
    ready = httpx.get(f"{server.url}/readyz")
    assert ready.status_code == 200
    head = head_revision()
    assert ready.json() == {
        "status": "ok",
        "database": {"revision": head, "head": head, "schema": "current"},
    }


def test_migrate_then_serve_without_auto_migrate(
    tmp_path: Path, databases: Databases, fake: FakeUpstream
) -> None:
    url = databases.new(empty=True)
    head = head_revision()
    assert _migrate(url, tmp_path) == f"assistd migrate: upgraded the schema from revision none to {head}\n"
    assert _migrate(url, tmp_path) == f"assistd migrate: the schema is at revision {head}; nothing to do\n"
    server = _server(tmp_path, url, fake, auto_migrate="false").start()
    try:
        assert httpx.get(f"{server.url}/readyz").status_code == 200
        _answers(server, fake)
    finally:
        server.stop()


def test_a_server_without_auto_migrate_refuses_an_old_schema(
    tmp_path: Path, databases: Databases, fake: FakeUpstream
) -> None:
    url = databases.new(empty=True)
    server = _server(tmp_path, url, fake, auto_migrate="false")
    with pytest.raises(RuntimeError, match="run `assistd migrate` first") as info:
        server.start()
    assert f"the database schema is at revision none and this assistd needs {head_revision()}" in str(
        info.value
    )
    # An older revision (a release whose migration step did not run yet) is refused alike.
    _migrate(url, tmp_path, "--revision", "0004")
    assert asyncio.run(_revision(url)) == "0004"
    with pytest.raises(RuntimeError, match="is at revision 0004"):
        server.start()
    server.stop()


def test_readyz_says_migrations_are_pending_until_assistd_migrate_runs(
    tmp_path: Path, databases: Databases, fake: FakeUpstream
) -> None:
    url = databases.new(empty=True)
    server = _server(tmp_path, url, fake).start()
    try:
        asyncio.run(downgrade(url, "0004"))
        ready = httpx.get(f"{server.url}/readyz")
        assert ready.status_code == 503
        assert ready.json() == {
            "error": {
                "message": f"The database schema is at revision 0004, this server needs {head_revision()}: "
                "run `assistd migrate`.",
                "type": "server_error",
                "param": None,
                "code": "migrations_pending",
            }
        }
        assert httpx.get(f"{server.url}/healthz").status_code == 200
        out = _migrate(url, tmp_path)
        assert out == f"assistd migrate: upgraded the schema from revision 0004 to {head_revision()}\n"
        assert httpx.get(f"{server.url}/readyz").status_code == 200
    finally:
        server.stop()


def test_readyz_stays_ready_when_a_newer_assistd_migrated(
    tmp_path: Path, databases: Databases, fake: FakeUpstream
) -> None:
    """During a rolling deploy the new release migrates first; the old replicas keep serving until
    they are replaced, rather than all leaving the load balancer at once."""
    url = databases.new(empty=True)
    server = _server(tmp_path, url, fake).start()
    try:
        asyncio.run(_set_revision(url, "9999_from_the_future"))
        ready = httpx.get(f"{server.url}/readyz")
        assert ready.status_code == 200
        assert ready.json()["database"] == {
            "revision": "9999_from_the_future",
            "head": head_revision(),
            "schema": "ahead",
        }
        _answers(server, fake)
    finally:
        server.stop()


def test_concurrent_migrations_and_starts_of_one_fresh_database(
    tmp_path: Path, databases: Databases, fake: FakeUpstream
) -> None:
    """Replicas starting together, and release steps run twice, against a database with no schema."""
    url = databases.new(empty=True)
    migrations = [_migrate_command(url, tmp_path) for _ in range(3)]
    servers = [_server(tmp_path, url, fake) for _ in range(2)]
    try:
        # The servers start together too, while the migrations run.
        with ThreadPoolExecutor(len(servers)) as pool:
            list(pool.map(lambda server: server.start(timeout=60), servers))
        outputs = [process.communicate(timeout=120) for process in migrations]
        for process, (out, err) in zip(migrations, outputs, strict=True):
            assert process.returncode == 0, err
            assert out.startswith("assistd migrate: "), out
        assert asyncio.run(_revision(url)) == head_revision()
        for server in servers:
            assert httpx.get(f"{server.url}/readyz").status_code == 200
            _answers(server, fake)
    finally:
        for server in servers:
            server.stop()
