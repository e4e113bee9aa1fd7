"""code_interpreter with several processes executing runs: a thread's runs go to the process holding its
session, wherever they are created, so its variables last; two threads' sessions never share state; and
when the holder dies, the next run starts a new session elsewhere with the thread's files, and says so.

The code tells which process ran it: a session's worker is a child of the assistd process that started it,
so ``os.getppid()`` inside the sandbox is that process's pid.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Iterator
from typing import Any

import asyncpg
import httpx2
import openai
import pytest
from openai import OpenAI

from assistd.store import code_sessions
from assistd.store.code_sessions import CodeSession
from assistd.store.database import Database
from conftest import Databases, make_client, start_server, wait_for_processes
from fake_upstream import FakeUpstream, Text, ToolCalls
from server import KEYS, AssistdServer

RESTARTED = "The earlier session of this thread ended (its worker stopped)"
LEASE_SECONDS = 3


def _run(client: OpenAI, fake: FakeUpstream, assistant: str, thread: str, code: str) -> list[dict[str, Any]]:
    """One run calling code_interpreter with ``code``: the call's outputs."""
    fake.push(ToolCalls([("code_interpreter", {"code": code})]), Text("Done."))
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread, assistant_id=assistant, poll_interval_ms=50
    )
    assert run.status == "completed", run.last_error
    steps = client.beta.threads.runs.steps.list(run_id=run.id, thread_id=thread, order="asc").data
    [call] = [
        call.model_dump()
        for step in steps
        if step.step_details.type == "tool_calls"
        for call in step.step_details.tool_calls
    ]
    outputs: list[dict[str, Any]] = call["code_interpreter"]["outputs"]
    return outputs


def _logs(outputs: list[dict[str, Any]]) -> list[str]:
    return [o["logs"] for o in outputs if o["type"] == "logs"]


def _assistant(client: OpenAI) -> str:
    return client.beta.assistants.create(model="fake-model", tools=[{"type": "code_interpreter"}]).id


@pytest.fixture(scope="module")
def two(
    tmp_path_factory: pytest.TempPathFactory, databases: Databases, fake: FakeUpstream
) -> Iterator[AssistdServer]:
    """`serve --processes 2`: both processes create and execute runs."""
    srv = start_server(tmp_path_factory, databases, fake, processes="2", long_poll_seconds="20")
    try:
        wait_for_processes(srv, 2)
        yield srv
    finally:
        srv.stop()


def test_a_threads_runs_reach_its_session_through_either_process(
    two: AssistdServer, fake: FakeUpstream
) -> None:
    """Every request on a new connection, so runs are created by both processes; each thread's code runs in
    one process, its variables intact, and another thread never sees them."""
    fresh = openai.DefaultHttpxClient(limits=httpx2.Limits(max_keepalive_connections=0))
    options: dict[str, Any] = {"max_retries": 0, "timeout": 30, "http_client": fresh}
    with OpenAI(base_url=two.base_url, api_key=KEYS[0], **options) as client:
        assistant = _assistant(client)
        first, second = (client.beta.threads.create().id for _ in range(2))
        _run(client, fake, assistant, first, "import os\ncount = 0")
        _run(client, fake, assistant, second, "import os\ncount = 100")
        seen: dict[str, list[str]] = {first: [], second: []}
        code = "count += 1\nprint(count, os.getppid())"
        for _ in range(5):
            for thread in (first, second):
                [logs] = _logs(_run(client, fake, assistant, thread, code))
                seen[thread].append(logs)
    counts = {thread: [int(line.split()[0]) for line in lines] for thread, lines in seen.items()}
    assert counts == {first: [1, 2, 3, 4, 5], second: [101, 102, 103, 104, 105]}
    for lines in seen.values():
        assert len({line.split()[1] for line in lines}) == 1  # one process ran all of a thread's code


def _code_session(url: str, thread_id: str) -> CodeSession | None:
    async def read() -> CodeSession | None:
        db = Database(url)
        try:
            async with db.read() as session:
                return await code_sessions.get(session, thread_id)
        finally:
            await db.close()

    return asyncio.run(read())


def test_a_session_that_idles_out_frees_its_threads_runs(
    tmp_path_factory: pytest.TempPathFactory, databases: Databases, fake: FakeUpstream
) -> None:
    """The thread's row names this process while its session lives, and stops pinning the thread's runs to
    it once the session has ended for being idle; the files its code wrote stay listed."""
    srv = start_server(tmp_path_factory, databases, fake, code_session_idle_seconds="1")
    try:
        with make_client(srv) as client:
            assistant, thread = _assistant(client), client.beta.threads.create().id
            _run(client, fake, assistant, thread, "open('/mnt/data/kept.txt', 'w').write('x')")
            held = _code_session(srv.database_url, thread)
            assert held is not None and held.live and list(held.files) == ["kept.txt"]
            deadline = time.monotonic() + 20
            while (ended := _code_session(srv.database_url, thread)) is not None and ended.live:
                assert time.monotonic() < deadline, "the idle session's end was never recorded"
                time.sleep(0.2)
            assert ended is not None and ended.session_id == held.session_id
            assert list(ended.files) == ["kept.txt"]
    finally:
        srv.stop()


