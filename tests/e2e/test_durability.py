"""Durability: what assistd stored survives a restart, and runs survive a crash or a stop mid-flight.

Each test starts its own server(s) on a fresh database, because it stops or kills them; a restart is
a new ``AssistdServer`` on the same ``database_url``.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from openai import OpenAI
from openai.types.beta import Assistant, Thread
from openai.types.beta.threads import Message, Run
from openai.types.beta.threads.runs import RunStep

from conftest import make_client
from fake_upstream import Echo, FakeUpstream, Text, ToolCalls
from restarts import POLL_SECONDS, Servers, fake_fixture, servers_fixture, wait_for  # noqa: F401
from samples import WEATHER_TOOL
from server import AssistdServer
from wire import check, check_schema, raw

pytestmark = pytest.mark.slow


def wait_until_assistant_draft(client: OpenAI, thread_id: str) -> Message:
    """Poll the thread until an assistant message is being written."""
    deadline = time.monotonic() + POLL_SECONDS
    while time.monotonic() < deadline:
        for message in client.beta.threads.messages.list(thread_id=thread_id).data:
            if message.role == "assistant" and message.status == "in_progress":
                return message
        time.sleep(0.05)
    pytest.fail("no assistant message started streaming")


def assistant_texts(client: OpenAI, thread_id: str) -> list[tuple[str, str]]:
    """``(status, text)`` of every assistant message, oldest first."""
    messages = client.beta.threads.messages.list(thread_id=thread_id, order="asc").data
    out = []
    for message in messages:
        if message.role == "assistant":
            text = "".join(part.text.value for part in message.content if part.type == "text")
            out.append((message.status, text))
    return out


def requests_for(fake: FakeUpstream, user_text: str) -> int:
    """How many chat requests the fake received whose last user message is ``user_text``."""
    count = 0
    for body in fake.requests:
        users = [m for m in body["messages"] if m.get("role") == "user"]
        if users and users[-1]["content"] == user_text:
            count += 1
    return count


def snapshot(client: OpenAI, assistant_ids: list[str], thread_ids: list[str]) -> dict[str, Any]:
    """The raw JSON of everything reachable from these ids, each checked against the wire contract."""
    snap: dict[str, Any] = {}
    listed = raw(client.beta.assistants.with_raw_response.list(limit=100))
    check_schema_list(listed, "ListAssistantsResponse", Assistant)
    snap["assistants"] = listed
    for assistant_id in assistant_ids:
        body = raw(client.beta.assistants.with_raw_response.retrieve(assistant_id))
        check(Assistant, body, "AssistantObject")
        snap[assistant_id] = body
    # assistd's thread list extension, read with the SDK's generic request method.
    snap["threads"] = client.get("/threads?limit=100", cast_to=object)
    for thread_id in thread_ids:
        body = raw(client.beta.threads.with_raw_response.retrieve(thread_id))
        check(Thread, body, "ThreadObject")
        snap[thread_id] = body
        messages = raw(client.beta.threads.messages.with_raw_response.list(thread_id=thread_id, limit=100))
        check_schema_list(messages, "ListMessagesResponse", Message)
        snap[f"{thread_id}/messages"] = messages
        for message in messages["data"]:
            body = raw(
                client.beta.threads.messages.with_raw_response.retrieve(
                    message_id=message["id"], thread_id=thread_id
                )
            )
            check(Message, body, "MessageObject")
            snap[message["id"]] = body
        runs = raw(client.beta.threads.runs.with_raw_response.list(thread_id=thread_id, limit=100))
        check_schema_list(runs, "ListRunsResponse", Run)
        snap[f"{thread_id}/runs"] = runs
        for run in runs["data"]:
            body = raw(
                client.beta.threads.runs.with_raw_response.retrieve(run_id=run["id"], thread_id=thread_id)
            )
            check(Run, body, "RunObject")
            snap[run["id"]] = body
            steps = raw(
                client.beta.threads.runs.steps.with_raw_response.list(
                    run_id=run["id"], thread_id=thread_id, limit=100
                )
            )
            check_schema_list(steps, "ListRunStepsResponse", RunStep)
            snap[f"{run['id']}/steps"] = steps
            for step in steps["data"]:
                body = raw(
                    client.beta.threads.runs.steps.with_raw_response.retrieve(
                        step_id=step["id"], run_id=run["id"], thread_id=thread_id
                    )
                )
                check(RunStep, body, "RunStepObject")
                snap[step["id"]] = body
    return snap


def check_schema_list(page: dict[str, Any], schema_name: str, item_type: type[Any]) -> None:
    # OpenAI answers an empty list with null first_id/last_id, which its OpenAPI description (string)
    # does not allow: the schema is checked on non-empty pages only.
    if page["data"]:
        check_schema(page, schema_name)
    else:
        assert page == {"object": "list", "data": [], "first_id": None, "last_id": None, "has_more": False}
    for item in page["data"]:
        check(item_type, item)


# --------------------------------------------------------------------------------------------------
# 1. A restart keeps everything
# --------------------------------------------------------------------------------------------------


def test_restart_keeps_every_object_and_a_waiting_run_still_takes_tool_outputs(
    servers: Servers, fake: FakeUpstream
) -> None:
    server = servers.start()
    with make_client(server) as client:
        plain = client.beta.assistants.create(
            model="fake-model",
            name="Plain",
            description="No tools.",
            instructions="Be brief.",
            metadata={"team": "durability"},
            temperature=0.4,
            top_p=0.9,
        )
        tooled = client.beta.assistants.create(
            model="fake-model-large", name="Weather", instructions="Use the tool.", tools=[WEATHER_TOOL]
        )
        chat = client.beta.threads.create(
            messages=[{"role": "user", "content": "Weather in Paris?", "metadata": {"n": "1"}}],
            metadata={"title": "Paris chat"},
        )
        client.beta.threads.messages.create(thread_id=chat.id, role="user", content="And be quick.")

        # A run that completes with steps: a tool call, its output, then the answer.
        fake.push(ToolCalls([("get_weather", {"city": "Paris"})]), Text("Sunny in Paris."))
        run = client.beta.threads.runs.create(thread_id=chat.id, assistant_id=tooled.id, metadata={"k": "v"})
        run = wait_for(client, server, chat.id, run.id, {"requires_action"})
        assert run.required_action is not None
        [call] = run.required_action.submit_tool_outputs.tool_calls
        client.beta.threads.runs.submit_tool_outputs(
            run_id=run.id, thread_id=chat.id, tool_outputs=[{"tool_call_id": call.id, "output": "sunny, 24C"}]
        )
        completed = wait_for(client, server, chat.id, run.id, {"completed"})
        # A second, plain run on the same thread.
        fake.push(Text("Anything else?"))
        second = client.beta.threads.runs.create(thread_id=chat.id, assistant_id=plain.id)
        wait_for(client, server, chat.id, second.id, {"completed"})

        # A run left waiting for tool outputs across the restart.
        pending_thread = client.beta.threads.create(
            messages=[{"role": "user", "content": "Weather in Rome?"}], metadata={"title": "Rome chat"}
        )
        fake.push(ToolCalls([("get_weather", {"city": "Rome"}), ("get_weather", {"city": "Milan"})]))
        pending = client.beta.threads.runs.create(thread_id=pending_thread.id, assistant_id=tooled.id)
        pending = wait_for(client, server, pending_thread.id, pending.id, {"requires_action"})
        empty = client.beta.threads.create()

        assistant_ids = [plain.id, tooled.id]
        thread_ids = [chat.id, pending_thread.id, empty.id]
        before = snapshot(client, assistant_ids, thread_ids)

    assert len(before[f"{completed.id}/steps"]["data"]) == 2
    assert [m["role"] for m in before[f"{chat.id}/messages"]["data"]] == ["assistant"] * 2 + ["user"] * 2
    assert before[pending.id]["status"] == "requires_action"
    requests_before = len(fake.requests)

    server = servers.restart()
    with make_client(server) as client:
        after = snapshot(client, assistant_ids, thread_ids)
        assert after.keys() == before.keys()
        for key, value in before.items():
            assert after[key] == value, f"{key} changed across the restart"
        assert len(fake.requests) == requests_before, "the restart re-ran something"

        # The waiting run takes its outputs from the new process and completes.
        assert pending.required_action is not None
        calls = pending.required_action.submit_tool_outputs.tool_calls
        fake.push(Text("Rome: rain. Milan: fog."))
        submitted = client.beta.threads.runs.submit_tool_outputs(
            run_id=pending.id,
            thread_id=pending_thread.id,
            tool_outputs=[{"tool_call_id": c.id, "output": f"{c.function.arguments} -> ok"} for c in calls],
        )
        assert submitted.status in ("queued", "in_progress", "completed")
        done = wait_for(client, server, pending_thread.id, pending.id, {"completed"})
        check(Run, done, "RunObject")
        assert done.required_action is None
        assert assistant_texts(client, pending_thread.id) == [("completed", "Rome: rain. Milan: fog.")]
        steps = client.beta.threads.runs.steps.list(
            run_id=pending.id, thread_id=pending_thread.id, order="asc"
        )
        assert [(s.type, s.status) for s in steps.data] == [
            ("tool_calls", "completed"),
            ("message_creation", "completed"),
        ]
        outputs = [c.function.output for c in steps.data[0].step_details.tool_calls]  # type: ignore[union-attr]
        assert outputs == [f"{c.function.arguments} -> ok" for c in calls]

    # The new process sent the model the tool calls made before the restart and their outputs.
    last = fake.requests[-1]["messages"]
    tool_messages = [m for m in last if m["role"] == "tool"]
    assert [m["tool_call_id"] for m in tool_messages] == [c.id for c in calls]
    assert [json.loads(c.function.arguments)["city"] for c in calls] == ["Rome", "Milan"]


# --------------------------------------------------------------------------------------------------
# 2. A crash: runs in progress or queued at the kill are resumed by the next process
# --------------------------------------------------------------------------------------------------


def test_crash_resumes_in_progress_and_queued_runs(servers: Servers, fake: FakeUpstream) -> None:
    # One worker: the first run holds it (its model answer is slow), so the second stays queued.
    server = servers.start(run_lease_seconds="1", workers="1")
    fake.push(Text("never delivered", delay_s=30), Echo("re: "), Echo("re: "))
    with make_client(server) as client:
        assistant = client.beta.assistants.create(model="fake-model", instructions="Answer.")
        first = client.beta.threads.create(messages=[{"role": "user", "content": "first question"}])
        second = client.beta.threads.create(messages=[{"role": "user", "content": "second question"}])
        running = client.beta.threads.runs.create(thread_id=first.id, assistant_id=assistant.id)
        wait_for(client, server, first.id, running.id, {"in_progress"})
        fake.wait_for_requests(1)
        queued = client.beta.threads.runs.create(thread_id=second.id, assistant_id=assistant.id)
        assert client.beta.threads.runs.retrieve(run_id=queued.id, thread_id=second.id).status == "queued"

    server = servers.restart(kill=True)
    with make_client(server) as client:
        done_running = wait_for(client, server, first.id, running.id, {"completed"})
        done_queued = wait_for(client, server, second.id, queued.id, {"completed"})
        for run in (done_running, done_queued):
            check(Run, run, "RunObject")
            assert run.last_error is None
            assert run.completed_at is not None and run.started_at is not None

        # The interrupted run was sent to the model again by the new process; the queued one once.
        assert requests_for(fake, "first question") == 2
        assert requests_for(fake, "second question") == 1
        assert assistant_texts(client, first.id) == [("completed", "re: first question")]
        assert assistant_texts(client, second.id) == [("completed", "re: second question")]
        for thread_id, run_id in ((first.id, running.id), (second.id, queued.id)):
            steps = client.beta.threads.runs.steps.list(run_id=run_id, thread_id=thread_id).data
            assert [(s.type, s.status) for s in steps] == [("message_creation", "completed")]


@pytest.mark.parametrize("kill", [True, False], ids=["killed", "stopped"])
def test_crash_while_a_message_streams_leaves_nothing_in_progress(
    servers: Servers, fake: FakeUpstream, kill: bool
) -> None:
    """A killed process, or one stopped gracefully mid-answer: the draft is closed and the run completes."""
    server = servers.start(run_lease_seconds="1")
    # The reply starts at once, then trickles: the kill lands while the assistant message is a draft.
    fake.push(Text("partial " * 100, chunk_delay_s=0.3), Echo("re: "))
    with make_client(server) as client:
        assistant = client.beta.assistants.create(model="fake-model")
        thread = client.beta.threads.create(messages=[{"role": "user", "content": "tell me a story"}])
        run = client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
        draft = wait_until_assistant_draft(client, thread.id)

    server = servers.restart(kill=kill)
    with make_client(server) as client:
        done = wait_for(client, server, thread.id, run.id, {"completed"})
        check(Run, done, "RunObject")
        assert requests_for(fake, "tell me a story") == 2

        messages = client.beta.threads.messages.list(thread_id=thread.id, order="asc").data
        for message in messages:
            check(Message, message, "MessageObject")
        assert all(m.status != "in_progress" for m in messages), messages
        # The reply written by the new process is the one completed answer of the thread.
        assert [t for t in assistant_texts(client, thread.id) if t[0] == "completed"] == [
            ("completed", "re: tell me a story")
        ]
        interrupted = client.beta.threads.messages.retrieve(message_id=draft.id, thread_id=thread.id)
        assert interrupted.status == "incomplete"
        assert interrupted.incomplete_at is not None

        steps = client.beta.threads.runs.steps.list(run_id=run.id, thread_id=thread.id, order="asc").data
        for step in steps:
            check(RunStep, step, "RunStepObject")
        assert [(s.type, s.status) for s in steps] == [
            ("message_creation", "failed"),
            ("message_creation", "completed"),
        ]
        assert steps[0].step_details.message_creation.message_id == draft.id  # type: ignore[union-attr]
        assert steps[0].last_error is not None


# --------------------------------------------------------------------------------------------------
# 3. A graceful stop hands the run back; the next process finishes it
# --------------------------------------------------------------------------------------------------


def test_graceful_stop_during_a_run_hands_it_to_the_next_process(
    servers: Servers, fake: FakeUpstream
) -> None:
    # A lease far longer than the polling below: only the job handed back at shutdown explains a resume.
    server = servers.start(run_lease_seconds="120")
    fake.push(Text("never delivered", delay_s=30), Echo("re: "))
    with make_client(server) as client:
        assistant = client.beta.assistants.create(model="fake-model")
        thread = client.beta.threads.create(messages=[{"role": "user", "content": "are you there?"}])
        run = client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
        wait_for(client, server, thread.id, run.id, {"in_progress"})
        fake.wait_for_requests(1)

    server = servers.restart()
    with make_client(server) as client:
        done = wait_for(client, server, thread.id, run.id, {"completed"})
        check(Run, done, "RunObject")
        assert done.last_error is None
        assert requests_for(fake, "are you there?") == 2
        assert assistant_texts(client, thread.id) == [("completed", "re: are you there?")]
        steps = client.beta.threads.runs.steps.list(run_id=run.id, thread_id=thread.id).data
        assert [(s.type, s.status) for s in steps] == [("message_creation", "completed")]


def test_a_run_that_ends_within_the_shutdown_grace_is_finished_before_the_process_exits(
    servers: Servers, fake: FakeUpstream
) -> None:
    server = servers.start(shutdown_grace_seconds="10")
    fake.push(Text("finished in the grace", delay_s=1.5))
    with make_client(server) as client:
        assistant = client.beta.assistants.create(model="fake-model")
        thread = client.beta.threads.create(messages=[{"role": "user", "content": "one more thing"}])
        run = client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
        fake.wait_for_requests(1)

    stopping = time.monotonic()
    server.stop()
    # It waited for the run, not for the whole grace.
    assert time.monotonic() - stopping < 8, server.log()
    server = servers.current = AssistdServer(server.data_dir, server.database_url, server.extra_env).start()
    with make_client(server) as client:
        done = client.beta.threads.runs.retrieve(run_id=run.id, thread_id=thread.id)
        assert done.status == "completed", done
        assert assistant_texts(client, thread.id) == [("completed", "finished in the grace")]
    assert fake.served == 1


def _big_document() -> bytes:
    """About 6 MB of varied prose: long enough to be mid-ingestion when the server goes away."""
    words = [
        "harbour",
        "lantern",
        "quince",
        "ferry",
        "granite",
        "orchard",
        "comet",
        "heron",
        "walrus",
        "tide",
    ]
    lines = [
        " ".join(words[(i * 7 + j * 3) % len(words)] + str((i * j) % 97) for j in range(12)) + "."
        for i in range(60_000)
    ]
    return "\n".join(lines).encode()


@pytest.mark.parametrize("kill", [True, False], ids=["sigkill", "sigterm"])
def test_ingestion_interrupted_by_a_restart_is_finished(servers: Servers, kill: bool) -> None:
    # The static model: the transformer would take minutes over a document this long on two cores.
    server = servers.start(run_lease_seconds="1", local_embeddings="static")
    client = make_client(server)
    uploaded = client.files.create(file=("big.txt", _big_document()), purpose="assistants")
    small = client.files.create(file=("small.md", b"The heron is called Bartholomew."), purpose="assistants")
    store = client.vector_stores.create(file_ids=[uploaded.id, small.id])
    assert client.vector_stores.files.retrieve(uploaded.id, vector_store_id=store.id).status == "in_progress"

    server = servers.restart(kill=kill)
    client = make_client(server)
    deadline = time.monotonic() + 120
    statuses: set[str] = {"in_progress"}
    while time.monotonic() < deadline and "in_progress" in statuses:
        statuses = {f.status for f in client.vector_stores.files.list(store.id)}
        time.sleep(0.2)
    assert statuses == {"completed"}, server.log()
    hits = client.vector_stores.search(store.id, query="What is the heron called?", max_num_results=1)
    assert hits.data[0].file_id == small.id
    assert client.vector_stores.retrieve(store.id).file_counts.completed == 2
