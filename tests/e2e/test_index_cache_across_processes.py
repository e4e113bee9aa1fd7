"""A worker's in-memory index of a vector store notices changes made by other processes: a file added (and
ingested by another worker) and a file removed through an API replica show in the next file_search run the
worker executes, although it had read the store's index before."""

from __future__ import annotations

import io
import signal
from collections.abc import Iterator

import pytest
from openai import OpenAI

from conftest import Databases, make_client
from fake_upstream import FakeUpstream, Text, ToolCalls
from server import AssistdServer

pytestmark = [pytest.mark.postgres_only, pytest.mark.slow]

QUERY = "quokka wombat"


@pytest.fixture
def fake() -> Iterator[FakeUpstream]:
    """A private upstream: only this test's runs take its replies."""
    with FakeUpstream(models=["fake-model"]) as upstream:
        yield upstream


def _searched_files(client: OpenAI, fake: FakeUpstream, assistant_id: str) -> str:
    """Run a file_search for ``QUERY`` and return what the search showed the model (``[n] name`` lines)."""
    fake.push(ToolCalls([("file_search", {"queries": [QUERY]})]), Text("noted"))
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "look it up"}])
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant_id, poll_interval_ms=50
    )
    assert run.status == "completed", run.last_error
    tool = [m for m in fake.requests[-1]["messages"] if m.get("role") == "tool"]
    assert len(tool) == 1
    return str(tool[0]["content"])


def _upload(client: OpenAI, store_id: str, name: str, text: str) -> str:
    done = client.vector_stores.files.upload_and_poll(
        vector_store_id=store_id, file=(name, io.BytesIO(text.encode())), poll_interval_ms=50
    )
    assert done.status == "completed", done.last_error
    return done.id


def test_a_workers_index_sees_files_added_and_removed_elsewhere(
    tmp_path_factory: pytest.TempPathFactory, databases: Databases, fake: FakeUpstream
) -> None:
    url = databases.new()
    # Every process must embed alike; the static model starts at once.
    env = {
        "ASSISTD_UPSTREAM_BASE_URL": fake.base_url,
        "ASSISTD_UPSTREAM_API_KEY": "sk-upstream",
        "ASSISTD_LOCAL_EMBEDDINGS": "static",
    }
    api = AssistdServer(tmp_path_factory.mktemp("api"), url, env, args=("--workers", "0"))
    searcher = AssistdServer(tmp_path_factory.mktemp("searcher"), url, env, worker=True)
    ingester = AssistdServer(tmp_path_factory.mktemp("ingester"), url, env, worker=True)
    try:
        api.start()
        searcher.start()
        with make_client(api) as client:
            store = client.vector_stores.create(name="animals")
            alpha = _upload(client, store.id, "alpha.md", "The quokka lives on Rottnest Island.")
            assistant = client.beta.assistants.create(
                model="fake-model",
                tools=[{"type": "file_search"}],
                tool_resources={"file_search": {"vector_store_ids": [store.id]}},
            )
            # The searcher, the only worker, executes the run and reads the store's index into memory.
            shown = _searched_files(client, fake, assistant.id)
            assert "alpha.md" in shown and "beta.md" not in shown

            # Another worker ingests a second file while the searcher is frozen: it never sees the file
            # arrive, only the store's rows afterwards.
            assert searcher.process is not None
            searcher.process.send_signal(signal.SIGSTOP)
            try:
                ingester.start()
                _upload(client, store.id, "beta.md", "The wombat digs burrows.")
                ingester.stop()
            finally:
                searcher.process.send_signal(signal.SIGCONT)
            shown = _searched_files(client, fake, assistant.id)
            assert "alpha.md" in shown and "beta.md" in shown

            # Removed through the API replica: the searcher's index drops it.
            client.vector_stores.files.delete(alpha, vector_store_id=store.id)
            shown = _searched_files(client, fake, assistant.id)
            assert "beta.md" in shown and "alpha.md" not in shown
            assert "quokka" not in shown
    finally:
        for server in (ingester, searcher, api):
            server.stop()
