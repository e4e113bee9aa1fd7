"""/v1/responses with function tools: calls as output items, follow-ups with their outputs, stateless
histories sent back whole, and the stream of a call; on the run that the response is."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from openai import OpenAI
from openai.types.conversations import ConversationItem
from openai.types.responses import ResponseFunctionToolCall
from pydantic import TypeAdapter

from conftest import Databases, make_client, start_server
from fake_upstream import FakeUpstream, Text, ToolCalls
from responses_wire import (
    EVENTS,
    message_item,
    post,
    raw_create,
    spec_check,
    squeeze,
    stream_frames,
    strict,
    text_stream,
)
from server import AssistdServer

WEATHER: dict[str, Any] = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather of a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}
TIME: dict[str, Any] = {
    "type": "function",
    "name": "get_time",
    "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}},
}


def _calls(response: Any) -> list[ResponseFunctionToolCall]:
    return [item for item in response.output if item.type == "function_call"]


def _chat(request: dict[str, Any]) -> list[dict[str, Any]]:
    """The messages sent upstream, without ids the model made (kept: role, content, tool calls, results)."""
    shown = []
    for message in request["messages"]:
        entry: dict[str, Any] = {"role": message["role"]}
        if message.get("content") is not None:
            entry["content"] = message["content"]
        if message.get("tool_calls"):
            entry["tool_calls"] = [
                (call["id"], call["function"]["name"], call["function"]["arguments"])
                for call in message["tool_calls"]
            ]
        if message.get("tool_call_id"):
            entry["tool_call_id"] = message["tool_call_id"]
        shown.append(entry)
    return shown


def test_function_call_then_output_by_previous_response(client: OpenAI, fake: FakeUpstream) -> None:
    fake.push(
        ToolCalls(
            [{"id": "call_w1", "name": "get_weather", "arguments": {"city": "Paris"}}], text="Let me see."
        ),
        Text("It is sunny in Paris.", prompt_tokens=30, completion_tokens=7),
    )
    first = raw_create(
        client,
        model="fake-model",
        input="Weather in Paris?",
        tools=[WEATHER, TIME],
        tool_choice="auto",
        parallel_tool_calls=False,
    )
    # Ended with its call, completed as OpenAI's: the message the model wrote first, then the call.
    assert first.status == "completed"
    assert [item.type for item in first.output] == ["message", "function_call"]
    assert first.output_text == "Let me see."
    call = _calls(first)[0]
    assert (call.call_id, call.name, json.loads(call.arguments), call.status) == (
        "call_w1",
        "get_weather",
        {"city": "Paris"},
        "completed",
    )
    assert call.id is not None and call.id.startswith("fc_")
    assert first.usage is not None and first.usage.total_tokens > 0
    assert [tool.model_dump(exclude_none=True) for tool in first.tools] == [WEATHER, TIME]
    assert first.parallel_tool_calls is False
    # The run got the tools and options.
    sent = fake.requests[0]
    assert [tool["function"]["name"] for tool in sent["tools"]] == ["get_weather", "get_time"]
    assert sent["tools"][0]["function"]["parameters"] == WEATHER["parameters"]
    assert sent["parallel_tool_calls"] is False
    assert sent["tool_choice"] == "auto"

    second = raw_create(
        client,
        model="fake-model",
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": "call_w1", "output": '{"sky": "sunny"}'}],
        tools=[WEATHER, TIME],
    )
    assert second.status == "completed"
    assert second.previous_response_id == first.id
    assert second.output_text == "It is sunny in Paris."
    assert [item.type for item in second.output] == ["message"]
    assert second.usage is not None
    assert (second.usage.input_tokens, second.usage.output_tokens) == (30, 7)
    # The model saw its call and the output as a tool result, in order.
    assert _chat(fake.requests[1]) == [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "Let me see."},
        {"role": "assistant", "tool_calls": [("call_w1", "get_weather", '{"city": "Paris"}')]},
        {"role": "tool", "content": '{"sky": "sunny"}', "tool_call_id": "call_w1"},
    ]
    # The first response stays as it was.
    again = strict(json.loads(client.responses.with_raw_response.retrieve(first.id).http_response.text))
    assert again.status == "completed" and [item.type for item in again.output] == [
        "message",
        "function_call",
    ]


def test_follow_up_options_apply_to_the_run(client: OpenAI, fake: FakeUpstream) -> None:
    fake.push(
        ToolCalls(
            [{"id": "call_o1", "name": "get_weather", "arguments": {"city": "Oslo"}}], completion_tokens=9
        ),
        Text('{"sky": "grey"}'),
        ToolCalls([{"id": "call_o2", "name": "get_weather", "arguments": {"city": "Oslo"}}]),
        Text("Bare."),
    )
    conversation = client.conversations.create().id
    first = raw_create(
        client,
        model="fake-model",
        input="Oslo?",
        conversation=conversation,
        instructions="First rules.",
        tools=[WEATHER],
        temperature=0.2,
        max_output_tokens=50,
    )
    assert [item.type for item in first.output] == ["function_call"]
    # The follow-up's own options: the run takes them with the outputs, for its next turns.
    second = raw_create(
        client,
        model="fake-model-large",
        conversation=conversation,
        input=[{"type": "function_call_output", "call_id": "call_o1", "output": "grey"}],
        instructions="Second rules.",
        tools=[WEATHER, TIME],
        temperature=0.7,
        top_p=0.5,
        max_output_tokens=100,
        parallel_tool_calls=False,
        text={"format": {"type": "json_object"}},
    )
    assert second.output_text == '{"sky": "grey"}'
    sent = fake.requests[1]
    assert sent["model"] == "fake-model-large"
    assert sent["messages"][0] == {"role": "system", "content": "Second rules."}
    assert [tool["function"]["name"] for tool in sent["tools"]] == ["get_weather", "get_time"]
    assert (sent["temperature"], sent["top_p"], sent["parallel_tool_calls"]) == (0.7, 0.5, False)
    assert sent["response_format"] == {"type": "json_object"}
    # ``max_output_tokens`` bounds this response's tokens: the run's bound is its total, the first's 9 too.
    assert sent["max_completion_tokens"] == 100
    assert (second.instructions, second.temperature, second.model) == (
        "Second rules.",
        0.7,
        "fake-model-large",
    )
    run = client.beta.threads.runs.list(conversation).data[0]
    assert (run.instructions, run.max_completion_tokens) == ("Second rules.", 109)
    # Nothing is carried over, as on OpenAI: a follow-up without instructions or tools has none.
    third = raw_create(client, model="fake-model", input="Again?", conversation=conversation, tools=[WEATHER])
    assert [item.type for item in third.output] == ["function_call"]
    fourth = raw_create(
        client,
        model="fake-model",
        conversation=conversation,
        input=[{"type": "function_call_output", "call_id": "call_o2", "output": "grey"}],
    )
    assert fourth.output_text == "Bare."
    sent = fake.requests[3]
    assert sent["messages"][0]["role"] == "user" and "tools" not in sent
    assert "response_format" not in sent and "max_completion_tokens" not in sent


def _error(client: OpenAI, **body: Any) -> openai.BadRequestError:
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(**body)
    return caught.value


def test_function_tools_refused_with_the_parameter_named(client: OpenAI, fake: FakeUpstream) -> None:
    bad_name = _error(client, model="fake-model", input="hi", tools=[WEATHER, {**TIME, "name": "no spaces"}])
    assert bad_name.param == "tools[1].name"
    no_name = _error(client, model="fake-model", input="hi", tools=[{"type": "function", "parameters": {}}])
    assert no_name.param == "tools[0].name"
    extra = _error(client, model="fake-model", input="hi", tools=[{**WEATHER, "colour": "red"}])
    assert extra.param == "tools[0].colour"
    twice = _error(client, model="fake-model", input="hi", tools=[WEATHER, WEATHER])
    assert twice.param == "tools"
    unknown = _error(
        client,
        model="fake-model",
        input="hi",
        tools=[WEATHER],
        tool_choice={"type": "function", "name": "nope"},
    )
    assert unknown.param == "tool_choice"
    # Other tool types are not this change's: still refused, named.
    other = _error(client, model="fake-model", input="hi", tools=[WEATHER, {"type": "web_search"}])
    assert other.param == "tools[1].type"
    assert fake.requests == []


def test_tool_choice_reaches_the_model(client: OpenAI, fake: FakeUpstream) -> None:
    fake.push(
        ToolCalls([("get_time", {"zone": "UTC"})]),
        Text("No tools."),
        ToolCalls([("get_weather", {"city": "Oslo"})]),
    )
    forced = raw_create(
        client,
        model="fake-model",
        input="Time?",
        tools=[WEATHER, TIME],
        tool_choice={"type": "function", "name": "get_time"},
    )
    assert forced.tool_choice.model_dump() == {"type": "function", "name": "get_time"}  # type: ignore[union-attr]
    assert fake.requests[0]["tool_choice"] == {"type": "function", "function": {"name": "get_time"}}
    assert [call.name for call in _calls(forced)] == ["get_time"]
    none = raw_create(client, model="fake-model", input="Chat", tools=[WEATHER], tool_choice="none")
    assert none.tool_choice == "none" and none.output_text == "No tools."
    assert fake.requests[1]["tool_choice"] == "none"
    required = raw_create(client, model="fake-model", input="Oslo?", tools=[WEATHER], tool_choice="required")
    assert required.tool_choice == "required"
    assert fake.requests[2]["tool_choice"] == "required"
    assert fake.requests[2]["parallel_tool_calls"] is True


def test_follow_up_needs_every_output_and_only_known_calls(client: OpenAI, fake: FakeUpstream) -> None:
    fake.push(
        ToolCalls([("get_weather", {"city": "Rome"}), ("get_time", {"zone": "CET"})]), Text("Both known.")
    )
    first = client.responses.create(model="fake-model", input="Rome?", tools=[WEATHER, TIME])
    ids = [call.call_id for call in _calls(first)]
    assert len(ids) == 2 and first.status == "completed"
    output = {"type": "function_call_output", "call_id": ids[0], "output": "warm"}
    missing = _error(client, model="fake-model", previous_response_id=first.id, input=[output])
    assert missing.param == "input" and ids[1] in missing.message
    unknown = _error(
        client,
        model="fake-model",
        previous_response_id=first.id,
        input=[output, {"type": "function_call_output", "call_id": "call_nope", "output": "x"}],
    )
    assert unknown.param == "input[1].call_id"
    chatty = _error(client, model="fake-model", previous_response_id=first.id, input="What now?")
    assert chatty.param == "input"
    # A call's output with no call anywhere (no previous response): refused too.
    stray = _error(client, model="fake-model", input=[output])
    assert stray.param == "input[0].call_id"
    # Still waiting: the right outputs go through, in any order.
    done = client.responses.create(
        model="fake-model",
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": ids[1], "output": "noon"}, output],
    )
    assert done.output_text == "Both known."
    tools = [m for m in fake.requests[-1]["messages"] if m["role"] == "tool"]
    assert [(m["tool_call_id"], m["content"]) for m in tools] == [(ids[0], "warm"), (ids[1], "noon")]


def test_stateless_history_reaches_the_model_in_order(client: OpenAI, fake: FakeUpstream) -> None:
    fake.push(Text("Sunny, as said."), Text("Stateless too."))
    history: list[dict[str, Any]] = [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "type": "function_call",
            "id": "fc_old_0",
            "call_id": "call_a",
            "name": "get_weather",
            "arguments": '{"city": "Paris"}',
            "status": "completed",
        },
        {"type": "function_call_output", "call_id": "call_a", "output": "sunny"},
        {
            "type": "message",
            "id": "msg_old",
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": "It is sunny.", "annotations": []}],
        },
        {"role": "user", "content": "And tomorrow?"},
        {
            "type": "function_call",
            "call_id": "call_b",
            "name": "get_weather",
            "arguments": '{"city": "Paris"}',
        },
        {"type": "function_call", "call_id": "call_c", "name": "get_time", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_c", "output": "Monday"},
        {"type": "function_call_output", "call_id": "call_b", "output": "sunny"},
    ]
    response = raw_create(
        client, model="fake-model", input=history, tools=[WEATHER, TIME], instructions="Be brief."
    )
    assert response.output_text == "Sunny, as said."
    assert [item.type for item in response.output] == ["message"]
    expected = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "tool_calls": [("call_a", "get_weather", '{"city": "Paris"}')]},
        {"role": "tool", "content": "sunny", "tool_call_id": "call_a"},
        {"role": "assistant", "content": "It is sunny."},
        {"role": "user", "content": "And tomorrow?"},
        {
            "role": "assistant",
            "tool_calls": [("call_b", "get_weather", '{"city": "Paris"}'), ("call_c", "get_time", "{}")],
        },
        {"role": "tool", "content": "sunny", "tool_call_id": "call_b"},
        {"role": "tool", "content": "Monday", "tool_call_id": "call_c"},
    ]
    assert _chat(fake.requests[0]) == expected
    # The input items are its messages.
    items = client.responses.input_items.list(response.id, order="asc")
    assert [(item.type, getattr(item, "role", None)) for item in items.data] == [
        ("message", "user"),
        ("message", "assistant"),
        ("message", "user"),
    ]
    # store: false, the same history: the same context, nothing kept.
    unstored = raw_create(
        client,
        model="fake-model",
        input=history,
        tools=[WEATHER, TIME],
        instructions="Be brief.",
        store=False,
    )
    assert unstored.output_text == "Stateless too." and unstored.store is False
    assert _chat(fake.requests[1]) == expected
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(unstored.id)
    # A call without its output is refused, naming the input.
    missing = _error(client, model="fake-model", input=history[:2], tools=[WEATHER])
    assert missing.param == "input" and "call_a" in missing.message


def test_conversation_follow_up_keeps_the_thread_consistent(client: OpenAI, fake: FakeUpstream) -> None:
    fake.push(
        ToolCalls([{"id": "call_k", "name": "get_weather", "arguments": {"city": "Kyiv"}}]),
        Text("Cold in Kyiv."),
    )
    conversation = client.conversations.create()
    first = raw_create(
        client, model="fake-model", input="Kyiv?", conversation=conversation.id, tools=[WEATHER]
    )
    assert first.status == "completed" and [item.type for item in first.output] == ["function_call"]
    waiting = client.beta.threads.runs.list(conversation.id).data[0]
    assert waiting.status == "requires_action" and waiting.required_action is not None
    assert [c.id for c in waiting.required_action.submit_tool_outputs.tool_calls] == ["call_k"]
    # Done: not cancelled with the run that waits.
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.cancel(first.id)
    assert refused.value.param == "response_id"
    # The conversation's run waits for the output: a message is refused, the output is taken.
    busy = _error(client, model="fake-model", input="Hello?", conversation=conversation.id)
    assert busy.param == "input"
    second = raw_create(
        client,
        model="fake-model",
        conversation=conversation.id,
        input=[{"type": "function_call_output", "call_id": "call_k", "output": "-5C"}],
        tools=[WEATHER],
    )
    assert second.output_text == "Cold in Kyiv." and second.conversation is not None
    items = client.conversations.items.list(conversation.id, order="asc")
    for item in items.data:
        TypeAdapter(ConversationItem).validate_python(item.model_dump())
    assert [item.type for item in items.data] == [
        "message",
        "function_call",
        "function_call_output",
        "message",
    ]
    call, output = items.data[1], items.data[2]
    assert call.call_id == output.call_id == "call_k"  # type: ignore[union-attr]
    # The Assistants view: one run, its steps the call (answered) and the message.
    runs = client.beta.threads.runs.list(conversation.id)
    assert [run.status for run in runs.data] == ["completed"]
    steps = client.beta.threads.runs.steps.list(runs.data[0].id, thread_id=conversation.id, order="asc")
    assert [step.type for step in steps.data] == ["tool_calls", "message_creation"]
    messages = client.beta.threads.messages.list(conversation.id, order="asc")
    assert [m.role for m in messages.data] == ["user", "assistant"]
    # Both responses read back as they were answered.
    assert client.responses.retrieve(first.id).output[0].type == "function_call"
    assert client.responses.retrieve(second.id).output_text == "Cold in Kyiv."


def _events(frames: list[tuple[str, dict[str, Any]]]) -> list[str]:
    for number, (name, data) in enumerate(frames):
        assert data["type"] == name and data["sequence_number"] == number
        EVENTS.validate_python(data)
        spec_check(data, "ResponseStreamEvent")
    return [name for name, _ in frames]


def test_streamed_function_calls_in_openai_order(
    server: AssistdServer, client: OpenAI, fake: FakeUpstream
) -> None:
    fake.push(
        ToolCalls(
            [
                {"id": "call_s1", "name": "get_weather", "arguments": {"city": "Lima"}},
                {"id": "call_s2", "name": "get_time", "arguments": {"zone": "PET"}},
            ],
            argument_pieces=3,
        ),
        Text("Warm and late.", chunks=["Warm ", "and late."]),
    )
    frames = stream_frames(
        server, {"model": "fake-model", "input": "Lima?", "tools": [WEATHER, TIME], "stream": True}
    )
    names = _events(frames)
    assert names[:2] == ["response.created", "response.in_progress"]
    assert names[-1] == "response.completed"
    # As OpenAI's: each call added, its argument deltas, done, before the next call begins.
    one_call = [
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
    ]
    assert squeeze(names[2:-1]) == one_call * 2
    assert [data["output_index"] for _, data in frames[2:-1]] == sorted(
        data["output_index"] for _, data in frames[2:-1]
    )
    added = [data for name, data in frames if name == "response.output_item.added"]
    assert [data["item"]["arguments"] for data in added] == ["", ""]
    for index, (call_id, arguments) in enumerate(
        [("call_s1", {"city": "Lima"}), ("call_s2", {"zone": "PET"})]
    ):
        deltas = "".join(
            data["delta"]
            for name, data in frames
            if name == "response.function_call_arguments.delta" and data["output_index"] == index
        )
        assert json.loads(deltas) == arguments
        done = next(
            data
            for name, data in frames
            if name == "response.output_item.done" and data["output_index"] == index
        )
        assert done["item"]["call_id"] == call_id and json.loads(done["item"]["arguments"]) == arguments
        assert done["item"]["id"] == added[index]["item"]["id"] == done["item"]["id"]
    final = strict(frames[-1][1]["response"])
    assert final.status == "completed"
    assert [(c.call_id, c.id) for c in _calls(final)] == [
        (d["item"]["call_id"], d["item"]["id"]) for d in added
    ]

    # The follow-up, streamed with the SDK's helper.
    outputs = [
        {"type": "function_call_output", "call_id": "call_s1", "output": "warm"},
        {"type": "function_call_output", "call_id": "call_s2", "output": "late"},
    ]
    with client.responses.stream(
        model="fake-model", previous_response_id=final.id, input=outputs, tools=[WEATHER, TIME]
    ) as stream:
        kinds = [event.type for event in stream]
        answer = stream.get_final_response()
    assert kinds[-1] == "response.completed" and "response.output_text.delta" in kinds
    assert answer.output_text == "Warm and late."
    assert answer.previous_response_id == final.id


def test_streamed_text_then_call_closes_the_message_first(server: AssistdServer, fake: FakeUpstream) -> None:
    fake.push(
        ToolCalls(
            [{"id": "call_t", "name": "get_weather", "arguments": {"city": "Turin"}}],
            text="Let me check Turin.",
        )
    )
    frames = stream_frames(
        server, {"model": "fake-model", "input": "Turin?", "tools": [WEATHER], "stream": True}
    )
    names = _events(frames)
    assert squeeze(names) == [
        "response.created",
        "response.in_progress",
        *message_item(),
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    final = strict(frames[-1][1]["response"])
    done = [data["item"] for name, data in frames if name == "response.output_item.done"]
    # The items as they were streamed are the response's output.
    assert done == frames[-1][1]["response"]["output"]
    assert final.output_text == "Let me check Turin."


def test_stream_helper_gets_the_calls(server: AssistdServer, client: OpenAI, fake: FakeUpstream) -> None:
    fake.push(
        ToolCalls([{"id": "call_h", "name": "get_weather", "arguments": {"city": "Bern"}}], text="Checking.")
    )
    with client.responses.stream(model="fake-model", input="Bern?", tools=[WEATHER]) as stream:
        events = list(stream)
        final = stream.get_final_response()
    for event in events:
        EVENTS.validate_python(event.model_dump(mode="json", warnings=False))
    assert [e.type for e in events if e.type.startswith("response.function_call")][
        -1
    ] == "response.function_call_arguments.done"
    assert [item.type for item in final.output] == ["message", "function_call"]
    call = _calls(final)[0]
    assert (call.call_id, call.name, json.loads(call.arguments)) == (
        "call_h",
        "get_weather",
        {"city": "Bern"},
    )
    assert final.output_text == "Checking."
    # The follow-up's stream is its answer's only: nothing of the call it answers.
    fake.push(Text("Mild in Bern.", chunks=["Mild ", "in Bern."]))
    output = {"type": "function_call_output", "call_id": "call_h", "output": "mild"}
    body = {"model": "fake-model", "previous_response_id": final.id, "input": [output], "stream": True}
    frames = stream_frames(server, body)
    assert _events(frames) == text_stream(2)
    answer = strict(frames[-1][1]["response"])
    assert answer.output_text == "Mild in Bern." and answer.previous_response_id == final.id


def test_function_items_checked_and_text_parts_taken(
    server: AssistdServer, client: OpenAI, fake: FakeUpstream
) -> None:
    call = {"type": "function_call", "call_id": "c", "name": "get_time", "arguments": "{}"}
    cases = [
        ({"type": "function_call_output", "call_id": "c", "output": 3}, "input[1].output"),
        (
            {"type": "function_call_output", "call_id": "c", "output": [{"type": "input_image"}]},
            "input[1].output[0]",
        ),
        ({"type": "function_call_output", "output": "x"}, "input[1].call_id"),
    ]
    for item, param in cases:
        answer = post(server, "/responses", {"model": "fake-model", "input": [call, item], "tools": [TIME]})
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"]["param"] == param
    assert (
        post(server, "/responses", {"model": "fake-model", "input": [{**call, "name": 1}]}).json()["error"][
            "param"
        ]
        == "input[0]"
    )
    # An output given as text parts is their text.
    fake.push(Text("Noon."))
    parts = [{"type": "input_text", "text": "12:"}, {"type": "input_text", "text": "00"}]
    answer = raw_create(
        client,
        model="fake-model",
        input=[call, {"type": "function_call_output", "call_id": "c", "output": parts}],
        tools=[TIME],
    )
    assert answer.output_text == "Noon."
    assert fake.requests[-1]["messages"][-1] == {"role": "tool", "tool_call_id": "c", "content": "12:00"}


@pytest.fixture(scope="module")
def expiring(
    tmp_path_factory: pytest.TempPathFactory, databases: Databases, fake: FakeUpstream
) -> Iterator[AssistdServer]:
    """Function outputs awaited for a second only."""
    srv = start_server(tmp_path_factory, databases, fake, requires_action_expiry_seconds="1")
    yield srv
    srv.stop()


def test_unanswered_calls_expire_and_free_the_conversation(
    expiring: AssistdServer, fake: FakeUpstream
) -> None:
    fake.push(
        ToolCalls([{"id": "call_x", "name": "get_weather", "arguments": {"city": "Riga"}}]),
        Text("Hello again."),
    )
    with make_client(expiring) as client:
        conversation = client.conversations.create()
        first = raw_create(
            client, model="fake-model", input="Riga?", conversation=conversation.id, tools=[WEATHER]
        )
        assert [item.type for item in first.output] == ["function_call"]
        run_id = client.beta.threads.runs.list(conversation.id).data[0].id
        # A bounded wait for the run's expiry, not a timing assertion.
        deadline = time.monotonic() + 20
        while client.beta.threads.runs.retrieve(run_id, thread_id=conversation.id).status != "expired":
            assert time.monotonic() < deadline
            time.sleep(0.2)
        late = _error(
            client,
            model="fake-model",
            conversation=conversation.id,
            input=[{"type": "function_call_output", "call_id": "call_x", "output": "x"}],
        )
        assert late.param == "input[0].call_id"
        # The conversation is free again; the first response still shows what it answered.
        again = client.responses.create(model="fake-model", input="Hello?", conversation=conversation.id)
        assert again.output_text == "Hello again."
        kept = strict(json.loads(client.responses.with_raw_response.retrieve(first.id).http_response.text))
        assert kept.status == "completed" and [item.type for item in kept.output] == ["function_call"]
