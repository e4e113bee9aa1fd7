"""/v1/responses with function tools: calls as output items, follow-ups with their outputs, stateless
histories sent back whole, and the stream of a call; on the run that the response is."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI
from openai.types.conversations import ConversationItem
from openai.types.responses import ResponseFunctionToolCall
from pydantic import TypeAdapter

from fake_upstream import FakeUpstream, Text, ToolCalls
from responses_wire import EVENTS, post, raw_create, spec_check, stream_frames, strict
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
        ToolCalls([{"id": "call_w1", "name": "get_weather", "arguments": {"city": "Paris"}}], text="Let me see."),
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
    assert again.status == "completed" and [item.type for item in again.output] == ["message", "function_call"]
