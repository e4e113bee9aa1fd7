"""Run steps: list (order, pagination), retrieve, the ``include[]`` parameter, links to messages."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI
from openai.types.beta.threads import Message
from openai.types.beta.threads.runs import RunStep
from pydantic import BaseModel

from fake_upstream import FakeUpstream, Text, ToolCalls
from samples import WEATHER_TOOL
from server import KEYS, AssistdServer
from wire import check, raw

INCLUDE = "step_details.tool_calls[*].file_search.results[*].content"


class _ListPage(BaseModel):
    object: str
    data: list[dict[str, Any]]
    first_id: str | None
    last_id: str | None
    has_more: bool


def _page(data: Any) -> list[RunStep]:
    check(_ListPage, data, "ListRunStepsResponse")
    return [check(RunStep, step, "RunStepObject") for step in data["data"]]


@pytest.fixture
def tool_run(client: OpenAI, fake: FakeUpstream) -> tuple[str, str]:
    """A completed run with two steps: a tool call, then the answer's message creation."""
    fake.push(
        ToolCalls([{"id": "call_steps", "name": "get_weather", "arguments": {}}], prompt_tokens=7),
        Text("Done.", prompt_tokens=9),
    )
    assistant = client.beta.assistants.create(model="fake-model", tools=[WEATHER_TOOL])
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "weather?"}])
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert run.status == "requires_action"
    run = client.beta.threads.runs.submit_tool_outputs_and_poll(
        run_id=run.id, thread_id=thread.id, tool_outputs=[{"tool_call_id": "call_steps", "output": "sunny"}]
    )
    assert run.status == "completed"
    return thread.id, run.id


def test_list_order_and_pagination(client: OpenAI, tool_run: tuple[str, str]) -> None:
    thread_id, run_id = tool_run
    steps = client.beta.threads.runs.steps
    ascending = _page(raw(steps.with_raw_response.list(run_id=run_id, thread_id=thread_id, order="asc")))
    assert [s.type for s in ascending] == ["tool_calls", "message_creation"]
    for step in ascending:
        assert step.run_id == run_id and step.thread_id == thread_id
        assert step.object == "thread.run.step"
        assert step.status == "completed" and step.completed_at is not None
        assert step.usage is not None
    assert ascending[0].usage is not None and ascending[0].usage.prompt_tokens == 7
    assert ascending[1].usage is not None and ascending[1].usage.prompt_tokens == 9
    ids = [s.id for s in ascending]

    default = raw(steps.with_raw_response.list(run_id=run_id, thread_id=thread_id))
    assert [s.id for s in _page(default)] == ids[::-1]  # newest first by default

    first = raw(steps.with_raw_response.list(run_id=run_id, thread_id=thread_id, order="asc", limit=1))
    assert [s.id for s in _page(first)] == ids[:1]
    assert (first["has_more"], first["first_id"], first["last_id"]) == (True, ids[0], ids[0])
    second = raw(
        steps.with_raw_response.list(run_id=run_id, thread_id=thread_id, order="asc", limit=1, after=ids[0])
    )
    assert [s.id for s in _page(second)] == ids[1:]
    assert second["has_more"] is False
    before = raw(steps.with_raw_response.list(run_id=run_id, thread_id=thread_id, order="asc", before=ids[1]))
    assert [s.id for s in _page(before)] == ids[:1]
    # The SDK's auto-pagination walks both pages.
    assert [s.id for s in steps.list(run_id=run_id, thread_id=thread_id, order="asc", limit=1)] == ids


