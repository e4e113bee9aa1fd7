"""Servers that are stopped, killed and restarted on one database (the durability, crash-recovery and
kill -9 soak tests): a restart is a new ``AssistdServer`` on the same ``database_url`` and data folder.

A module imports ``fake_fixture`` and ``servers_fixture``, which pytest then knows as the fixtures
``fake`` (a private upstream, replacing the session's) and ``servers``.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sqlite3
import time
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest
from openai import OpenAI
from openai.types.beta.threads import Run

from conftest import Databases, start_server
from fake_upstream import FakeUpstream
from server import AssistdServer

POLL_SECONDS = 30.0
TERMINAL = {"completed", "failed", "cancelled", "expired", "incomplete"}


class Servers:
    """Starts servers on one database and restarts them; stops whatever is left at the end."""

    def __init__(self, tmp_path_factory: pytest.TempPathFactory, databases: Databases, fake: FakeUpstream):
        self.tmp_path_factory, self.databases, self.fake = tmp_path_factory, databases, fake
        self.current: AssistdServer | None = None

    def start(self, **env: str) -> AssistdServer:
        self.current = start_server(self.tmp_path_factory, self.databases, self.fake, **env)
        return self.current

    def restart(self, *, kill: bool = False, same_port: bool = False) -> AssistdServer:
        """Stop (SIGTERM, or SIGKILL when ``kill``) and start a new process on the same database (and, with
        ``same_port``, the same port: clients that keep a base URL find it again)."""
        old = self.current
        assert old is not None
        process = old.process
        assert process is not None
        if kill:
            old.kill()
        else:
            old.stop()
            # After its shutdown uvicorn exits 0 or re-raises the SIGTERM it caught; SIGKILL would mean
            # it hung and ``stop()`` had to kill it.
            assert process.returncode in (0, -signal.SIGTERM), f"assistd did not stop cleanly:\n{old.log()}"
        self.current = respawn(old, same_port=same_port)
        return self.current

    def close(self) -> None:
        if self.current is not None:
            self.current.stop()


def respawn(old: AssistdServer, *, same_port: bool = False, timeout: float = 30.0) -> AssistdServer:
    """A new process in the place of ``old`` (stopped or killed): same role, data folder and database."""
    new = AssistdServer(old.data_dir, old.database_url, old.extra_env, args=old.args, worker=old.worker)
    if same_port and not old.worker:
        new.port, new.log_path = old.port, old.log_path
    return new.start(timeout)


@pytest.fixture(name="fake")
def fake_fixture() -> Iterator[FakeUpstream]:
    """A private upstream: no request left over from the session server's runs can take its replies."""
    with FakeUpstream(models=["fake-model", "fake-model-large"]) as upstream:
        yield upstream


@pytest.fixture(name="servers")
def servers_fixture(
    tmp_path_factory: pytest.TempPathFactory, databases: Databases, fake: FakeUpstream
) -> Iterator[Servers]:
    pool = Servers(tmp_path_factory, databases, fake)
    yield pool
    pool.close()


def wait_for(client: OpenAI, server: AssistdServer, thread_id: str, run_id: str, statuses: set[str]) -> Run:
    """Poll the run until its status is in ``statuses``; fail at once on another final status."""
    deadline = time.monotonic() + POLL_SECONDS
    while True:
        run = client.beta.threads.runs.retrieve(run_id=run_id, thread_id=thread_id)
        if run.status in statuses:
            return run
        if run.status in TERMINAL or time.monotonic() > deadline:
            pytest.fail(f"run {run_id} is {run.status}, wanted {statuses}: {run}\n{server.log()}")
        time.sleep(0.05)


def query(url: str, sql: str, *params: object) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` (``?`` placeholders) read straight from the server's database, SQLite or
    PostgreSQL: what the API does not show, like who holds a run's job."""
    if url.startswith("sqlite"):
        with contextlib.closing(sqlite3.connect(url.split("///", 1)[1], timeout=30)) as connection:
            return [tuple(row) for row in connection.execute(sql, params).fetchall()]
    parts = sql.split("?")
    numbered = parts[0] + "".join(f"${n}{part}" for n, part in enumerate(parts[1:], start=1))

    async def read() -> list[tuple[Any, ...]]:
        connection = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            return [tuple(row) for row in await connection.fetch(numbered, *params)]
        finally:
            await connection.close()

    return asyncio.run(read())
