"""Files and code_interpreter sessions on the four test hosts (multihost_layout.py): no host shares a folder
with another, so whatever a worker reads of a file came through PostgreSQL, and a thread's session state
lives on exactly one worker host.

The code tells which worker ran it: a session's worker is a child of the assistd process that started it,
so ``os.getppid()`` inside the sandbox is that worker's pid.
"""

from __future__ import annotations

import io
from typing import Any

import pytest
from openai import OpenAI

from conftest import make_client
from fake_upstream import FakeUpstream, Text, ToolCalls
from multihost_layout import Layout, layout_fixture, net_fixture, replicas_fixture  # noqa: F401
from server import AssistdServer

pytestmark = [pytest.mark.postgres_only, pytest.mark.multihost]

FACT = "The heron count at Marsh Lake was 217 this spring."
REPORT = "Marsh Lake survey.\n\n" + FACT + "\n\nCounts are made at dawn.\n"
CONTENT = "step_details.tool_calls[*].file_search.results[*].content"
RESTARTED = "The earlier session of this thread ended (its worker stopped)"


def _calls(client: OpenAI, thread: str, run: str) -> list[dict[str, Any]]:
    steps = client.beta.threads.runs.steps.list(run_id=run, thread_id=thread, order="asc", include=[CONTENT])
    return [
        call.model_dump()
        for step in steps.data
        if step.step_details.type == "tool_calls"
        for call in step.step_details.tool_calls
    ]


def _logs(call: dict[str, Any]) -> list[str]:
    return [o["logs"] for o in call["code_interpreter"]["outputs"] if o["type"] == "logs"]


def _code_run(client: OpenAI, fake: FakeUpstream, assistant: str, thread: str, code: str) -> list[str]:
    """A run calling code_interpreter once: its logs outputs."""
    fake.push(ToolCalls([("code_interpreter", {"code": code})]), Text("Done."))
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread, assistant_id=assistant, poll_interval_ms=50
    )
    assert run.status == "completed", run.last_error
    [call] = _calls(client, thread, run.id)
    return _logs(call)


def test_a_file_uploaded_through_one_replica_is_searched_and_read_by_a_worker_on_another_host(
    layout: Layout, replicas: list[AssistdServer], fake: FakeUpstream
) -> None:
    a, b = replicas
    with make_client(a) as on_a, make_client(b) as on_b:
        upload = on_a.files.create(file=("survey.md", io.BytesIO(REPORT.encode())), purpose="assistants")
        store = on_a.vector_stores.create(name="surveys", file_ids=[upload.id])
        # Ingested by a worker, seen done through the other replica.
        done = on_b.vector_stores.files.poll(upload.id, vector_store_id=store.id, poll_interval_ms=50)
        assert done.status == "completed", done.last_error
        assistant = on_b.beta.assistants.create(
            model="fake-model",
            tools=[{"type": "file_search"}, {"type": "code_interpreter"}],
            tool_resources={
                "file_search": {"vector_store_ids": [store.id]},
                "code_interpreter": {"file_ids": [upload.id]},
            },
        )
        thread = on_b.beta.threads.create(messages=[{"role": "user", "content": "How many herons?"}])
        code = "import os\nprint(open('/mnt/data/survey.md').read().splitlines()[2])\nprint(os.getppid())"
        fake.push(
            ToolCalls([("file_search", {"queries": ["heron count Marsh Lake"]})]),
            ToolCalls([("code_interpreter", {"code": code})]),
            Text("217 herons."),
        )
        run = on_b.beta.threads.runs.create_and_poll(
            thread_id=thread.id, assistant_id=assistant.id, poll_interval_ms=50
        )
        assert run.status == "completed", run.last_error
        search, code_call = _calls(on_a, thread.id, run.id)
    passages = [part["text"] for result in search["file_search"]["results"] for part in result["content"]]
    assert any(FACT in passage for passage in passages), passages
    [logs] = _logs(code_call)
    line, pid = logs.splitlines()
    assert line == FACT
    # Run by one of the workers, each on a host of its own: not by the replicas the file went through.
    assert int(pid) in [w.process.pid for w in layout.workers if w.process is not None]


def test_a_session_lost_with_its_workers_host_starts_again_on_the_other_host_with_the_threads_files(
    layout: Layout, replicas: list[AssistdServer], fake: FakeUpstream
) -> None:
    """A thread's runs go to the worker holding its session, whichever replica creates them; SIGKILL that
    worker, and the next run starts a new session on the other host, with the thread's input file and the
    file its code wrote, and its step says the session was restarted."""
    a, b = replicas
    with make_client(a) as on_a, make_client(b) as on_b:
        upload = on_a.files.create(
            file=("notes.txt", io.BytesIO(b"kept in the database")), purpose="assistants"
        )
        assistant = on_a.beta.assistants.create(model="fake-model", tools=[{"type": "code_interpreter"}]).id
        thread = on_b.beta.threads.create(tool_resources={"code_interpreter": {"file_ids": [upload.id]}}).id
        start = "import os\ntotal = 1\nopen('/mnt/data/out.txt', 'w').write('written by code')\n"
        start += "print(os.getppid())"
        [first] = _code_run(on_a, fake, assistant, thread, start)
        holder = layout.worker_of(int(first))
        [again] = _code_run(on_b, fake, assistant, thread, "total += 1\nprint(total, os.getppid())")
        assert again == f"2 {first}"  # the other replica's run went to the session's worker

        holder.kill()
        code = (
            "import os\n"
            "print(sorted(os.listdir('/mnt/data')))\n"
            "print(open('/mnt/data/notes.txt').read(), '|', open('/mnt/data/out.txt').read())\n"
            "print('total' in globals(), os.getppid())"
        )
        note, logs = _code_run(on_a, fake, assistant, thread, code)
    assert note.startswith(RESTARTED)
    listing, contents, state = logs.splitlines()
    assert listing == "['notes.txt', 'out.txt']"
    assert contents == "kept in the database | written by code"
    survivor = next(w for w in layout.workers if w is not holder)
    assert survivor.process is not None
    assert state == f"False {survivor.process.pid}"
