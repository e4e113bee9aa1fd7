"""Function calling round trips: requires_action, tool outputs (polled and streamed), parallel calls."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest
from openai import AssistantEventHandler, OpenAI
from openai.types.beta import AssistantStreamEvent
from openai.types.beta.threads import Run
from openai.types.beta.threads.runs import RunStep
from pydantic import BaseModel
from typing_extensions import override

from fake_upstream import FakeUpstream, Text, ToolCalls
from samples import WEATHER_TOOL
from server import KEYS, AssistdServer
from sse import frames_of
from wire import check, check_schema, raw


class _ListPage(BaseModel):
    object: str
    data: list[dict[str, Any]]
    first_id: str | None
    last_id: str | None
    has_more: bool


class Recorder(AssistantEventHandler):
    def __init__(self) -> None:
        super().__init__()
        self.events: list[AssistantStreamEvent] = []

    @override
    def on_event(self, event: AssistantStreamEvent) -> None:
        self.events.append(event)

    @property
    def names(self) -> list[str]:
        return [e.event for e in self.events]


def _setup(client: OpenAI, text: str = "Weather in Paris?") -> tuple[str, str]:
    assistant = client.beta.assistants.create(
        model="fake-model", instructions="Use tools.", tools=[WEATHER_TOOL]
    )
    thread = client.beta.threads.create(messages=[{"role": "user", "content": text}])
    return assistant.id, thread.id


def _run(client: OpenAI, thread_id: str, run_id: str) -> Run:
    return check(
        Run,
        raw(client.beta.threads.runs.with_raw_response.retrieve(run_id=run_id, thread_id=thread_id)),
        "RunObject",
    )


def _steps(client: OpenAI, thread_id: str, run_id: str) -> list[RunStep]:
    page = raw(
        client.beta.threads.runs.steps.with_raw_response.list(run_id=run_id, thread_id=thread_id, order="asc")
    )
    check(_ListPage, page, "ListRunStepsResponse")
    return [check(RunStep, step, "RunStepObject") for step in page["data"]]


def _validate(event: AssistantStreamEvent) -> None:
    """The event strictly as its SDK type, and its object against OpenAI's schema."""
    check(type(event), event)
    data = event.data.model_dump(mode="json", exclude_unset=True)
    if event.event.endswith(".delta"):
        return
    if event.event.startswith("thread.run.step."):
        check_schema(data, "RunStepObject")
    elif event.event.startswith("thread.run."):
        check_schema(data, "RunObject")
    elif event.event.startswith("thread.message."):
        check_schema(data, "MessageObject")


def _error_body(exc: openai.APIStatusError) -> dict[str, Any]:
    body = exc.body
    assert isinstance(body, dict)
    return body


# --------------------------------------------------------------------------------------------------


def test_function_call_round_trip_with_polling(client: OpenAI, fake: FakeUpstream) -> None:
    fake.push(
        ToolCalls([{"id": "call_weather1", "name": "get_weather", "arguments": {"city": "Paris"}}]),
        Text("It is 22C in Paris."),
    )
    assistant_id, thread_id = _setup(client)
    run = client.beta.threads.runs.create_and_poll(thread_id=thread_id, assistant_id=assistant_id)
    assert run.status == "requires_action"

    waiting = _run(client, thread_id, run.id)
    assert waiting.required_action is not None
    assert waiting.required_action.type == "submit_tool_outputs"
    (call,) = waiting.required_action.submit_tool_outputs.tool_calls
    assert call.id == "call_weather1"
    assert call.type == "function"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    assert waiting.expires_at is not None and waiting.expires_at > waiting.created_at

    (step,) = _steps(client, thread_id, run.id)
    assert step.type == "tool_calls" and step.status == "in_progress"

    done = client.beta.threads.runs.submit_tool_outputs_and_poll(
        run_id=run.id, thread_id=thread_id, tool_outputs=[{"tool_call_id": call.id, "output": "22C"}]
    )
    assert done.status == "completed"
    final = _run(client, thread_id, run.id)
    assert final.required_action is None and final.expires_at is None
    assert final.usage is not None and final.usage.prompt_tokens == 20  # two model turns of 10

    # The second upstream request carries the assistant's call and the tool's answer.
    first, second = fake.requests
    assert first["tools"] == [WEATHER_TOOL]
    assert second["messages"][:2] == first["messages"]
    assert second["messages"][2:] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_weather1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": call.function.arguments},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_weather1", "content": "22C"},
    ]

    tool_step, message_step = _steps(client, thread_id, run.id)
    assert tool_step.status == "completed" and tool_step.completed_at is not None
    assert tool_step.step_details.type == "tool_calls"
    (step_call,) = tool_step.step_details.tool_calls
    assert step_call.type == "function"
    assert step_call.id == "call_weather1"
    assert step_call.function.name == "get_weather"
    assert step_call.function.arguments == call.function.arguments
    assert step_call.function.output == "22C"
    assert tool_step.usage is not None and tool_step.usage.total_tokens > 0
    assert message_step.step_details.type == "message_creation"
    reply = client.beta.threads.messages.retrieve(
        message_id=message_step.step_details.message_creation.message_id, thread_id=thread_id
    )
    assert reply.content[0].type == "text" and reply.content[0].text.value == "It is 22C in Paris."


