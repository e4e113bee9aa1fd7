"""The database goes away and comes back: 503s in OpenAI's error body meanwhile (never a 500), /healthz
stays up, /readyz says why not, and the same server process serves again once the database is back.

A TCP proxy (tests/db_proxy.py) sits between the server and PostgreSQL; the test cuts and restores it.
PostgreSQL only: SQLite is a file in the server's own process, with no connection to lose.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import openai
import pytest
from openai import OpenAI

from conftest import Databases, make_client, server_behind_proxy
from db_proxy import TcpProxy
from fake_upstream import FakeUpstream, Text
from server import AssistdServer

# An outage of PostgreSQL, a server apart: `make test`'s PostgreSQL pass runs it; SQLite has no server to cut.
pytestmark = pytest.mark.postgres_only


@pytest.fixture
def proxied(
    tmp_path_factory: pytest.TempPathFactory, databases: Databases, fake: FakeUpstream
) -> Iterator[tuple[AssistdServer, TcpProxy]]:
    """A server whose database connections all go through a proxy the test controls."""
    with server_behind_proxy(tmp_path_factory, databases, fake, "outage") as pair:
        yield pair


def _answered(client: OpenAI, fake: FakeUpstream, text: str) -> None:
    fake.push(Text(text))
    assistant = client.beta.assistants.create(model="fake-model")
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "hi"}])
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert run.status == "completed", run.last_error
    reply = client.beta.threads.messages.list(thread_id=thread.id).data[0].content[0]
    assert reply.type == "text" and reply.text.value == text


def test_database_outage_answers_503_and_recovers(
    proxied: tuple[AssistdServer, TcpProxy], fake: FakeUpstream
) -> None:
    server, proxy = proxied
    with make_client(server) as client:
        _answered(client, fake, "before the outage")
        thread = client.beta.threads.create()

        proxy.cut()
        calls = {
            "create an assistant": lambda: client.beta.assistants.create(model="fake-model"),
            "list assistants": lambda: client.beta.assistants.list(),
            "retrieve a thread": lambda: client.beta.threads.retrieve(thread.id),
            "add a message": lambda: client.beta.threads.messages.create(
                thread_id=thread.id, role="user", content="anyone there?"
            ),
        }
        for what, call in calls.items():
            with pytest.raises(openai.InternalServerError) as info:
                call()
            response = info.value.response
            assert response.status_code == 503, what
            assert response.json() == {
                "error": {
                    "message": "The database is unavailable. Please retry your request shortly.",
                    "type": "server_error",
                    "param": None,
                    "code": "database_unavailable",
                }
            }, what
            assert response.headers["retry-after"] == "2", what

        # Alive, not ready.
        alive = httpx.get(f"{server.url}/healthz")
        assert (alive.status_code, alive.json()) == (200, {"status": "ok"})
        ready = httpx.get(f"{server.url}/readyz", timeout=10)
        assert ready.status_code == 503
        error = ready.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert (error["type"], error["code"]) == ("server_error", "database_unavailable")
        assert error["message"].startswith("The database cannot be reached")
        # The process's own metrics are still scraped, with the database marked down.
        scraped = httpx.get(f"{server.url}/metrics", timeout=10)
        assert scraped.status_code == 200
        assert "assistd_database_up 0.0" in scraped.text
        assert "assistd_runs{" not in scraped.text

        proxy.restore()
        # The same process, not restarted: its pool replaces the dead connections at checkout.
        deadline = time.monotonic() + 20
        while httpx.get(f"{server.url}/readyz", timeout=10).status_code != 200:
            assert time.monotonic() < deadline, "/readyz did not recover"
            time.sleep(0.2)
        assert client.beta.threads.retrieve(thread.id).id == thread.id
        _answered(client, fake, "after the outage")
        assert "assistd_database_up 1.0" in httpx.get(f"{server.url}/metrics").text
    assert server.process is not None and server.process.poll() is None
    # Nothing reached the handler of unexpected errors (whose answer is a 500).
    assert "unhandled error" not in server.log()
