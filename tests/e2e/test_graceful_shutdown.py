"""SIGTERM to a process that executes runs: it claims nothing more, lets runs in flight finish within
ASSISTD_SHUTDOWN_GRACE_SECONDS, and hands the others back at once: another worker resumes them right
away, not once the lease would have lapsed, and each completes exactly once.

The layout: an API replica (`serve --workers 0`) that the client talks to, and two workers (`assistd
worker`), on one PostgreSQL database.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest
from openai import OpenAI

from conftest import Databases, make_client
from fake_upstream import Echo, FakeUpstream, Text
from server import AssistdServer

pytestmark = [pytest.mark.postgres_only, pytest.mark.slow]

# Far longer than any wait below: a run resumed within it was handed back, not taken over after a lapse.
_LEASE_SECONDS = 60
_GRACE_SECONDS = 3


@dataclass
class Layout:
    api: AssistdServer
    workers: list[AssistdServer]
    database_url: str
    env: dict[str, str]


@pytest.fixture
def fake() -> Iterator[FakeUpstream]:
    """A private upstream: no run left over from another module's servers takes these replies."""
    with FakeUpstream(models=["fake-model"]) as upstream:
        yield upstream


@pytest.fixture
def layout(
    tmp_path_factory: pytest.TempPathFactory, databases: Databases, fake: FakeUpstream
) -> Iterator[Layout]:
    url = databases.new()
    env = {
        "ASSISTD_UPSTREAM_BASE_URL": fake.base_url,
        "ASSISTD_UPSTREAM_API_KEY": "sk-upstream",
        "ASSISTD_RUN_LEASE_SECONDS": str(_LEASE_SECONDS),
        "ASSISTD_SHUTDOWN_GRACE_SECONDS": str(_GRACE_SECONDS),
        # Without a wake-up, a worker would only find a handed-back job at its look at the queue: slow it
        # down, so that finding it at once shows the wake-up.
        "ASSISTD_MAINTENANCE_INTERVAL_SECONDS": "10",
    }
    api = AssistdServer(tmp_path_factory.mktemp("api"), url, env, args=("--workers", "0"))
    workers = [AssistdServer(tmp_path_factory.mktemp(f"worker{n}"), url, env, worker=True) for n in range(2)]
    try:
        api.start()
        for worker in workers:
            worker.start()
        yield Layout(api, workers, url, env)
    finally:
        for server in [*workers, api]:
            server.stop()


def _holder(url: str, run_id: str) -> str | None:
    """``locked_by`` of the run's job (``host:pid:...`` of the worker executing it), None when none."""

    async def read() -> Any:
        connection = await asyncpg.connect(url)
        try:
            return await connection.fetchval("SELECT locked_by FROM run_jobs WHERE run_id = $1", run_id)
        finally:
            await connection.close()

    found = asyncio.run(read())
    return None if found is None else str(found)


def _executing(layout: Layout, run_id: str) -> AssistdServer:
    holder = _holder(layout.database_url, run_id)
    assert holder is not None
    return next(w for w in layout.workers if w.process is not None and f":{w.process.pid}:" in holder)


def _terminate(server: AssistdServer) -> None:
    """SIGTERM, without waiting for the process to end (``_ended`` does)."""
    assert server.process is not None
    server.process.send_signal(signal.SIGTERM)


def _ended(server: AssistdServer, within: float) -> None:
    assert server.process is not None
    code = server.process.wait(timeout=within)
    assert code == 0, f"the worker did not stop cleanly ({code}):\n{server.log()}"
    server.process = None


def _assistant_texts(client: OpenAI, thread_id: str) -> list[tuple[str, str]]:
    messages = client.beta.threads.messages.list(thread_id=thread_id, order="asc").data
    return [
        (m.status, "".join(p.text.value for p in m.content if p.type == "text"))
        for m in messages
        if m.role == "assistant"
    ]


def test_a_run_still_waiting_for_the_model_is_handed_back_and_finished_elsewhere(
    layout: Layout, fake: FakeUpstream
) -> None:
    fake.push(Text("never sent", delay_s=120), Text("finished elsewhere"))
    with make_client(layout.api) as client:
        assistant = client.beta.assistants.create(model="fake-model")
        thread = client.beta.threads.create(messages=[{"role": "user", "content": "hello"}])
        run = client.beta.threads.runs.create(thread.id, assistant_id=assistant.id)
        fake.wait_for_requests(1, timeout=20)
        victim = _executing(layout, run.id)
        stopped_at = time.monotonic()
        _terminate(victim)
        done = client.beta.threads.runs.poll(run.id, thread_id=thread.id, poll_interval_ms=50)
        took = time.monotonic() - stopped_at
        _ended(victim, within=10)
        assert done.status == "completed", done.last_error
        # The grace, then the hand-back's wake-up: the other worker claims it at once, well within the lease
        # and sooner than its next look at the queue would find it.
        assert _GRACE_SECONDS <= took < _GRACE_SECONDS + 2, took
        assert _assistant_texts(client, thread.id) == [("completed", "finished elsewhere")]
        steps = client.beta.threads.runs.steps.list(run_id=run.id, thread_id=thread.id).data
        assert [(s.type, s.status) for s in steps] == [("message_creation", "completed")]
    assert fake.served == 2  # the attempt cut short and the one that finished; no third
    assert "handing its runs back" in victim.log()


