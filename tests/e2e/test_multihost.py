"""A deployment on four test hosts (network namespaces, see tests/hosts.py): two API replicas that execute
nothing and two workers that execute everything, sharing one PostgreSQL over the network and nothing
else (no folder, no loopback). Whatever a client sees crossed a host boundary: a run is always executed
on another host than the replica the client talks to."""

from __future__ import annotations

import asyncio
import json
import time

import asyncpg
import httpx
import pytest
from openai.types.beta import Assistant
from openai.types.beta.threads import Run

from conftest import make_client
from fake_upstream import FakeUpstream, Text
from multihost_layout import LEASE_SECONDS, Layout, layout_fixture, net_fixture, replicas_fixture  # noqa: F401
from server import KEYS, AssistdServer
from sse import frames_of

pytestmark = [pytest.mark.postgres_only, pytest.mark.multihost]


def test_what_one_host_writes_another_serves(replicas: list[AssistdServer], fake: FakeUpstream) -> None:
    a, b = replicas
    with make_client(a) as on_a, make_client(b) as on_b:
        assistant = on_a.beta.assistants.create(model="fake-model", name="shared")
        assert Assistant.model_validate(on_b.beta.assistants.retrieve(assistant.id).model_dump()) == assistant
        thread = on_a.beta.threads.create(messages=[{"role": "user", "content": "hello"}])
        fake.push("hi from the upstream")
        run = on_a.beta.threads.runs.create(thread.id, assistant_id=assistant.id)
        done = on_b.beta.threads.runs.poll(run.id, thread_id=thread.id, poll_interval_ms=50)
        assert Run.model_validate(done.model_dump()).status == "completed"
        messages = on_b.beta.threads.messages.list(thread.id, order="asc")
        assert [m.content[0].text.value for m in messages.data] == ["hello", "hi from the upstream"]  # type: ignore[union-attr]


def test_many_runs_over_shared_threads_complete_exactly_once(
    replicas: list[AssistdServer], fake: FakeUpstream
) -> None:
    """200 runs over 50 threads, created alternately on both hosts: every one completes, with exactly
    one upstream request and one reply each."""
    from concurrent.futures import ThreadPoolExecutor

    a, b = replicas
    with make_client(a) as on_a, make_client(b) as on_b:
        assistant = on_a.beta.assistants.create(model="fake-model")
        threads = [on_a.beta.threads.create().id for _ in range(50)]

        def four_runs(n: int) -> list[str]:
            client = (on_a, on_b)[n % 2]
            done = []
            for turn in range(4):
                client.beta.threads.messages.create(threads[n], role="user", content=f"turn {turn}")
                run = client.beta.threads.runs.create_and_poll(
                    thread_id=threads[n], assistant_id=assistant.id, poll_interval_ms=50
                )
                assert run.status == "completed", run.last_error
                done.append(run.id)
            return done

        served_before = fake.served
        with ThreadPoolExecutor(16) as pool:
            run_ids = [run_id for runs in pool.map(four_runs, range(50)) for run_id in runs]
        assert len(set(run_ids)) == 200
        assert fake.served - served_before == 200
        for n, thread_id in enumerate(threads):
            messages = (on_a, on_b)[n % 2].beta.threads.messages.list(thread_id, limit=100).data
            replies = [m for m in messages if m.role == "assistant"]
            assert len(replies) == 4
            assert sorted(m.run_id or "" for m in replies) == sorted(run_ids[4 * n : 4 * n + 4])