def test_parallel_calls_need_every_output(client: OpenAI, fake: FakeUpstream) -> None:
    fake.push(
        ToolCalls(
            [
                {"id": "call_paris", "name": "get_weather", "arguments": {"city": "Paris"}},
                {"id": "call_rome", "name": "get_weather", "arguments": {"city": "Rome"}},
            ]
        ),
        Text("Paris 22C, Rome 25C."),
    )
    assistant_id, thread_id = _setup(client, "Weather in Paris and Rome?")
    run = client.beta.threads.runs.create_and_poll(thread_id=thread_id, assistant_id=assistant_id)
    assert run.status == "requires_action"
    assert run.required_action is not None
    calls = run.required_action.submit_tool_outputs.tool_calls
    assert [(c.id, json.loads(c.function.arguments)) for c in calls] == [
        ("call_paris", {"city": "Paris"}),
        ("call_rome", {"city": "Rome"}),
    ]

    with pytest.raises(openai.BadRequestError) as missing:
        client.beta.threads.runs.submit_tool_outputs(
            run_id=run.id, thread_id=thread_id, tool_outputs=[{"tool_call_id": "call_paris", "output": "22C"}]
        )
    assert _error_body(missing.value)["param"] == "tool_outputs"
    assert "call_rome" in _error_body(missing.value)["message"]

    with pytest.raises(openai.BadRequestError) as unknown:
        client.beta.threads.runs.submit_tool_outputs(
            run_id=run.id,
            thread_id=thread_id,
            tool_outputs=[
                {"tool_call_id": "call_nope", "output": "?"},
                {"tool_call_id": "call_paris", "output": "22C"},
                {"tool_call_id": "call_rome", "output": "25C"},
            ],
        )
    body = _error_body(unknown.value)
    assert body["type"] == "invalid_request_error"
    assert body["param"] == "tool_outputs[0].tool_call_id"
    assert "call_nope" in body["message"]

    # Refused submissions change nothing: the run still waits for both outputs.
    still = _run(client, thread_id, run.id)
    assert still.status == "requires_action"
    assert len(fake.requests) == 1

    accepted = client.beta.threads.runs.with_raw_response.submit_tool_outputs(
        run_id=run.id,
        thread_id=thread_id,
        tool_outputs=[
            {"tool_call_id": "call_rome", "output": "25C"},
            {"tool_call_id": "call_paris", "output": "22C"},
        ],
    )
    assert accepted.headers.get("openai-poll-after-ms") is not None
    queued = check(Run, raw(accepted), "RunObject")
    assert queued.status == "queued" and queued.required_action is None
    done = client.beta.threads.runs.poll(run_id=run.id, thread_id=thread_id)
    assert done.status == "completed"
    second = fake.requests[1]["messages"]
    assert [m["role"] for m in second[-3:]] == ["assistant", "tool", "tool"]
    assert [c["id"] for c in second[-3]["tool_calls"]] == ["call_paris", "call_rome"]
    assert second[-2:] == [
        {"role": "tool", "tool_call_id": "call_paris", "content": "22C"},
        {"role": "tool", "tool_call_id": "call_rome", "content": "25C"},
    ]
    tool_step = _steps(client, thread_id, run.id)[0]
    assert tool_step.step_details.type == "tool_calls"
    outputs = [(c.id, c.function.output) for c in tool_step.step_details.tool_calls if c.type == "function"]
    assert outputs == [("call_paris", "22C"), ("call_rome", "25C")]


