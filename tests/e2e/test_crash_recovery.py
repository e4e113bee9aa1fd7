"""Fast recovery after kill -9: with the default lease, a run that a killed server was executing is taken
back by the server restarted in its place as soon as that one answers, not once the lease lapses, on SQLite
and on PostgreSQL; and `serve --processes 2` takes a killed process's runs on its living sibling without
touching the runs the sibling executes.

Each figure is printed (``-s`` shows them; docs/reliability.md quotes them).
"""

from __future__ import annotations

import os
import signal
import time

import httpx2
import openai
import pytest
from openai import OpenAI

from conftest import make_client, wait_for_processes
from fake_upstream import Echo, FakeUpstream, Text
from restarts import Servers, fake_fixture, query, servers_fixture, wait_for  # noqa: F401
from server import KEYS, AssistdServer

pytestmark = pytest.mark.slow

# What the acceptance asks: resumed (here: finished) within this long of the restarted server answering.
RESUME_BOUND_SECONDS = 10.0


def _kind(server: AssistdServer) -> str:
    return server.database_url.split(":")[0]


def _holder(server: AssistdServer, run_id: str) -> str | None:
    rows = query(server.database_url, "SELECT locked_by FROM run_jobs WHERE run_id = ?", run_id)
    return None if not rows or rows[0][0] is None else str(rows[0][0])


def _until_terminal_or_resumed(
    client: OpenAI, server: AssistdServer, thread_id: str, run_id: str, killed: str
) -> tuple[float, str]:
    """Seconds until the run is final, or held by a process other than the ``killed`` one, and its status."""
    started = time.monotonic()
    run = wait_for(client, server, thread_id, run_id, {"completed", "in_progress", "queued"})
    while run.status != "completed":
        holder = _holder(server, run_id)
        if holder is not None and holder != killed:
            break
        assert time.monotonic() - started < 60, server.log()
        time.sleep(0.05)
        run = wait_for(client, server, thread_id, run_id, {"completed", "in_progress", "queued"})
    return time.monotonic() - started, run.status


@pytest.mark.parametrize("queued_too", [False, True], ids=["in_progress", "in_progress_and_queued"])
def test_a_run_killed_mid_stream_is_resumed_as_soon_as_the_server_is_back(
    servers: Servers, fake: FakeUpstream, queued_too: bool
) -> None:
    # The default lease (10 s): nothing here shortens it. One worker when a second run must stay queued.
    server = servers.start(**({"workers": "1"} if queued_too else {}))
    fake.push(Text("partial " * 200, chunk_delay_s=0.2), Echo("re: "), Echo("re: "))
    with make_client(server) as client:
        assistant = client.beta.assistants.create(model="fake-model")
        thread = client.beta.threads.create(messages=[{"role": "user", "content": "tell me a story"}])
        run = client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
        # The reply is streaming: an assistant message is being written.
        deadline = time.monotonic() + 30
        while not any(
            m.role == "assistant" and m.status == "in_progress"
            for m in client.beta.threads.messages.list(thread_id=thread.id).data
        ):
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.05)
        if queued_too:
            other = client.beta.threads.create(messages=[{"role": "user", "content": "me next"}])
            queued = client.beta.threads.runs.create(thread_id=other.id, assistant_id=assistant.id)
            assert client.beta.threads.runs.retrieve(run_id=queued.id, thread_id=other.id).status == "queued"
        killed = _holder(server, run.id)
        assert killed is not None

    lease_left = query(server.database_url, "SELECT locked_until FROM run_jobs WHERE run_id = ?", run.id)
    killed_at = time.monotonic()
    server = servers.restart(kill=True)
    answered_at = time.time()
    restart_took = time.monotonic() - killed_at
    with make_client(server) as client:
        took, _ = _until_terminal_or_resumed(client, server, thread.id, run.id, killed)
        print(
            f"\ncrash recovery [{_kind(server)}]: resumed {took:.2f} s after the restarted server answered"
            f" ({restart_took:.2f} s from the kill to its answer)"
        )
        assert took < RESUME_BOUND_SECONDS, server.log()
        done = wait_for(client, server, thread.id, run.id, {"completed"})
        assert done.last_error is None
        texts = [
            (m.status, "".join(part.text.value for part in m.content if part.type == "text"))
            for m in client.beta.threads.messages.list(thread_id=thread.id, order="asc").data
            if m.role == "assistant"
        ]
        assert texts[-1] == ("completed", "re: tell me a story")
        assert all(status != "in_progress" for status, _ in texts)
        if queued_too:
            assert wait_for(client, server, other.id, queued.id, {"completed"}).last_error is None
    # The new process said why it did not wait for the lease: it found the killed one dead.
    assert f"processes {killed} of this host died" in server.log(), server.log()
    # For the record: how much of the killed process's lease was left when the new one answered.
    print(f"lease left at the restart: {float(lease_left[0][0]) - answered_at:.2f} s")