def test_retrieve_and_message_creation_link(client: OpenAI, tool_run: tuple[str, str]) -> None:
    thread_id, run_id = tool_run
    listed = client.beta.threads.runs.steps.list(run_id=run_id, thread_id=thread_id, order="asc").data
    for summary in listed:
        data = raw(
            client.beta.threads.runs.steps.with_raw_response.retrieve(
                step_id=summary.id, run_id=run_id, thread_id=thread_id
            )
        )
        step = check(RunStep, data, "RunStepObject")
        assert step.id == summary.id and step.type == summary.type

    tool_step, message_step = listed
    assert tool_step.step_details.type == "tool_calls"
    (call,) = tool_step.step_details.tool_calls
    assert call.type == "function" and call.id == "call_steps"
    assert (call.function.name, call.function.arguments, call.function.output) == (
        "get_weather",
        "{}",
        "sunny",
    )

    assert message_step.step_details.type == "message_creation"
    message_id = message_step.step_details.message_creation.message_id
    message = check(
        Message,
        raw(
            client.beta.threads.messages.with_raw_response.retrieve(
                message_id=message_id, thread_id=thread_id
            )
        ),
        "MessageObject",
    )
    assert message.run_id == run_id and message.role == "assistant"
    assert message.content[0].type == "text" and message.content[0].text.value == "Done."

    with pytest.raises(openai.NotFoundError):
        client.beta.threads.runs.steps.retrieve(step_id="step_missing", run_id=run_id, thread_id=thread_id)
    with pytest.raises(openai.NotFoundError):
        client.beta.threads.runs.steps.list(run_id="run_missing", thread_id=thread_id)


def test_include_parameter(client: OpenAI, server: AssistdServer, tool_run: tuple[str, str]) -> None:
    thread_id, run_id = tool_run
    steps = client.beta.threads.runs.steps
    listed = _page(
        raw(steps.with_raw_response.list(run_id=run_id, thread_id=thread_id, include=[INCLUDE], order="asc"))
    )
    assert [s.type for s in listed] == ["tool_calls", "message_creation"]
    one = check(
        RunStep,
        raw(
            steps.with_raw_response.retrieve(
                step_id=listed[0].id, run_id=run_id, thread_id=thread_id, include=[INCLUDE]
            )
        ),
        "RunStepObject",
    )
    assert one.id == listed[0].id

    # What the SDK sends on the wire: include[]=...
    with httpx.Client(base_url=server.base_url, headers={"Authorization": f"Bearer {KEYS[0]}"}) as http:
        ok = http.get(f"/threads/{thread_id}/runs/{run_id}/steps", params={"include[]": INCLUDE})
        assert ok.status_code == 200
        bad = http.get(
            f"/threads/{thread_id}/runs/{run_id}/steps", params={"include[]": "step_details.bogus"}
        )
        assert bad.status_code == 400
        assert bad.json()["error"]["type"] == "invalid_request_error"
        assert bad.json()["error"]["param"] == "include[0]"

    with pytest.raises(openai.BadRequestError) as info:
        steps.list(run_id=run_id, thread_id=thread_id, include=["not.a.field"])  # type: ignore[list-item]
    assert isinstance(info.value.body, dict) and info.value.body["param"] == "include[0]"
    with pytest.raises(openai.BadRequestError):
        steps.retrieve(
            step_id=listed[0].id,
            run_id=run_id,
            thread_id=thread_id,
            include=[INCLUDE, "nope"],  # type: ignore[list-item]
        )
    # Creating a run accepts the same parameter.
    assistant = client.beta.assistants.create(model="fake-model")
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "hi"}])
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, include=[INCLUDE]
    )
    assert run.status == "completed"
    with pytest.raises(openai.BadRequestError):
        client.beta.threads.runs.create(
            thread_id=thread.id,
            assistant_id=assistant.id,
            include=["wrong"],  # type: ignore[list-item]
        )


def test_other_tenant_cannot_see_steps(
    client: OpenAI, other_client: OpenAI, tool_run: tuple[str, str]
) -> None:
    thread_id, run_id = tool_run
    step_id = client.beta.threads.runs.steps.list(run_id=run_id, thread_id=thread_id).data[0].id
    with pytest.raises(openai.NotFoundError):
        other_client.beta.threads.runs.steps.list(run_id=run_id, thread_id=thread_id)
    with pytest.raises(openai.NotFoundError):
        other_client.beta.threads.runs.steps.retrieve(step_id=step_id, run_id=run_id, thread_id=thread_id)
