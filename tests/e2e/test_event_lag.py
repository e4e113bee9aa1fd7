"""assistd_event_lag_seconds: an API replica (`serve --workers 0`) streams a run that a worker executes; the
replica's /metrics times every event that came to it through the event log, and a replay does not count."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import Databases, make_client
from fake_upstream import FakeUpstream, Text
from server import KEYS, AssistdServer
from sse import frames_of

pytestmark = pytest.mark.postgres_only

LAG = "assistd_event_lag_seconds"
_WORDS = [f"word{n} " for n in range(20)]


@pytest.fixture(scope="module")
def replica(
    tmp_path_factory: pytest.TempPathFactory, databases: Databases, fake: FakeUpstream
) -> Iterator[AssistdServer]:
    """The replica the client talks to; a worker on the same database executes every run."""
    url = databases.new()
    env = {"ASSISTD_UPSTREAM_BASE_URL": fake.base_url, "ASSISTD_UPSTREAM_API_KEY": "sk-upstream"}
    api = AssistdServer(tmp_path_factory.mktemp("api"), url, env, args=("--workers", "0"))
    worker = AssistdServer(tmp_path_factory.mktemp("worker"), url, env, worker=True)
    try:
        api.start()
        worker.start()
        yield api
    finally:
        worker.stop()
        api.stop()


def _lag(server: AssistdServer) -> dict[str, float]:
    """The histogram's samples: ``count``, ``sum`` and each bucket by its ``le``."""
    response = httpx.get(f"{server.url}/metrics")
    assert response.status_code == 200, response.text
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(response.text):
        if family.name != LAG:
            continue
        for sample in family.samples:
            key = sample.name.removeprefix(LAG + "_")
            found[f"le={sample.labels['le']}" if key == "bucket" else key] = sample.value
    return found


def test_events_from_the_worker_are_timed_on_the_replica(replica: AssistdServer, fake: FakeUpstream) -> None:
    before = _lag(replica)
    fake.push(Text("".join(_WORDS), chunks=_WORDS, chunk_delay_s=0.01))
    with make_client(replica) as client:
        assistant = client.beta.assistants.create(model="fake-model")
        thread = client.beta.threads.create(messages=[{"role": "user", "content": "count"}])
        with client.beta.threads.runs.stream(thread_id=thread.id, assistant_id=assistant.id) as stream:
            events = list(stream)
    assert events[-1].event == "thread.run.completed"
    deltas = [e for e in events if e.event == "thread.message.delta"]
    assert len(deltas) == len(_WORDS)
    after = _lag(replica)

    counted = after["count"] - before["count"]
    # The replica wrote the run's first two events (created, queued) itself: they took no way to it. Every
    # other event was written by the worker, and timed as the replica read it.
    assert len(deltas) <= counted <= len(events) - 2, (counted, len(events))
    mean = (after["sum"] - before["sum"]) / counted
    # One host, one database: a wake-up and a read, milliseconds; far from what a missed wake-up costs (the
    # safety poll reads the log every second).
    assert 0 <= mean < 0.5, mean
    assert after["le=+Inf"] == after["count"]
    assert after["le=1.0"] - before["le=1.0"] == counted

    # A client that replays the whole run from another point (Last-Event-ID 0) gets old events: no lag.
    run_id = events[0].data.id
    with httpx.Client(base_url=replica.base_url, headers={"Authorization": f"Bearer {KEYS[0]}"}) as http:
        replay = http.get(f"/threads/{thread.id}/runs/{run_id}/events", headers={"Last-Event-ID": "0"})
    assert replay.status_code == 200, replay.text
    frames = frames_of(replay.text)
    assert json.loads(frames[-2]["data"])["status"] == "completed"
    assert len(frames) == len(events) + 1  # and `done`
    assert _lag(replica)["count"] == after["count"]
