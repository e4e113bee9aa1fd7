"""A run's stream resumed after the last event id a client saw (GET .../runs/{run_id}/events), and what a
resume gets once the run's log has been pruned."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import asyncpg
import httpx
import pytest
from openai import OpenAI

from conftest import Databases, make_client, start_server
from fake_upstream import FakeUpstream, Text
from server import KEYS, AssistdServer
from sse import frames_of

_HEADERS = {"Authorization": f"Bearer {KEYS[0]}"}


def _stream_run(server: AssistdServer, client: OpenAI, fake: FakeUpstream) -> tuple[str, str, str]:
    """A completed run's thread id, run id and its whole stream's body."""
    assistant = client.beta.assistants.create(model="fake-model")
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "count"}])
    fake.push(Text("one two three four five six"))
    with httpx.Client(base_url=server.base_url, timeout=30, headers=_HEADERS) as http:
        body = http.post(
            f"/threads/{thread.id}/runs", json={"assistant_id": assistant.id, "stream": True}
        ).text
    created = next(f for f in frames_of(body) if f["event"] == "thread.run.created")
    return thread.id, json.loads(created["data"])["id"], body


def _parsed(frames: list[dict[str, str]]) -> list[tuple[str | None, str, object]]:
    # Replayed from the log, an event's JSON may be spaced differently: the same data, compared as data.
    return [
        (f.get("id"), f["event"], f["data"] if f["data"] == "[DONE]" else json.loads(f["data"]))
        for f in frames
    ]


def test_a_resume_after_an_event_id_gets_exactly_the_rest(
    server: AssistdServer, client: OpenAI, fake: FakeUpstream
) -> None:
    thread_id, run_id, body = _stream_run(server, client, fake)
    frames = frames_of(body)
    numbered = [f for f in frames if "id" in f]
    with httpx.Client(base_url=server.base_url, timeout=30, headers=_HEADERS) as http:
        for cut in (0, 3, len(numbered) - 1):
            path = f"/threads/{thread_id}/runs/{run_id}/events"
            by_header = http.get(path, headers={"Last-Event-ID": str(cut)} if cut else {})
            by_query = http.get(path, params={"after": cut})
            for response in (by_header, by_query):
                assert response.status_code == 200, response.text
                assert _parsed(frames_of(response.text)) == _parsed([*numbered[cut:], frames[-1]])
        unknown = http.get(f"/threads/{thread_id}/runs/run_nope/events")
        assert unknown.status_code == 404
        assert unknown.json()["error"]["type"] == "invalid_request_error"
        bad = http.get(f"/threads/{thread_id}/runs/{run_id}/events", headers={"Last-Event-ID": "x1"})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "Last-Event-ID"


@pytest.fixture(scope="module")
def pruning(
    tmp_path_factory: pytest.TempPathFactory, databases: Databases, fake: FakeUpstream
) -> Iterator[AssistdServer]:
    srv = start_server(tmp_path_factory, databases, fake, run_events_retention_seconds="0.5")
    yield srv
    srv.stop()


@pytest.mark.postgres_only
def test_a_pruned_run_resumes_with_its_final_status(pruning: AssistdServer, fake: FakeUpstream) -> None:
    with make_client(pruning) as client:
        thread_id, run_id, _ = _stream_run(pruning, client, fake)

    async def logged() -> int:
        connection = await asyncpg.connect(pruning.database_url)
        try:
            return int(await connection.fetchval("SELECT count(*) FROM run_events WHERE run_id = $1", run_id))
        finally:
            await connection.close()

    assert asyncio.run(logged()) > 0
    deadline = time.monotonic() + 10
    while asyncio.run(logged()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert asyncio.run(logged()) == 0
    with httpx.Client(base_url=pruning.base_url, timeout=30, headers=_HEADERS) as http:
        response = http.get(f"/threads/{thread_id}/runs/{run_id}/events")
    frames = frames_of(response.text)
    assert [f["event"] for f in frames] == ["thread.run.completed", "done"]
