"""Runs over the wire: polling, every documented create parameter, what reaches the upstream, and limits."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest
from openai import OpenAI
from openai.types.beta import Thread
from openai.types.beta.threads import Message, Run
from openai.types.beta.threads.runs import RunStep
from pydantic import BaseModel

from fake_upstream import FakeUpstream, Text
from samples import WEATHER_TOOL
from wire import check, raw

LOOKUP_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}},
}
JSON_SCHEMA_FORMAT: dict[str, Any] = {
    "type": "json_schema",
    "json_schema": {
        "name": "answer",
        "schema": {"type": "object", "properties": {"value": {"type": "string"}}, "required": ["value"]},
        "strict": True,
    },
}


class _ListPage(BaseModel):
    object: str
    data: list[dict[str, Any]]
    first_id: str | None
    last_id: str | None
    has_more: bool


def _assistant(client: OpenAI, **kwargs: Any) -> str:
    kwargs.setdefault("model", "fake-model")
    return client.beta.assistants.create(**kwargs).id


def _thread(client: OpenAI, *texts: str) -> str:
    return client.beta.threads.create(messages=[{"role": "user", "content": t} for t in texts]).id


def _check_run(data: Any) -> Run:
    return check(Run, data, "RunObject")


def _check_runs_page(data: Any) -> list[Run]:
    check(_ListPage, data, "ListRunsResponse")
    return [_check_run(item) for item in data["data"]]


def _wait(client: OpenAI, thread_id: str, run_id: str) -> Run:
    return client.beta.threads.runs.poll(run_id=run_id, thread_id=thread_id, poll_interval_ms=20)


# --------------------------------------------------------------------------------------------------


def test_create_and_poll_completes_and_stores_the_reply(client: OpenAI, fake: FakeUpstream) -> None:
    fake.push(Text("The answer is 42.", chunks=["The ", "answer ", "is ", "42."]))
    assistant_id = _assistant(client, instructions="Be brief.")
    thread_id = _thread(client, "What is the answer?")

    run = client.beta.threads.runs.create_and_poll(thread_id=thread_id, assistant_id=assistant_id)
    assert run.status == "completed"
    data = raw(client.beta.threads.runs.with_raw_response.retrieve(run_id=run.id, thread_id=thread_id))
    stored = _check_run(data)
    assert stored.status == "completed"
    assert stored.completed_at is not None and stored.started_at is not None
    assert stored.usage is not None
    assert stored.usage.prompt_tokens == 10
    assert stored.usage.completion_tokens > 0
    assert stored.usage.total_tokens == stored.usage.prompt_tokens + stored.usage.completion_tokens
    assert stored.last_error is None and stored.required_action is None and stored.expires_at is None

    page = raw(client.beta.threads.messages.with_raw_response.list(thread_id=thread_id, order="asc"))
    check(_ListPage, page, "ListMessagesResponse")
    messages = [check(Message, m, "MessageObject") for m in page["data"]]
    assert [m.role for m in messages] == ["user", "assistant"]
    reply = messages[1]
    assert reply.status == "completed"
    assert reply.run_id == run.id and reply.assistant_id == assistant_id
    assert reply.content[0].type == "text"
    assert reply.content[0].text.value == "The answer is 42."

    # What the upstream saw: the instructions as the system prompt, then the thread.
    (request,) = fake.requests
    assert request["model"] == "fake-model"
    assert request["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is the answer?"},
    ]
    assert request["stream"] is True


def test_create_with_every_documented_parameter(client: OpenAI, fake: FakeUpstream) -> None:
    fake.push(Text('{"value": "ok"}'))
    assistant_id = _assistant(client, instructions="Assistant instructions.", tools=[WEATHER_TOOL])
    thread = client.beta.threads.create(
        messages=[
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "second"},
            {"role": "user", "content": "third"},
            {"role": "user", "content": "fourth"},
        ]
    )
    response = client.beta.threads.runs.with_raw_response.create(
        thread_id=thread.id,
        assistant_id=assistant_id,
        model="fake-model-large",
        instructions="Run instructions.",
        additional_instructions="Additional instructions.",
        additional_messages=[{"role": "user", "content": "added by the run", "metadata": {"src": "run"}}],
        tools=[WEATHER_TOOL, LOOKUP_TOOL],
        metadata={"purpose": "every-parameter"},
        temperature=0.3,
        top_p=0.9,
        max_prompt_tokens=5000,
        max_completion_tokens=300,
        truncation_strategy={"type": "last_messages", "last_messages": 2},
        tool_choice={"type": "function", "function": {"name": "lookup"}},
        parallel_tool_calls=False,
        response_format=JSON_SCHEMA_FORMAT,
    )
    assert response.headers.get("openai-poll-after-ms") is not None
    created = _check_run(raw(response))
    assert created.status == "queued"
    assert created.model == "fake-model-large"
    assert created.instructions == "Run instructions.\n\nAdditional instructions."
    assert [t.type for t in created.tools] == ["function", "function"]
    assert created.metadata == {"purpose": "every-parameter"}
    assert created.temperature == pytest.approx(0.3)
    assert created.top_p == pytest.approx(0.9)
    assert created.max_prompt_tokens == 5000
    assert created.max_completion_tokens == 300
    assert created.truncation_strategy is not None
    assert created.truncation_strategy.type == "last_messages"
    assert created.truncation_strategy.last_messages == 2
    assert created.tool_choice is not None and not isinstance(created.tool_choice, str)
    assert created.tool_choice.type == "function"
    assert created.tool_choice.function is not None and created.tool_choice.function.name == "lookup"
    assert created.parallel_tool_calls is False
    assert created.response_format is not None and not isinstance(created.response_format, str)
    assert created.response_format.type == "json_schema"

    run = _wait(client, thread.id, created.id)
    assert run.status == "completed", run.last_error

    (request,) = fake.requests
    assert request["model"] == "fake-model-large"
    # System prompt = instructions + additional instructions; last_messages=2 keeps the two newest messages
    # (the thread's last one and the run's additional message).
    assert request["messages"] == [
        {"role": "system", "content": "Run instructions.\n\nAdditional instructions."},
        {"role": "user", "content": "fourth"},
        {"role": "user", "content": "added by the run"},
    ]
    assert request["temperature"] == pytest.approx(0.3)
    assert request["top_p"] == pytest.approx(0.9)
    assert request["max_completion_tokens"] == 300
    assert request["response_format"] == JSON_SCHEMA_FORMAT
    assert request["tool_choice"] == {"type": "function", "function": {"name": "lookup"}}
    assert request["parallel_tool_calls"] is False
    assert [t["function"]["name"] for t in request["tools"]] == ["get_weather", "lookup"]
    assert request["tools"][0] == WEATHER_TOOL

    # The additional message is part of the thread now, with its metadata.
    texts = [
        (m.role, m.content[0].text.value if m.content[0].type == "text" else None, m.metadata)
        for m in client.beta.threads.messages.list(thread_id=thread.id, order="asc").data
    ]
    assert texts[4] == ("user", "added by the run", {"src": "run"})
    assert texts[5] == ("assistant", '{"value": "ok"}', {})


def test_truncation_auto_and_assistant_defaults_reach_the_upstream(
    client: OpenAI, fake: FakeUpstream
) -> None:
    assistant_id = _assistant(
        client,
        instructions="Base instructions.",
        tools=[WEATHER_TOOL],
        temperature=0.7,
        top_p=0.5,
        response_format={"type": "json_object"},
    )
    thread_id = _thread(client, "one", "two", "three")
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread_id,
        assistant_id=assistant_id,
        additional_instructions="And be kind.",
        truncation_strategy={"type": "auto"},
    )
    assert run.status == "completed"
    assert run.instructions == "Base instructions.\n\nAnd be kind."
    assert run.temperature == pytest.approx(0.7)
    assert run.top_p == pytest.approx(0.5)
    assert run.tool_choice == "auto"
    assert run.parallel_tool_calls is True

    (request,) = fake.requests
    assert request["messages"] == [
        {"role": "system", "content": "Base instructions.\n\nAnd be kind."},
        {"role": "user", "content": "one"},
        {"role": "user", "content": "two"},
        {"role": "user", "content": "three"},
    ]
    assert request["temperature"] == pytest.approx(0.7)
    assert request["top_p"] == pytest.approx(0.5)
    assert request["response_format"] == {"type": "json_object"}
    assert request["tool_choice"] == "auto"
    assert request["parallel_tool_calls"] is True
    assert "max_completion_tokens" not in request


@pytest.mark.parametrize("choice", ["none", "auto", "required"])
def test_tool_choice_modes_reach_the_upstream(client: OpenAI, fake: FakeUpstream, choice: str) -> None:
    assistant_id = _assistant(client, tools=[WEATHER_TOOL])
    thread_id = _thread(client, "hi")
    data = raw(
        client.beta.threads.runs.with_raw_response.create(
            thread_id=thread_id,
            assistant_id=assistant_id,
            tool_choice=choice,  # type: ignore[arg-type]
            response_format={"type": "json_object"},
        )
    )
    assert _check_run(data).tool_choice == choice
    run = _wait(client, thread_id, data["id"])
    assert run.status == "completed"
    (request,) = fake.requests
    assert request["tool_choice"] == choice
    assert request["response_format"] == {"type": "json_object"}


def test_max_completion_tokens_reached_makes_the_run_incomplete(client: OpenAI, fake: FakeUpstream) -> None:
    fake.push(Text("This answer was cut", finish_reason="length"))
    assistant_id = _assistant(client)
    thread_id = _thread(client, "Write a long essay.")
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread_id, assistant_id=assistant_id, max_completion_tokens=256
    )
    assert run.status == "incomplete"
    data = raw(client.beta.threads.runs.with_raw_response.retrieve(run_id=run.id, thread_id=thread_id))
    stored = _check_run(data)
    assert stored.incomplete_details is not None
    assert stored.incomplete_details.reason == "max_completion_tokens"
    assert stored.usage is not None and stored.usage.completion_tokens > 0
    assert fake.requests[0]["max_completion_tokens"] == 256

    reply = client.beta.threads.messages.list(thread_id=thread_id, run_id=run.id).data[0]
    check(Message, reply, "MessageObject")
    assert reply.status == "incomplete"
    assert reply.content[0].type == "text" and reply.content[0].text.value == "This answer was cut"


def test_max_prompt_tokens_exceeded_makes_the_run_incomplete(client: OpenAI, fake: FakeUpstream) -> None:
    assistant_id = _assistant(client)
    thread_id = _thread(client, "word " * 5000)
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread_id, assistant_id=assistant_id, max_prompt_tokens=256
    )
    assert run.status == "incomplete"
    stored = _check_run(
        raw(client.beta.threads.runs.with_raw_response.retrieve(run_id=run.id, thread_id=thread_id))
    )
    assert stored.incomplete_details is not None
    assert stored.incomplete_details.reason == "max_prompt_tokens"
    assert fake.requests == []  # nothing was sent: the prompt could not fit


def test_max_prompt_tokens_drops_the_oldest_history(client: OpenAI, fake: FakeUpstream) -> None:
    assistant_id = _assistant(client)
    thread_id = _thread(client, "old " * 2000, "the newest question")
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread_id, assistant_id=assistant_id, max_prompt_tokens=256
    )
    assert run.status == "completed"
    (request,) = fake.requests
    assert request["messages"] == [{"role": "user", "content": "the newest question"}]


def test_usage_on_runs_and_run_steps(client: OpenAI, fake: FakeUpstream) -> None:
    fake.push(Text("one two three", prompt_tokens=21, completion_tokens=3))
    assistant_id = _assistant(client)
    thread_id = _thread(client, "count")
    run = client.beta.threads.runs.create_and_poll(thread_id=thread_id, assistant_id=assistant_id)
    assert run.usage is not None
    assert (run.usage.prompt_tokens, run.usage.completion_tokens, run.usage.total_tokens) == (21, 3, 24)
    page = raw(client.beta.threads.runs.steps.with_raw_response.list(run_id=run.id, thread_id=thread_id))
    check(_ListPage, page, "ListRunStepsResponse")
    (step,) = [check(RunStep, s, "RunStepObject") for s in page["data"]]
    assert step.status == "completed"
    assert step.usage is not None
    assert (step.usage.prompt_tokens, step.usage.completion_tokens, step.usage.total_tokens) == (21, 3, 24)


def test_create_thread_and_run(client: OpenAI, fake: FakeUpstream) -> None:
    fake.push(Text("Hi from a new thread."))
    assistant_id = _assistant(client, instructions="Greet.")
    response = client.beta.threads.with_raw_response.create_and_run(
        assistant_id=assistant_id,
        thread={"messages": [{"role": "user", "content": "hello"}], "metadata": {"t": "1"}},
        metadata={"r": "1"},
        temperature=0.2,
    )
    assert response.headers.get("openai-poll-after-ms") is not None
    created = _check_run(raw(response))
    assert created.status == "queued"
    assert created.metadata == {"r": "1"}
    thread = check(
        Thread, raw(client.beta.threads.with_raw_response.retrieve(created.thread_id)), "ThreadObject"
    )
    assert thread.metadata == {"t": "1"}

    run = _wait(client, created.thread_id, created.id)
    assert run.status == "completed"
    messages = client.beta.threads.messages.list(thread_id=created.thread_id, order="asc").data
    assert [(m.role, m.content[0].text.value if m.content[0].type == "text" else "") for m in messages] == [
        ("user", "hello"),
        ("assistant", "Hi from a new thread."),
    ]
    (request,) = fake.requests
    assert request["messages"][0] == {"role": "system", "content": "Greet."}
    assert request["temperature"] == pytest.approx(0.2)


def test_create_and_run_poll(client: OpenAI, fake: FakeUpstream) -> None:
    assistant_id = _assistant(client)
    run = client.beta.threads.create_and_run_poll(
        assistant_id=assistant_id, thread={"messages": [{"role": "user", "content": "poll me"}]}
    )
    assert run.status == "completed"
    _check_run(
        raw(client.beta.threads.runs.with_raw_response.retrieve(run_id=run.id, thread_id=run.thread_id))
    )
    reply = client.beta.threads.messages.list(thread_id=run.thread_id).data[0]
    assert reply.content[0].type == "text"
    assert reply.content[0].text.value == "Hello from the fake upstream."
    assert fake.requests[0]["messages"] == [{"role": "user", "content": "poll me"}]


def test_list_retrieve_and_modify_runs(client: OpenAI, fake: FakeUpstream) -> None:
    assistant_id = _assistant(client)
    thread_id = _thread(client, "start")
    run_ids = []
    for i in range(3):
        run = client.beta.threads.runs.create_and_poll(
            thread_id=thread_id, assistant_id=assistant_id, metadata={"n": str(i)}
        )
        assert run.status == "completed"
        run_ids.append(run.id)

    first = raw(client.beta.threads.runs.with_raw_response.list(thread_id=thread_id, limit=2))
    runs = _check_runs_page(first)
    assert [r.id for r in runs] == [run_ids[2], run_ids[1]]  # newest first by default
    assert first["has_more"] is True
    assert first["first_id"] == run_ids[2] and first["last_id"] == run_ids[1]
    second = raw(
        client.beta.threads.runs.with_raw_response.list(thread_id=thread_id, limit=2, after=first["last_id"])
    )
    assert [r.id for r in _check_runs_page(second)] == [run_ids[0]]
    assert second["has_more"] is False
    ascending = raw(client.beta.threads.runs.with_raw_response.list(thread_id=thread_id, order="asc"))
    assert [r.id for r in _check_runs_page(ascending)] == run_ids
    before = raw(
        client.beta.threads.runs.with_raw_response.list(thread_id=thread_id, order="asc", before=run_ids[2])
    )
    assert [r.id for r in _check_runs_page(before)] == run_ids[:2]
    # The SDK's auto-pagination walks every page.
    assert [r.id for r in client.beta.threads.runs.list(thread_id=thread_id, limit=1)] == run_ids[::-1]

    retrieved = client.beta.threads.runs.with_raw_response.retrieve(run_id=run_ids[1], thread_id=thread_id)
    assert int(retrieved.headers["openai-poll-after-ms"]) >= 0
    assert _check_run(raw(retrieved)).metadata == {"n": "1"}

    modified = client.beta.threads.runs.with_raw_response.update(
        run_id=run_ids[1], thread_id=thread_id, metadata={"n": "changed", "extra": "yes"}
    )
    assert modified.headers.get("openai-poll-after-ms") is not None
    assert _check_run(raw(modified)).metadata == {"n": "changed", "extra": "yes"}
    again = client.beta.threads.runs.retrieve(run_id=run_ids[1], thread_id=thread_id)
    assert again.metadata == {"n": "changed", "extra": "yes"}
    assert again.status == "completed"

    with pytest.raises(openai.NotFoundError):
        client.beta.threads.runs.retrieve(run_id="run_doesnotexist", thread_id=thread_id)


def test_invalid_run_parameters_are_refused(client: OpenAI, fake: FakeUpstream) -> None:
    assistant_id = _assistant(client)
    thread_id = _thread(client, "x")
    cases: list[tuple[dict[str, Any], str]] = [
        ({"temperature": 3}, "temperature"),
        ({"top_p": 1.5}, "top_p"),
        ({"max_prompt_tokens": 10}, "max_prompt_tokens"),
        ({"max_completion_tokens": 255}, "max_completion_tokens"),
        ({"truncation_strategy": {"type": "sometimes"}}, "truncation_strategy.type"),
    ]
    for kwargs, param in cases:
        with pytest.raises(openai.BadRequestError) as info:
            client.beta.threads.runs.create(thread_id=thread_id, assistant_id=assistant_id, **kwargs)
        body = info.value.body
        assert isinstance(body, dict)
        assert body["param"] == param, json.dumps(body)
    with pytest.raises(openai.NotFoundError):
        client.beta.threads.runs.create(thread_id=thread_id, assistant_id="asst_missing")
    assert fake.requests == []
    # None of those refused requests left the thread busy.
    assert client.beta.threads.runs.create_and_poll(
        thread_id=thread_id, assistant_id=assistant_id
    ).status == ("completed")