def test_submitting_outputs_to_a_run_that_does_not_wait_for_them(client: OpenAI, fake: FakeUpstream) -> None:
    assistant_id, thread_id = _setup(client)
    run = client.beta.threads.runs.create_and_poll(thread_id=thread_id, assistant_id=assistant_id)
    assert run.status == "completed"
    with pytest.raises(openai.BadRequestError) as info:
        client.beta.threads.runs.submit_tool_outputs(
            run_id=run.id, thread_id=thread_id, tool_outputs=[{"tool_call_id": "call_x", "output": "x"}]
        )
    body = _error_body(info.value)
    assert body["type"] == "invalid_request_error"
    assert "completed" in body["message"]
    with pytest.raises(openai.NotFoundError):
        client.beta.threads.runs.submit_tool_outputs(
            run_id="run_missing",
            thread_id=thread_id,
            tool_outputs=[{"tool_call_id": "call_x", "output": "x"}],
        )


def test_function_call_round_trip_streamed(client: OpenAI, fake: FakeUpstream) -> None:
    arguments = json.dumps({"city": "Paris", "unit": "celsius", "detail": "full forecast"})
    fake.push(
        ToolCalls([{"id": "call_s1", "name": "get_weather", "arguments": arguments}], argument_pieces=4),
        Text("Sunny, 22C.", chunks=["Sunny, ", "22C."]),
    )
    assistant_id, thread_id = _setup(client)
    first = Recorder()
    with client.beta.threads.runs.stream(
        thread_id=thread_id, assistant_id=assistant_id, event_handler=first
    ) as stream:
        stream.until_done()
    names = first.names
    assert names[:5] == [
        "thread.run.created",
        "thread.run.queued",
        "thread.run.in_progress",
        "thread.run.step.created",
        "thread.run.step.in_progress",
    ]
    assert names[-1] == "thread.run.requires_action"
    assert set(names[5:-1]) == {"thread.run.step.delta"}
    pieces: list[str] = []
    for event in first.events:
        _validate(event)
        if event.event != "thread.run.step.delta":
            continue
        details = event.data.delta.step_details
        assert details is not None and details.type == "tool_calls" and details.tool_calls
        function = details.tool_calls[0].function
        assert function is not None
        pieces.append(function.arguments or "")
    assert len([p for p in pieces if p]) == 4
    assert "".join(pieces) == arguments
    requires = first.events[-1]
    assert requires.event == "thread.run.requires_action"
    run = requires.data
    assert run.required_action is not None
    (call,) = run.required_action.submit_tool_outputs.tool_calls
    assert call.function.arguments == arguments

    second = Recorder()
    with client.beta.threads.runs.submit_tool_outputs_stream(
        run_id=run.id,
        thread_id=thread_id,
        tool_outputs=[{"tool_call_id": call.id, "output": "22C"}],
        event_handler=second,
    ) as stream:
        stream.until_done()
    assert second.names == [
        "thread.run.step.completed",
        "thread.run.queued",
        "thread.run.in_progress",
        "thread.run.step.created",
        "thread.run.step.in_progress",
        "thread.message.created",
        "thread.message.in_progress",
        "thread.message.delta",
        "thread.message.delta",
        "thread.message.completed",
        "thread.run.step.completed",
        "thread.run.completed",
    ]
    for event in second.events:
        _validate(event)
    tool_done = second.events[0]
    assert tool_done.event == "thread.run.step.completed"
    assert tool_done.data.step_details.type == "tool_calls"
    step_call = tool_done.data.step_details.tool_calls[0]
    assert step_call.type == "function" and step_call.function.output == "22C"
    assert fake.requests[1]["messages"][-1] == {"role": "tool", "tool_call_id": call.id, "content": "22C"}
    assert _run(client, thread_id, run.id).status == "completed"