def _processes(url: str) -> list[tuple[str, str, int]]:
    """The ``processes`` table: (id, role, pid) of each live assistd process."""

    async def read() -> list[tuple[str, str, int]]:
        connection = await asyncpg.connect(url)
        try:
            rows = await connection.fetch("SELECT id, role, pid FROM processes ORDER BY started_at")
            return [(row["id"], row["role"], row["pid"]) for row in rows]
        finally:
            await connection.close()

    return asyncio.run(read())


@pytest.mark.postgres_only
def test_a_session_lost_with_its_worker_starts_again_on_the_other_with_the_threads_files(
    tmp_path_factory: pytest.TempPathFactory, databases: Databases, fake: FakeUpstream
) -> None:
    """An API replica and two `assistd worker`s on one PostgreSQL: a thread's runs all go to the worker
    holding its session; that worker is killed (SIGKILL); the next run starts a new session on the other
    worker with the thread's files (an attached input and one the code wrote), and its step says so."""
    url = databases.new()
    env = {
        "ASSISTD_UPSTREAM_BASE_URL": fake.base_url,
        "ASSISTD_UPSTREAM_API_KEY": "sk-upstream",
        "ASSISTD_RUN_LEASE_SECONDS": str(LEASE_SECONDS),
        "ASSISTD_LONG_POLL_SECONDS": "20",
    }
    api = AssistdServer(tmp_path_factory.mktemp("api"), url, env, args=("--workers", "0"))
    workers = [AssistdServer(tmp_path_factory.mktemp(f"worker{n}"), url, env, worker=True) for n in range(2)]
    try:
        for server in [api, *workers]:
            server.start(timeout=60)
        pids = {w.process.pid: w for w in workers if w.process is not None}
        # Each worker is listed by its heartbeat; the API replica, which executes nothing, is not.
        assert sorted((role, pid) for _, role, pid in _processes(url)) == sorted(("worker", p) for p in pids)
        with make_client(api) as client:
            upload = client.files.create(file=("input.csv", io.BytesIO(b"a,b\n1,2\n")), purpose="assistants")
            assistant = _assistant(client)
            thread = client.beta.threads.create(
                messages=[
                    {
                        "role": "user",
                        "content": "Keep count.",
                        "attachments": [{"file_id": upload.id, "tools": [{"type": "code_interpreter"}]}],
                    }
                ]
            ).id
            other = client.beta.threads.create().id
            start = "import os\nsecret = 41\nopen('/mnt/data/made.txt', 'w').write('made earlier')\n"
            _run(client, fake, assistant, thread, start + "print(os.getppid())")
            ran_by = []
            for _ in range(4):
                code = "secret += 1\nprint(secret, os.getppid())"
                [logs] = _logs(_run(client, fake, assistant, thread, code))
                number, pid = logs.split()
                ran_by.append(int(pid))
            assert number == "45"  # each run found the variables of the one before
            assert set(ran_by) == {ran_by[0]}
            # Another thread's session never holds this one's variables.
            code = "try:\n    print(secret)\nexcept NameError:\n    print('unknown')"
            assert _logs(_run(client, fake, assistant, other, code)) == ["unknown\n"]

            holder = pids[ran_by[0]]
            survivor = next(w for w in workers if w is not holder)
            holder.kill()
            after = (
                "import os\n"
                "print(sorted(os.listdir('/mnt/data')))\n"
                "print(open('/mnt/data/made.txt').read())\n"
                "print('secret' in globals(), os.getppid())"
            )
            outputs = _run(client, fake, assistant, thread, after)
        note, logs = _logs(outputs)
        assert note.startswith(RESTARTED)
        assert logs.splitlines() == [
            "['input.csv', 'made.txt']",
            "made earlier",
            f"False {survivor.process.pid if survivor.process else None}",
        ]
        # The model read the note with the code's output.
        assert RESTARTED in fake.requests[-1]["messages"][-1]["content"]
        # A worker that stops cleanly leaves the table at once.
        gone = survivor.process.pid if survivor.process else None
        survivor.stop()
        assert gone not in [pid for _, _, pid in _processes(url)]
    finally:
        for server in [api, *workers]:
            server.stop()
