"""Tenant isolation: what key alpha creates, key beta can neither see, change, delete, list nor use."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI
from openai.types.beta import Assistant, Thread
from openai.types.beta.threads import Message, Run
from openai.types.beta.threads.runs import RunStep

from fake_upstream import FakeUpstream, ToolCalls
from samples import WEATHER_TOOL
from server import KEYS, AssistdServer
from wire import check, raw


@dataclass
class AlphaObjects:
    assistant: Assistant
    thread: Thread
    message: Message
    run: Run  # waiting in requires_action
    step: RunStep
    done_thread: Thread
    done_run: Run  # completed


@pytest.fixture
def alpha(client: OpenAI, fake: FakeUpstream) -> AlphaObjects:
    assistant = client.beta.assistants.create(
        model="fake-model", name="alpha's", tools=[WEATHER_TOOL], metadata={"owner": "alpha"}
    )
    thread = client.beta.threads.create(
        messages=[{"role": "user", "content": "weather?"}], metadata={"owner": "alpha"}
    )
    message = client.beta.threads.messages.list(thread.id).data[0]
    fake.push(ToolCalls([("get_weather", {"city": "Paris"})]))
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert run.status == "requires_action", run
    step = client.beta.threads.runs.steps.list(run.id, thread_id=thread.id).data[0]

    done_thread = client.beta.threads.create(messages=[{"role": "user", "content": "hello"}])
    done_run = client.beta.threads.runs.create_and_poll(thread_id=done_thread.id, assistant_id=assistant.id)
    assert done_run.status == "completed", done_run
    return AlphaObjects(assistant, thread, message, run, step, done_thread, done_run)


def _not_found(call: Callable[[], object], param: str) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        call()
    body = info.value.response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["param"] == param, body


def test_beta_cannot_touch_alphas_objects(other_client: OpenAI, alpha: AlphaObjects) -> None:
    beta = other_client
    a, t, m, r, s = alpha.assistant.id, alpha.thread.id, alpha.message.id, alpha.run.id, alpha.step.id
    call_id = alpha.run.required_action.submit_tool_outputs.tool_calls[0].id  # type: ignore[union-attr]
    calls: list[tuple[Callable[[], object], str]] = [
        # assistants
        (lambda: beta.beta.assistants.retrieve(a), "assistant_id"),
        (lambda: beta.beta.assistants.update(a, name="stolen"), "assistant_id"),
        (lambda: beta.beta.assistants.delete(a), "assistant_id"),
        # threads
        (lambda: beta.beta.threads.retrieve(t), "thread_id"),
        (lambda: beta.beta.threads.update(t, metadata={"owner": "beta"}), "thread_id"),
        # messages
        (lambda: beta.beta.threads.messages.list(t), "thread_id"),
        (lambda: beta.beta.threads.messages.create(t, role="user", content="hi"), "thread_id"),
        (lambda: beta.beta.threads.messages.retrieve(m, thread_id=t), "message_id"),
        (lambda: beta.beta.threads.messages.update(m, thread_id=t, metadata={"x": "y"}), "message_id"),
        (lambda: beta.beta.threads.messages.delete(m, thread_id=t), "message_id"),
        # runs
        (lambda: beta.beta.threads.runs.list(t), "thread_id"),
        (lambda: beta.beta.threads.runs.retrieve(r, thread_id=t), "run_id"),
        (lambda: beta.beta.threads.runs.update(r, thread_id=t, metadata={"x": "y"}), "run_id"),
        (lambda: beta.beta.threads.runs.cancel(r, thread_id=t), "run_id"),
        (
            lambda: beta.beta.threads.runs.submit_tool_outputs(
                r, thread_id=t, tool_outputs=[{"tool_call_id": call_id, "output": "sunny"}]
            ),
            "run_id",
        ),
        # run steps
        (lambda: beta.beta.threads.runs.steps.list(r, thread_id=t), "run_id"),
        (lambda: beta.beta.threads.runs.steps.retrieve(s, thread_id=t, run_id=r), "run_id"),
        # a run on alpha's thread, or with alpha's assistant
        (lambda: beta.beta.threads.runs.create(t, assistant_id=a), "thread_id"),
        (lambda: beta.beta.threads.create_and_run(assistant_id=a), "assistant_id"),
        (lambda: beta.beta.threads.delete(t), "thread_id"),
    ]
    own_assistant = beta.beta.assistants.create(model="fake-model")
    own_thread = beta.beta.threads.create()
    calls += [
        (lambda: beta.beta.threads.runs.create(t, assistant_id=own_assistant.id), "thread_id"),
        (lambda: beta.beta.threads.runs.create(own_thread.id, assistant_id=a), "assistant_id"),
        (lambda: beta.beta.threads.runs.retrieve(r, thread_id=own_thread.id), "run_id"),
        (lambda: beta.beta.threads.messages.retrieve(m, thread_id=own_thread.id), "message_id"),
    ]
    for call, param in calls:
        _not_found(call, param)

    # Beta's own thread got nothing from those attempts.
    assert beta.beta.threads.runs.list(own_thread.id).data == []
    assert beta.beta.threads.messages.list(own_thread.id).data == []


def test_alpha_sees_its_objects_unchanged_after_beta_tried(
    client: OpenAI, other_client: OpenAI, alpha: AlphaObjects
) -> None:
    beta = other_client
    for call in (
        lambda: beta.beta.assistants.update(alpha.assistant.id, name="stolen"),
        lambda: beta.beta.threads.update(alpha.thread.id, metadata={"owner": "beta"}),
        lambda: beta.beta.threads.runs.cancel(alpha.run.id, thread_id=alpha.thread.id),
        lambda: beta.beta.threads.messages.delete(alpha.message.id, thread_id=alpha.thread.id),
        lambda: beta.beta.threads.delete(alpha.done_thread.id),
        lambda: beta.beta.assistants.delete(alpha.assistant.id),
    ):
        with pytest.raises(openai.NotFoundError):
            call()

    assistant = raw(client.beta.assistants.with_raw_response.retrieve(alpha.assistant.id))
    check(Assistant, assistant, "AssistantObject")
    assert assistant["name"] == "alpha's" and assistant["metadata"] == {"owner": "alpha"}
    thread = raw(client.beta.threads.with_raw_response.retrieve(alpha.thread.id))
    check(Thread, thread, "ThreadObject")
    assert thread["metadata"] == {"owner": "alpha"}
    message = raw(
        client.beta.threads.messages.with_raw_response.retrieve(alpha.message.id, thread_id=alpha.thread.id)
    )
    check(Message, message, "MessageObject")
    run = raw(client.beta.threads.runs.with_raw_response.retrieve(alpha.run.id, thread_id=alpha.thread.id))
    check(Run, run, "RunObject")
    assert run["status"] == "requires_action"
    step = raw(
        client.beta.threads.runs.steps.with_raw_response.retrieve(
            alpha.step.id, thread_id=alpha.thread.id, run_id=alpha.run.id
        )
    )
    check(RunStep, step, "RunStepObject")
    assert client.beta.threads.retrieve(alpha.done_thread.id).id == alpha.done_thread.id

    # Alpha can still finish its own run.
    call_id = alpha.run.required_action.submit_tool_outputs.tool_calls[0].id  # type: ignore[union-attr]
    finished = client.beta.threads.runs.submit_tool_outputs_and_poll(
        run_id=alpha.run.id,
        thread_id=alpha.thread.id,
        tool_outputs=[{"tool_call_id": call_id, "output": "sunny"}],
    )
    assert finished.status == "completed"


def test_lists_never_include_the_other_tenants_objects(
    client: OpenAI, other_client: OpenAI, alpha: AlphaObjects, server: AssistdServer
) -> None:
    beta = other_client
    beta_assistant = beta.beta.assistants.create(model="fake-model")
    beta_thread = beta.beta.threads.create(messages=[{"role": "user", "content": "beta's"}])

    beta_assistants = [x.id for x in beta.beta.assistants.list(limit=100)]
    assert beta_assistant.id in beta_assistants
    assert alpha.assistant.id not in beta_assistants
    alpha_assistants = [x.id for x in client.beta.assistants.list(limit=100)]
    assert alpha.assistant.id in alpha_assistants
    assert beta_assistant.id not in alpha_assistants

    def threads(key: str, **params: Any) -> httpx.Response:
        return httpx.get(
            f"{server.base_url}/threads", params=params, headers={"Authorization": f"Bearer {key}"}
        )

    beta_threads = [x["id"] for x in threads(KEYS[1], limit=100).json()["data"]]
    assert beta_thread.id in beta_threads
    assert alpha.thread.id not in beta_threads and alpha.done_thread.id not in beta_threads
    alpha_threads = [x["id"] for x in threads(KEYS[0], limit=100).json()["data"]]
    assert alpha.thread.id in alpha_threads and beta_thread.id not in alpha_threads

    # Another tenant's object is no cursor: it is not there, so it cannot be paged from.
    for params in ({"after": alpha.assistant.id}, {"before": alpha.assistant.id}):
        with pytest.raises(openai.BadRequestError):
            beta.beta.assistants.list(**params)  # type: ignore[arg-type]
    response = threads(KEYS[1], after=alpha.thread.id)
    assert response.status_code == 400 and set(response.json()) == {"error"}
    with pytest.raises(openai.BadRequestError):
        beta.beta.threads.messages.list(beta_thread.id, after=alpha.message.id)

    # Beta's run lists and message lists hold only beta's runs and messages.
    run = beta.beta.threads.runs.create_and_poll(thread_id=beta_thread.id, assistant_id=beta_assistant.id)
    assert run.status == "completed"
    assert [x.id for x in beta.beta.threads.runs.list(beta_thread.id)] == [run.id]
    assert all(x.thread_id == beta_thread.id for x in beta.beta.threads.messages.list(beta_thread.id))
    steps = beta.beta.threads.runs.steps.list(run.id, thread_id=beta_thread.id).data
    assert steps and all(x.run_id == run.id for x in steps)
    with pytest.raises(openai.NotFoundError):
        client.beta.threads.runs.steps.list(run.id, thread_id=beta_thread.id)
    with pytest.raises(openai.NotFoundError):
        client.beta.threads.runs.steps.retrieve(steps[0].id, thread_id=beta_thread.id, run_id=run.id)
    with pytest.raises(openai.NotFoundError):
        client.beta.threads.messages.list(beta_thread.id, run_id=run.id)
