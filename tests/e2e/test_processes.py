"""``assistd serve --processes 2``: two processes share the port, and whichever one a request reaches, it
sees what the other did to a run.

The long poll is set far beyond the client's timeout: a poll that reached the process not executing the
run, and never heard of its end, would time the test out instead of answering late.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from pathlib import Path

import httpx2
import openai
import pytest
from openai import OpenAI
from openai.types.beta import AssistantStreamEvent

from conftest import Databases, start_server, wait_for_processes
from fake_upstream import FakeUpstream, Text
from server import KEYS, AssistdServer

RUNS = 16


@pytest.fixture(scope="module")
def two(
    tmp_path_factory: pytest.TempPathFactory, databases: Databases, fake: FakeUpstream
) -> Iterator[AssistdServer]:
    srv = start_server(
        tmp_path_factory,
        databases,
        fake,
        processes="2",
        long_poll_seconds="60",
        # A cancel must reach the executing process through the event bus, not its lease's heartbeat.
        run_lease_seconds="120",
    )
    try:
        wait_for_processes(srv, 2)
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def two_client(two: AssistdServer) -> Iterator[OpenAI]:
    # A new connection for every request, so that requests about one run reach both processes.
    fresh = openai.DefaultHttpxClient(limits=httpx2.Limits(max_keepalive_connections=0))
    with OpenAI(base_url=two.base_url, api_key=KEYS[0], max_retries=0, timeout=15, http_client=fresh) as c:
        yield c


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


def test_two_processes_serve_one_port(two: AssistdServer) -> None:
    assert two.process is not None
    # Each process holds a numbered slot's lock for as long as it lives: both slots are held, by two of
    # the server's children.
    for slot in (two.data_dir / "relay").glob("slot-*.lock"):
        with slot.open("w") as handle, pytest.raises(BlockingIOError):
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    assert len(_children(two.process.pid)) >= 2


def test_polls_see_runs_end_in_either_process(two_client: OpenAI, fake: FakeUpstream) -> None:
    assistant = two_client.beta.assistants.create(model="fake-model")
    for n in range(RUNS):
        fake.push(Text(f"answer {n}"))
        thread = two_client.beta.threads.create(messages=[{"role": "user", "content": f"question {n}"}])
        run = two_client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
        assert run.status == "completed", run
        reply = two_client.beta.threads.messages.list(thread_id=thread.id).data[0]
        assert reply.content[0].type == "text" and reply.content[0].text.value == f"answer {n}"


def test_streams_and_cancels_across_processes(two_client: OpenAI, fake: FakeUpstream) -> None:
    assistant = two_client.beta.assistants.create(model="fake-model")
    fake.push(Text("streamed"))
    thread = two_client.beta.threads.create(messages=[{"role": "user", "content": "stream it"}])
    events: list[AssistantStreamEvent] = []
    with two_client.beta.threads.runs.stream(thread_id=thread.id, assistant_id=assistant.id) as stream:
        events.extend(stream)
    assert events[-1].event == "thread.run.completed"
    assert (
        "".join(
            e.data.delta.content[0].text.value or ""  # type: ignore[union-attr]
            for e in events
            if e.event == "thread.message.delta"
        )
        == "streamed"
    )

    # Each cancel reaches one process or the other; the run executes in the one that created it.
    for _ in range(6):
        fake.reset()  # so that the wait below counts this run's request only
        fake.push(Text("too late", delay_s=30))
        thread = two_client.beta.threads.create(messages=[{"role": "user", "content": "wait"}])
        run = two_client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
        fake.wait_for_requests(1)
        two_client.beta.threads.runs.cancel(run_id=run.id, thread_id=thread.id)
        final = two_client.beta.threads.runs.poll(run.id, thread_id=thread.id, poll_interval_ms=50)
        assert final.status == "cancelled", final