def test_a_killed_process_of_serve_processes_2_is_replaced_by_its_sibling_without_touching_its_runs(
    servers: Servers, fake: FakeUpstream
) -> None:
    # Default lease. Eight or more slow runs spread over both processes; one process is then killed: its
    # runs go to the sibling, whose own runs are never claimed a second time (one upstream request each).
    server = servers.start(processes="2")
    wait_for_processes(server, 2)
    # A new connection for every request, so that the runs are made (and so held) by both processes.
    fresh = openai.DefaultHttpxClient(limits=httpx2.Limits(max_keepalive_connections=0))
    made: list[tuple[str, str]] = []
    holders: dict[str, str | None] = {}
    with OpenAI(
        base_url=server.base_url, api_key=KEYS[0], max_retries=0, timeout=30, http_client=fresh
    ) as client:
        assistant = client.beta.assistants.create(model="fake-model")
        pids: set[int] = set()
        while len(made) < 8 or (len(pids) < 2 and len(made) < 40):
            fake.push(Text("slow " * 80, chunk_delay_s=0.25))
            question = {"role": "user", "content": f"question {len(made)}"}
            thread = client.beta.threads.create(messages=[question])  # type: ignore[list-item]
            run = client.beta.threads.runs.create(thread.id, assistant_id=assistant.id)
            made.append((thread.id, run.id))
            fake.wait_for_requests(len(made), timeout=60)
            holders[run.id] = _holder(server, run.id)
            pids |= {int(h.split(":")[1]) for h in holders.values() if h is not None}
        assert len(pids) == 2, f"every run went to one process of the two: {holders}"
        runs = len(made)
        victim = sorted(pids)[0]
        os.kill(victim, signal.SIGKILL)
        for _ in range(runs):
            fake.push(Echo("again: "))
        killed_at = time.monotonic()
        # The killed process's runs first: how soon they were taken over and finished.
        order = sorted(made, key=lambda made_run: f":{victim}:" not in (holders[made_run[1]] or ""))
        finished = {}
        for thread_id, run_id in order:
            finished[run_id] = client.beta.threads.runs.poll(run_id, thread_id=thread_id, poll_interval_ms=50)
            if f":{victim}:" in (holders[run_id] or ""):
                took = time.monotonic() - killed_at
    print(f"\nsibling takeover [{_kind(server)}]: the killed process's runs final {took:.2f} s after")
    assert {run.status for run in finished.values()} == {"completed"}
    requests = {n: 0 for n in range(runs)}
    for body in fake.requests:
        users = [m["content"] for m in body["messages"] if m.get("role") == "user"]
        if users and isinstance(users[-1], str) and users[-1].startswith("question "):
            requests[int(users[-1].split()[1])] += 1
    for n, (_, run_id) in enumerate(made):
        holder = holders[run_id]
        assert holder is not None
        # A run of the living process was asked once; one of the killed process twice (the resumed one).
        expected = 2 if int(holder.split(":")[1]) == victim else 1
        assert requests[n] == expected, (n, holder, requests)
