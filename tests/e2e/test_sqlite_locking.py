"""SQLite runs on the server's event loop thread: a write lock held by another process must make writes
wait, without stalling the requests that do not need it, and without failing the writes."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator

import pytest
from openai import OpenAI
from openai.types.beta import Assistant

from fake_upstream import FakeUpstream
from server import AssistdServer

pytestmark = pytest.mark.sqlite_only


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, fake: FakeUpstream) -> Iterator[AssistdServer]:
    data_dir = tmp_path_factory.mktemp("assistd")
    settings = {"ASSISTD_UPSTREAM_BASE_URL": fake.base_url, "ASSISTD_UPSTREAM_API_KEY": "sk-upstream-secret"}
    srv = AssistdServer(data_dir, f"sqlite:///{data_dir / 'locked.db'}", settings).start()
    yield srv
    srv.stop()


def test_write_waits_for_another_process_lock_while_reads_go_on(
    server: AssistdServer, client: OpenAI
) -> None:
    kept = client.beta.assistants.create(model="fake-model", name="before the lock")
    path = server.database_url.removeprefix("sqlite:///")
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process's writer holds SQLite's write lock
    created: list[Assistant] = []
    failed: list[BaseException] = []

    def write() -> None:
        try:
            created.append(client.beta.assistants.create(model="fake-model", name="after the lock"))
        except BaseException as exc:  # reported below
            failed.append(exc)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        writer.join(0.5)
        assert writer.is_alive(), "the write did not wait for the lock"
        # The waiting write leaves the server free: reads are answered meanwhile, several times over.
        for _ in range(5):
            assert client.beta.assistants.retrieve(kept.id).name == "before the lock"
        assert writer.is_alive()
    finally:
        other.execute("COMMIT")
        other.close()
    writer.join(30)
    assert not failed, failed
    assert created and created[0].name == "after the lock"
    assert client.beta.assistants.retrieve(created[0].id).id == created[0].id