def test_submit_tool_outputs_raw_stream_ends_with_done(
    client: OpenAI, server: AssistdServer, fake: FakeUpstream
) -> None:
    fake.push(ToolCalls([("get_weather", {"city": "Oslo"})]), Text("Cold."))
    assistant_id, thread_id = _setup(client)
    run = client.beta.threads.runs.create_and_poll(thread_id=thread_id, assistant_id=assistant_id)
    assert run.status == "requires_action" and run.required_action is not None
    call_id = run.required_action.submit_tool_outputs.tool_calls[0].id
    with (
        httpx_client(server) as http,
        http.stream(
            "POST",
            f"/threads/{thread_id}/runs/{run.id}/submit_tool_outputs",
            json={"tool_outputs": [{"tool_call_id": call_id, "output": "-5C"}], "stream": True},
        ) as response,
    ):
        assert response.status_code == 200
        body = response.read()
    assert body.endswith(b"\n\nevent: done\ndata: [DONE]\n\n")
    assert body.count(b"data: [DONE]") == 1
    frames = frames_of(body.decode())
    # The run's events carry ids that go on from its first stream's (its seqs in one log); done has none.
    ids = [int(frame["id"]) for frame in frames if "id" in frame]
    assert len(ids) == len(frames) - 1 and ids == list(range(ids[0], ids[0] + len(ids))) and ids[0] > 1
    names = [frame["event"] for frame in frames]
    assert names[0] == "thread.run.step.completed"
    assert names[-2:] == ["thread.run.completed", "done"]
    completed = json.loads(frames[-2]["data"])
    assert check(Run, completed, "RunObject").status == "completed"
    assert completed["id"] == run.id


def test_text_before_tool_calls_gets_its_own_step(client: OpenAI, fake: FakeUpstream) -> None:
    fake.push(ToolCalls([("get_weather", {"city": "Lima"})], text="Let me check."), Text("Warm."))
    assistant_id, thread_id = _setup(client)
    run = client.beta.threads.runs.create_and_poll(thread_id=thread_id, assistant_id=assistant_id)
    assert run.status == "requires_action" and run.required_action is not None
    call_id = run.required_action.submit_tool_outputs.tool_calls[0].id
    done = client.beta.threads.runs.submit_tool_outputs_and_poll(
        run_id=run.id, thread_id=thread_id, tool_outputs=[{"tool_call_id": call_id, "output": "30C"}]
    )
    assert done.status == "completed"
    steps = _steps(client, thread_id, run.id)
    assert [s.type for s in steps] == ["message_creation", "tool_calls", "message_creation"]
    assert all(s.status == "completed" for s in steps)
    texts = [
        m.content[0].text.value
        for m in client.beta.threads.messages.list(thread_id=thread_id, run_id=run.id, order="asc").data
        if m.content[0].type == "text"
    ]
    assert texts == ["Let me check.", "Warm."]
    history = fake.requests[1]["messages"]
    assert {"role": "tool", "tool_call_id": call_id, "content": "30C"} in history
    assert any(m["role"] == "assistant" and m.get("content") == "Let me check." for m in history)


def httpx_client(server: AssistdServer) -> Any:
    import httpx

    return httpx.Client(base_url=server.base_url, timeout=30, headers={"Authorization": f"Bearer {KEYS[0]}"})


@pytest.mark.parametrize(
    ("tool_choice", "after_outputs"),
    [({"type": "function", "function": {"name": "get_weather"}}, "none"), ("required", "auto")],
)
def test_a_forced_tool_choice_ends_once_tools_were_called(
    client: OpenAI, fake: FakeUpstream, tool_choice: Any, after_outputs: str
) -> None:
    """Forcing a tool again after its output came back would loop forever; the model answers instead."""
    fake.push(ToolCalls([("get_weather", {"city": "Oslo"})]), Text("Cold."))
    assistant_id, thread_id = _setup(client)
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread_id, assistant_id=assistant_id, tool_choice=tool_choice
    )
    assert run.status == "requires_action" and run.required_action is not None
    call_id = run.required_action.submit_tool_outputs.tool_calls[0].id
    done = client.beta.threads.runs.submit_tool_outputs_and_poll(
        run_id=run.id, thread_id=thread_id, tool_outputs=[{"tool_call_id": call_id, "output": "-3C"}]
    )
    assert done.status == "completed"
    first, second = fake.requests
    assert first["tool_choice"] == tool_choice
    assert second["tool_choice"] == after_outputs
    # The run still reports the choice it was created with.
    assert done.tool_choice == run.tool_choice
