"""/metrics: Prometheus's format without a key, the database's runs and queue at scrape time, the
upstream's requests and latency, and ASSISTD_METRICS=false."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from openai import OpenAI
from prometheus_client.parser import text_string_to_metric_families

from conftest import Databases, make_client, start_server
from fake_upstream import Error, FakeUpstream, Hang, Text
from server import AssistdServer

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(scope="module")
def metered(
    tmp_path_factory: pytest.TempPathFactory, databases: Databases, fake: FakeUpstream
) -> Iterator[AssistdServer]:
    """One run at a time, so that a second run waits in the queue while the first one runs."""
    srv = start_server(tmp_path_factory, databases, fake, workers="1")
    yield srv
    srv.stop()


@pytest.fixture
def metered_client(metered: AssistdServer) -> Iterator[OpenAI]:
    with make_client(metered) as c:
        yield c


def _scrape(server: AssistdServer) -> Samples:
    response = httpx.get(f"{server.url}/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def _runs(samples: Samples) -> dict[str, float]:
    statuses = ("queued", "in_progress", "requires_action", "cancelling")
    return {status: _value(samples, "assistd_runs", status=status) for status in statuses}


def test_metrics_need_no_key_and_name_everything_assistd(metered: AssistdServer) -> None:
    samples = _scrape(metered)
    ours = {name for name, _ in samples if name.startswith("assistd_")}
    assert {
        "assistd_build_info",
        "assistd_database_up",
        "assistd_runs",
        "assistd_run_queue_depth",
        "assistd_run_queue_oldest_age_seconds",
        "assistd_run_jobs_unclaimed",
        "assistd_ingest_queue_depth",
        "assistd_sse_streams_open",
        "assistd_upstream_first_chunk_seconds_count",
    } <= ours
    # Everything else is the process's own (process_*, python_*), from prometheus_client.
    assert all(name.startswith(("assistd_", "process_", "python_")) for name, _ in samples)
    assert _value(samples, "assistd_database_up") == 1
    assert _runs(samples) == {"queued": 0, "in_progress": 0, "requires_action": 0, "cancelling": 0}
    # A scraper that asks for OpenMetrics gets it.
    open_metrics = httpx.get(f"{metered.url}/metrics", headers={"Accept": "application/openmetrics-text"})
    assert open_metrics.headers["content-type"].startswith("application/openmetrics-text")
    assert open_metrics.text.endswith("# EOF\n")


def test_runs_and_queue_are_read_from_the_database(
    metered: AssistdServer, metered_client: OpenAI, fake: FakeUpstream
) -> None:
    fake.push(Hang(2.0, then=Text("first")), Text("second"))
    assistant = metered_client.beta.assistants.create(model="fake-model")
    threads = [metered_client.beta.threads.create(messages=[{"role": "user", "content": "hi"}]) for _ in "ab"]
    first = metered_client.beta.threads.runs.create(thread_id=threads[0].id, assistant_id=assistant.id)
    fake.wait_for_requests(1)
    second = metered_client.beta.threads.runs.create(thread_id=threads[1].id, assistant_id=assistant.id)
    time.sleep(0.3)

    busy = _scrape(metered)
    assert _runs(busy) == {"queued": 1, "in_progress": 1, "requires_action": 0, "cancelling": 0}
    assert _value(busy, "assistd_run_queue_depth") == 1
    assert 0.2 <= _value(busy, "assistd_run_queue_oldest_age_seconds") < 30
    assert _value(busy, "assistd_run_jobs_unclaimed") == 0

    for thread, run in zip(threads, (first, second), strict=True):
        done = metered_client.beta.threads.runs.poll(run.id, thread_id=thread.id)
        assert done.status == "completed", done.last_error
    idle = _scrape(metered)
    assert _runs(idle) == {"queued": 0, "in_progress": 0, "requires_action": 0, "cancelling": 0}
    assert _value(idle, "assistd_run_queue_depth") == 0
    assert _value(idle, "assistd_run_queue_oldest_age_seconds") == 0


def test_upstream_requests_are_counted_by_status(
    metered: AssistdServer, metered_client: OpenAI, fake: FakeUpstream
) -> None:
    before = _scrape(metered)
    fake.push(Error(500), Text("after a retry"))
    assistant = metered_client.beta.assistants.create(model="fake-model")
    thread = metered_client.beta.threads.create(messages=[{"role": "user", "content": "hi"}])
    run = metered_client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert run.status == "completed", run.last_error
    after = _scrape(metered)

    def grew(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    requests = "assistd_upstream_requests_total"
    assert grew(requests, endpoint="chat.completions", status="500") == 1
    assert grew(requests, endpoint="chat.completions", status="200") == 1
    assert grew("assistd_upstream_request_duration_seconds_count", endpoint="chat.completions") == 2
    # Only the attempt that answered had a first chunk.
    assert grew("assistd_upstream_first_chunk_seconds_count") == 1
    assert grew("assistd_upstream_first_chunk_seconds_sum") > 0


def test_metrics_can_be_turned_off(
    tmp_path_factory: pytest.TempPathFactory, databases: Databases, fake: FakeUpstream
) -> None:
    srv = start_server(tmp_path_factory, databases, fake, metrics="false")
    try:
        response = httpx.get(f"{srv.url}/metrics")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "unknown_url"
    finally:
        srv.stop()


def test_finished_runs_and_open_streams_are_counted(metered: AssistdServer, fake: FakeUpstream) -> None:
    with make_client(metered) as client:
        before = _scrape(metered)
        assistant = client.beta.assistants.create(model="fake-model")
        thread = client.beta.threads.create(messages=[{"role": "user", "content": "hi"}])
        fake.push(Text("done"))
        run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
        assert run.status == "completed"
        fake.push(Text("slow", delay_s=2))
        thread = client.beta.threads.create(messages=[{"role": "user", "content": "stream"}])
        with client.beta.threads.runs.stream(thread_id=thread.id, assistant_id=assistant.id) as stream:
            next(iter(stream))  # the stream is open
            during = _scrape(metered)
            stream.until_done()
        after = _scrape(metered)
    done = "assistd_run_duration_seconds_count"
    assert _value(after, done, status="completed") - _value(before, done, status="completed") == 2
    assert _value(during, "assistd_sse_streams_open") == 1
    # The server's side of the stream ends just after the client has read its last frame.
    deadline = time.monotonic() + 5
    while _value(after, "assistd_sse_streams_open") != 0 and time.monotonic() < deadline:
        time.sleep(0.05)
        after = _scrape(metered)
    assert _value(after, "assistd_sse_streams_open") == 0