def test_concurrent_runs_on_one_thread_across_hosts_one_wins(
    replicas: list[AssistdServer], fake: FakeUpstream
) -> None:
    """20 create-run calls at once on one thread, half to each host: one run is created, the rest get
    OpenAI's 400 for a thread with an active run."""
    import threading

    import openai

    a, b = replicas
    with make_client(a) as on_a, make_client(b) as on_b:
        assistant = on_a.beta.assistants.create(model="fake-model")
        thread = on_a.beta.threads.create(messages=[{"role": "user", "content": "race"}])
        # The winner's reply is slow, so it is still active while the last of the twenty arrive: a run
        # that had already ended would rightly let another start.
        fake.push(Text("won", delay_s=5))
        start = threading.Barrier(20)
        outcomes: list[object] = []

        def attempt(n: int) -> None:
            client = (on_a, on_b)[n % 2]
            start.wait(timeout=30)
            try:
                outcomes.append(client.beta.threads.runs.create(thread.id, assistant_id=assistant.id))
            except openai.BadRequestError as exc:
                outcomes.append(exc)

        workers = [threading.Thread(target=attempt, args=(n,)) for n in range(20)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(60)
        runs = [o for o in outcomes if isinstance(o, Run)]
        refused = [o for o in outcomes if isinstance(o, openai.BadRequestError)]
        assert (len(runs), len(refused)) == (1, 19)
        for error in refused:
            assert "already has an active run" in error.message
        on_a.beta.threads.runs.poll(runs[0].id, thread_id=thread.id, poll_interval_ms=50)


_WORDS = [f"w{n} " for n in range(60)]


def _deltas(frames: list[dict[str, str]]) -> str:
    return "".join(
        json.loads(f["data"])["delta"]["content"][0]["text"]["value"]
        for f in frames
        if f.get("event") == "thread.message.delta"
    )


def test_a_stream_from_a_replica_that_executes_nothing_has_every_delta_in_order(
    replicas: list[AssistdServer], fake: FakeUpstream
) -> None:
    a, _ = replicas
    with make_client(a) as client:
        assistant = client.beta.assistants.create(model="fake-model")
        thread = client.beta.threads.create(messages=[{"role": "user", "content": "count"}])
        fake.push(Text("".join(_WORDS), chunks=_WORDS, chunk_delay_s=0.01))
        with client.beta.threads.runs.stream(thread_id=thread.id, assistant_id=assistant.id) as stream:
            events = list(stream)
            final = stream.get_final_messages()
    names = [e.event for e in events]
    assert names[:3] == ["thread.run.created", "thread.run.queued", "thread.run.in_progress"]
    assert names[-1] == "thread.run.completed"
    pieces = [
        e.data.delta.content[0].text.value  # type: ignore[union-attr]
        for e in events
        if e.event == "thread.message.delta"
    ]
    assert "".join(pieces) == "".join(_WORDS)
    assert final[0].content[0].text.value == "".join(_WORDS)  # type: ignore[union-attr]


def test_a_stream_cut_by_a_dead_replica_resumes_on_the_other(
    replicas: list[AssistdServer], fake: FakeUpstream
) -> None:
    """The client reads part of a run's stream from replica A, A dies (SIGKILL), and the client asks
    replica B for the rest, after the last event id it saw: together, every event once, in order."""
    a, b = replicas
    with make_client(a) as client:
        assistant = client.beta.assistants.create(model="fake-model")
        thread = client.beta.threads.create(messages=[{"role": "user", "content": "count slowly"}])
    fake.push(Text("".join(_WORDS), chunks=_WORDS, chunk_delay_s=0.05))
    seen: list[dict[str, str]] = []
    headers = {"Authorization": f"Bearer {KEYS[0]}"}
    body = {"assistant_id": assistant.id, "stream": True}
    with (
        httpx.Client(base_url=a.base_url, timeout=30, headers=headers) as http,
        http.stream("POST", f"/threads/{thread.id}/runs", json=body) as r,
    ):
        buffer = ""
        for chunk in r.iter_text():
            buffer += chunk
            *blocks, buffer = buffer.split("\n\n")
            seen += frames_of("".join(block + "\n\n" for block in blocks)) if blocks else []
            if sum(f.get("event") == "thread.message.delta" for f in seen) >= 10:
                a.kill()
                break
    run_id = json.loads(seen[0]["data"])["id"]
    last = seen[-1]["id"]
    with httpx.Client(base_url=b.base_url, timeout=60, headers=headers) as http:
        rest = http.get(f"/threads/{thread.id}/runs/{run_id}/events", headers={"Last-Event-ID": last})
    assert rest.status_code == 200, rest.text
    after = frames_of(rest.text)
    assert after[-1]["event"] == "done"
    ids = [int(f["id"]) for f in [*seen, *after] if "id" in f]
    assert ids == list(range(1, len(ids) + 1))
    assert _deltas([*seen, *after]) == "".join(_WORDS)
    assert after[-2]["event"] == "thread.run.completed"


def _executing_worker(url: str, run_id: str) -> str:
    """``locked_by`` of the run's job: ``host:pid:...`` of the worker holding its lease."""

    async def read() -> str:
        connection = await asyncpg.connect(url)
        try:
            return str(await connection.fetchval("SELECT locked_by FROM run_jobs WHERE run_id = $1", run_id))
        finally:
            await connection.close()

    return asyncio.run(read())


def test_a_worker_killed_mid_run_loses_it_to_the_other_within_the_lease(
    layout: Layout, replicas: list[AssistdServer], fake: FakeUpstream
) -> None:
    a, _ = replicas
    fake.push(Text("never sent", delay_s=60), Text("taken over"))
    with make_client(a) as client:
        assistant = client.beta.assistants.create(model="fake-model")
        thread = client.beta.threads.create(messages=[{"role": "user", "content": "hello"}])
        served = fake.served
        run = client.beta.threads.runs.create(thread.id, assistant_id=assistant.id)
        fake.wait_for_requests(served + 1, timeout=20)
        holder = _executing_worker(layout.database_url, run.id)
        victim = next(w for w in layout.workers if w.process and f":{w.process.pid}:" in holder)
        killed_at = time.monotonic()
        victim.kill()
        done = client.beta.threads.runs.poll(run.id, thread_id=thread.id, poll_interval_ms=100)
        took = time.monotonic() - killed_at
        messages = client.beta.threads.messages.list(thread.id, order="asc").data
    assert done.status == "completed", done.last_error
    # Taken over once the lease lapsed (plus the other worker's look at the queue), not much later.
    assert took < LEASE_SECONDS + 5, took
    replies = [m for m in messages if m.role == "assistant"]
    assert [m.content[0].text.value for m in replies] == ["taken over"]  # type: ignore[union-attr]
    assert fake.served == served + 2  # the killed attempt and the one that finished: no third