def test_a_run_cut_mid_answer_resumes_without_the_cut_answer_in_its_prompt(
    layout: Layout, fake: FakeUpstream
) -> None:
    # The reply starts at once and trickles for a minute: the SIGTERM lands while its message is a draft.
    fake.push(Text("partial " * 300, chunk_delay_s=0.2), Echo("re: "))
    with make_client(layout.api) as client:
        assistant = client.beta.assistants.create(model="fake-model", instructions="Answer.")
        thread = client.beta.threads.create(messages=[{"role": "user", "content": "tell me a story"}])
        run = client.beta.threads.runs.create(thread.id, assistant_id=assistant.id)
        deadline = time.monotonic() + 20
        while not any(s == "in_progress" for s, _ in _assistant_texts(client, thread.id)):
            assert time.monotonic() < deadline, "no answer started streaming"
            time.sleep(0.05)
        victim = _executing(layout, run.id)
        _terminate(victim)
        done = client.beta.threads.runs.poll(run.id, thread_id=thread.id, poll_interval_ms=50)
        _ended(victim, within=10)
        assert done.status == "completed", done.last_error
        texts = _assistant_texts(client, thread.id)
        # The draft is kept as it was cut (incomplete), and the answer is written once, by the other worker.
        assert [status for status, _ in texts] == ["incomplete", "completed"]
        assert texts[0][1].startswith("partial")
        assert texts[1] == ("completed", "re: tell me a story")
        steps = client.beta.threads.runs.steps.list(run_id=run.id, thread_id=thread.id, order="asc").data
        assert [(s.type, s.status) for s in steps] == [
            ("message_creation", "failed"),
            ("message_creation", "completed"),
        ]
    # The turn starts over from the thread: the model is not shown the answer that was cut.
    resumed = fake.requests[-1]["messages"]
    assert [m["role"] for m in resumed] == ["system", "user"], resumed
    assert fake.served == 2


def test_a_run_that_ends_within_the_grace_is_finished_by_the_stopping_worker(
    layout: Layout, fake: FakeUpstream
) -> None:
    fake.push(Text("finished before the grace ran out", delay_s=1.5), Text("claimed by the other", delay_s=1))
    with make_client(layout.api) as client:
        assistant = client.beta.assistants.create(model="fake-model")
        first = client.beta.threads.create(messages=[{"role": "user", "content": "quick"}])
        run = client.beta.threads.runs.create(first.id, assistant_id=assistant.id)
        fake.wait_for_requests(1, timeout=20)
        victim = _executing(layout, run.id)
        _terminate(victim)
        # Queued while the victim finishes: only the worker that goes on claims it.
        second = client.beta.threads.create(messages=[{"role": "user", "content": "next"}])
        other_run = client.beta.threads.runs.create(second.id, assistant_id=assistant.id)
        fake.wait_for_requests(2, timeout=20)
        assert _executing(layout, other_run.id) is not victim
        done = client.beta.threads.runs.poll(run.id, thread_id=first.id, poll_interval_ms=50)
        _ended(victim, within=10)
        assert done.status == "completed", done.last_error
        assert _assistant_texts(client, first.id) == [("completed", "finished before the grace ran out")]
        other = client.beta.threads.runs.poll(other_run.id, thread_id=second.id, poll_interval_ms=50)
        assert other.status == "completed", other.last_error
        assert _assistant_texts(client, second.id) == [("completed", "claimed by the other")]
    assert fake.served == 2  # neither run was sent twice


def test_a_serving_process_hands_its_runs_back_too(
    layout: Layout, fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Plain `assistd serve` executes the runs it creates; stopped, it hands them to the workers."""
    both = AssistdServer(tmp_path_factory.mktemp("both"), layout.database_url, layout.env).start()
    try:
        fake.push(Text("never sent", delay_s=120), Text("finished by a worker"))
        with make_client(both) as client:
            assistant = client.beta.assistants.create(model="fake-model")
            thread = client.beta.threads.create(messages=[{"role": "user", "content": "hello"}])
            run = client.beta.threads.runs.create(thread.id, assistant_id=assistant.id)
            fake.wait_for_requests(1, timeout=20)
            assert both.process is not None
            assert f":{both.process.pid}:" in (_holder(layout.database_url, run.id) or "")
            stopped_at = time.monotonic()
            _terminate(both)
        with make_client(layout.api) as client:
            done = client.beta.threads.runs.poll(run.id, thread_id=thread.id, poll_interval_ms=50)
            took = time.monotonic() - stopped_at
            assert done.status == "completed", done.last_error
            assert _GRACE_SECONDS <= took < _GRACE_SECONDS + 2, took
            assert _assistant_texts(client, thread.id) == [("completed", "finished by a worker")]
        code = both.process.wait(timeout=10)
        assert code in (0, -signal.SIGTERM), both.log()  # uvicorn re-raises the SIGTERM it caught
        both.process = None
    finally:
        both.stop()
    assert fake.served == 2
