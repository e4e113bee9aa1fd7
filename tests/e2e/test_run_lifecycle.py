"""Run lifecycle: one active run per thread, cancellation in every state, and expiry of requires_action."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from openai import OpenAI
from openai.types.beta.threads import Message, Run
from openai.types.beta.threads.runs import RunStep

from conftest import Databases, make_client, start_server
from fake_upstream import FakeUpstream, Text, ToolCalls
from samples import WEATHER_TOOL
from server import AssistdServer
from sse import delta_text, stream_events
from wire import check, raw

TERMINAL = {"completed", "incomplete", "failed", "cancelled", "expired"}


@pytest.fixture(scope="module")
def special(
    tmp_path_factory: pytest.TempPathFactory, databases: Databases, fake: FakeUpstream
) -> Iterator[AssistdServer]:
    """One worker (so a second run stays queued) and tool outputs that expire after a second."""
    srv = start_server(tmp_path_factory, databases, fake, workers="1", requires_action_expiry_seconds="1")
    yield srv
    srv.stop()


@pytest.fixture
def special_client(special: AssistdServer) -> Iterator[OpenAI]:
    with make_client(special) as c:
        yield c


def _setup(client: OpenAI, *, tools: bool = False) -> tuple[str, str]:
    assistant = client.beta.assistants.create(model="fake-model", tools=[WEATHER_TOOL] if tools else [])
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "hello"}])
    return assistant.id, thread.id


def _run(client: OpenAI, thread_id: str, run_id: str) -> Run:
    return check(
        Run,
        raw(client.beta.threads.runs.with_raw_response.retrieve(run_id=run_id, thread_id=thread_id)),
        "RunObject",
    )


def _until_terminal(client: OpenAI, thread_id: str, run_id: str, within: float = 20.0) -> Run:
    """Poll until the run ends; a bounded wait, not a timing assertion."""
    deadline = time.monotonic() + within
    while True:
        run = _run(client, thread_id, run_id)
        if run.status in TERMINAL:
            return run
        assert time.monotonic() < deadline, f"run {run_id} still {run.status} after {within}s"
        time.sleep(0.05)


def _error(exc: openai.APIStatusError) -> dict[str, Any]:
    assert isinstance(exc.body, dict)
    return exc.body


def _steps(client: OpenAI, thread_id: str, run_id: str) -> list[RunStep]:
    page = client.beta.threads.runs.steps.with_raw_response.list(
        run_id=run_id, thread_id=thread_id, order="asc"
    )
    return [check(RunStep, s, "RunStepObject") for s in raw(page)["data"]]


def _new_run_completes(client: OpenAI, assistant_id: str, thread_id: str) -> None:
    client.beta.threads.messages.create(thread_id=thread_id, role="user", content="again")
    run = client.beta.threads.runs.create_and_poll(thread_id=thread_id, assistant_id=assistant_id)
    assert run.status == "completed"


# --------------------------------------------------------------------------------------------------


def test_one_active_run_per_thread(client: OpenAI, fake: FakeUpstream) -> None:
    fake.push(ToolCalls([{"id": "call_busy", "name": "get_weather", "arguments": {}}]), Text("Done."))
    assistant_id, thread_id = _setup(client, tools=True)
    run = client.beta.threads.runs.create_and_poll(thread_id=thread_id, assistant_id=assistant_id)
    assert run.status == "requires_action"

    with pytest.raises(openai.BadRequestError) as second_run:
        client.beta.threads.runs.create(thread_id=thread_id, assistant_id=assistant_id)
    body = _error(second_run.value)
    assert body["type"] == "invalid_request_error"
    assert run.id in body["message"]
    with pytest.raises(openai.BadRequestError) as new_message:
        client.beta.threads.messages.create(thread_id=thread_id, role="user", content="interrupt")
    assert run.id in _error(new_message.value)["message"]
    # Nothing was left behind by the refused requests.
    assert [r.id for r in client.beta.threads.runs.list(thread_id=thread_id)] == [run.id]
    assert len(client.beta.threads.messages.list(thread_id=thread_id).data) == 1

    done = client.beta.threads.runs.submit_tool_outputs_and_poll(
        run_id=run.id, thread_id=thread_id, tool_outputs=[{"tool_call_id": "call_busy", "output": "ok"}]
    )
    assert done.status == "completed"
    _new_run_completes(client, assistant_id, thread_id)

    # Another thread is never blocked by this one.
    other = client.beta.threads.create(messages=[{"role": "user", "content": "independent"}])
    fake.push(ToolCalls([("get_weather", {})]))
    waiting = client.beta.threads.runs.create_and_poll(thread_id=thread_id, assistant_id=assistant_id)
    assert waiting.status == "requires_action"
    assert client.beta.threads.runs.create_and_poll(thread_id=other.id, assistant_id=assistant_id).status == (
        "completed"
    )
    client.beta.threads.runs.cancel(run_id=waiting.id, thread_id=thread_id)


def test_cancel_a_run_waiting_on_a_slow_upstream(client: OpenAI, fake: FakeUpstream) -> None:
    fake.push(Text("too late", delay_s=10))
    assistant_id, thread_id = _setup(client)
    run = client.beta.threads.runs.create(thread_id=thread_id, assistant_id=assistant_id)
    fake.wait_for_requests(1)
    assert _run(client, thread_id, run.id).status == "in_progress"

    response = client.beta.threads.runs.with_raw_response.cancel(run_id=run.id, thread_id=thread_id)
    assert response.headers.get("openai-poll-after-ms") is not None
    cancelling = check(Run, raw(response), "RunObject")
    assert cancelling.status in ("cancelling", "cancelled")

    final = _until_terminal(client, thread_id, run.id)
    assert final.status == "cancelled"
    assert final.cancelled_at is not None
    assert final.completed_at is None and final.failed_at is None
    assert final.last_error is None
    assert client.beta.threads.messages.list(thread_id=thread_id).data[0].role == "user"  # no reply stored

    with pytest.raises(openai.BadRequestError) as again:
        client.beta.threads.runs.cancel(run_id=run.id, thread_id=thread_id)
    assert "cancelled" in _error(again.value)["message"]
    _new_run_completes(client, assistant_id, thread_id)


def test_cancelling_a_completed_run_is_refused(client: OpenAI, fake: FakeUpstream) -> None:
    assistant_id, thread_id = _setup(client)
    run = client.beta.threads.runs.create_and_poll(thread_id=thread_id, assistant_id=assistant_id)
    assert run.status == "completed"
    with pytest.raises(openai.BadRequestError) as info:
        client.beta.threads.runs.cancel(run_id=run.id, thread_id=thread_id)
    body = _error(info.value)
    assert body["type"] == "invalid_request_error"
    assert "completed" in body["message"]
    assert _run(client, thread_id, run.id).status == "completed"
    with pytest.raises(openai.NotFoundError):
        client.beta.threads.runs.cancel(run_id="run_missing", thread_id=thread_id)


def test_cancel_a_run_that_requires_action(client: OpenAI, fake: FakeUpstream) -> None:
    fake.push(ToolCalls([("get_weather", {})]))
    assistant_id, thread_id = _setup(client, tools=True)
    run = client.beta.threads.runs.create_and_poll(thread_id=thread_id, assistant_id=assistant_id)
    assert run.status == "requires_action"
    cancelled = check(
        Run,
        raw(client.beta.threads.runs.with_raw_response.cancel(run_id=run.id, thread_id=thread_id)),
        "RunObject",
    )
    assert cancelled.status == "cancelled"
    assert cancelled.required_action is None and cancelled.cancelled_at is not None
    (step,) = _steps(client, thread_id, run.id)
    assert step.type == "tool_calls" and step.status == "cancelled" and step.cancelled_at is not None
    with pytest.raises(openai.BadRequestError):
        client.beta.threads.runs.submit_tool_outputs(
            run_id=run.id, thread_id=thread_id, tool_outputs=[{"tool_call_id": "call_x", "output": "x"}]
        )
    _new_run_completes(client, assistant_id, thread_id)


def test_cancel_a_queued_run(special_client: OpenAI, fake: FakeUpstream) -> None:
    client = special_client
    fake.push(Text("occupies the only worker", delay_s=10))
    assistant_id, busy_thread = _setup(client)
    busy = client.beta.threads.runs.create(thread_id=busy_thread, assistant_id=assistant_id)
    fake.wait_for_requests(1)

    _, thread_id = _setup(client)
    queued = client.beta.threads.runs.create(thread_id=thread_id, assistant_id=assistant_id)
    assert _run(client, thread_id, queued.id).status == "queued"
    cancelled = check(
        Run,
        raw(client.beta.threads.runs.with_raw_response.cancel(run_id=queued.id, thread_id=thread_id)),
        "RunObject",
    )
    assert cancelled.status == "cancelled"
    assert cancelled.started_at is None and cancelled.cancelled_at is not None

    client.beta.threads.runs.cancel(run_id=busy.id, thread_id=busy_thread)
    assert _until_terminal(client, busy_thread, busy.id).status == "cancelled"
    # The queued run never ran: the worker, free again, only serves the next run.
    _new_run_completes(client, assistant_id, thread_id)
    assert _run(client, thread_id, queued.id).status == "cancelled"
    assert len(fake.requests) == 2


def test_cancelling_a_streamed_run_ends_the_stream(
    client: OpenAI, server: AssistdServer, fake: FakeUpstream
) -> None:
    fake.push(Text("never arrives", delay_s=10))
    assistant_id, thread_id = _setup(client)
    events: list[tuple[str, dict[str, Any] | str]] = []
    body = {"assistant_id": assistant_id, "stream": True}
    for name, data in stream_events(server.base_url, f"/threads/{thread_id}/runs", body, timeout=30):
        events.append((name, data))
        if name == "thread.run.in_progress":
            run_id = data["id"]
            fake.wait_for_requests(1)
            client.beta.threads.runs.cancel(run_id=run_id, thread_id=thread_id)

    names = [n for n, _ in events]
    assert names[:3] == ["thread.run.created", "thread.run.queued", "thread.run.in_progress"]
    assert names[-2:] == ["thread.run.cancelled", "done"]
    assert events[-1][1] == "[DONE]"
    assert set(names[3:-2]) <= {"thread.run.cancelling"}
    for event_name, data in events[:-1]:
        assert isinstance(data, dict)
        run = check(Run, data, "RunObject")
        assert run.status == event_name.removeprefix("thread.run.").replace("created", "queued")
    assert _run(client, thread_id, run_id).status == "cancelled"
    _new_run_completes(client, assistant_id, thread_id)


def test_requires_action_expires(special_client: OpenAI, fake: FakeUpstream) -> None:
    client = special_client
    fake.push(ToolCalls([{"id": "call_late", "name": "get_weather", "arguments": {}}]))
    assistant_id, thread_id = _setup(client, tools=True)
    # The stream's requires_action event is the run as it was while waiting (a later retrieve could
    # already see it expired: the deadline is only a second away).
    events = list(
        client.beta.threads.runs.create(thread_id=thread_id, assistant_id=assistant_id, stream=True)
    )
    waiting = events[-1]
    assert waiting.event == "thread.run.requires_action"
    run = check(Run, waiting.data, "RunObject")
    assert run.status == "requires_action"
    assert run.expires_at is not None and run.expires_at >= run.created_at

    expired = _until_terminal(client, thread_id, run.id)
    assert expired.status == "expired"
    assert expired.required_action is None
    (step,) = _steps(client, thread_id, run.id)
    assert step.type == "tool_calls" and step.status == "expired" and step.expired_at is not None
    with pytest.raises(openai.BadRequestError):
        client.beta.threads.runs.submit_tool_outputs(
            run_id=run.id, thread_id=thread_id, tool_outputs=[{"tool_call_id": "call_late", "output": "x"}]
        )
    with pytest.raises(openai.BadRequestError):
        client.beta.threads.runs.cancel(run_id=run.id, thread_id=thread_id)
    _new_run_completes(client, assistant_id, thread_id)
    messages = client.beta.threads.messages.list(thread_id=thread_id).data
    check(Message, messages[0], "MessageObject")


def test_cancelling_mid_message_keeps_the_streamed_text(
    client: OpenAI, server: AssistdServer, fake: FakeUpstream
) -> None:
    fake.push(
        Text("One two three four five", chunks=["One ", "two ", "three ", "four ", "five"], chunk_delay_s=0.5)
    )
    assistant_id, thread_id = _setup(client)
    names: list[str] = []
    deltas: list[str] = []
    body = {"assistant_id": assistant_id, "stream": True}
    for name, data in stream_events(server.base_url, f"/threads/{thread_id}/runs", body, timeout=30):
        names.append(name)
        if name == "thread.message.delta":
            deltas.append(delta_text(data))
            if len(deltas) == 1:
                run_id = client.beta.threads.runs.list(thread_id=thread_id).data[0].id
                client.beta.threads.runs.cancel(run_id=run_id, thread_id=thread_id)
    # The stream closes what the cancel cut short before it reports the run cancelled.
    assert names[-5:] == [
        "thread.run.cancelling",
        "thread.run.step.cancelled",
        "thread.message.incomplete",
        "thread.run.cancelled",
        "done",
    ]
    assert deltas and deltas[0] == "One "
    message = client.beta.threads.messages.list(thread_id=thread_id).data[0]
    check(Message, message, "MessageObject")
    assert message.role == "assistant" and message.status == "incomplete"
    assert message.incomplete_details is not None and message.incomplete_details.reason == "run_cancelled"
    assert message.content[0].type == "text"
    assert message.content[0].text.value == "".join(deltas)
    (step,) = _steps(client, thread_id, run_id)
    assert step.type == "message_creation" and step.status == "cancelled"
