from __future__ import annotations

import dataclasses
import json
from itertools import count

from assistd.llm import envelope
from assistd.llm.types import ChatRequest

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def _request(**options: object) -> ChatRequest:
    return ChatRequest(model="m", messages=[{"role": "user", "content": "hi"}], **options)  # type: ignore[arg-type]


def _ids() -> object:
    numbers = count()
    return lambda: f"call_{next(numbers)}"


def _feed_all(decoder: envelope.Decoder, text: str, step: int = 3) -> tuple[str, list[envelope.ChatChunk]]:
    streamed = []
    for start in range(0, len(text), step):
        streamed += decoder.feed(text[start : start + step])
    finished = decoder.finish()
    return "".join(c.text or "" for c in streamed + finished), [c for c in finished if c.tool_calls]


def test_plan_follows_tool_choice_and_response_format() -> None:
    assert envelope.plan(_request()).mode == "text"
    assert envelope.plan(_request(tools=[WEATHER], tool_choice="none")).mode == "text"
    auto = envelope.plan(_request(tools=[WEATHER], tool_choice="auto"))
    assert auto.mode == "envelope" and auto.schema is not None and "anyOf" in auto.schema
    required = envelope.plan(_request(tools=[WEATHER], tool_choice="required"))
    assert required.mode == "envelope" and required.schema is not None
    assert required.schema["properties"]["type"] == {"const": "tool_calls"}
    forced = envelope.plan(
        _request(tools=[WEATHER], tool_choice={"type": "function", "function": {"name": "get_weather"}})
    )
    assert forced.mode == "forced" and forced.forced_tool == "get_weather"
    # Closed so a tiny model cannot pad the arguments; still valid against the original schema.
    assert forced.schema == {**WEATHER["function"]["parameters"], "additionalProperties": False}  # type: ignore[dict-item]
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    structured = envelope.plan(
        _request(response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}})
    )
    assert structured.mode == "json_schema" and structured.schema == schema
    assert envelope.plan(_request(response_format={"type": "json_object"})).mode == "json_object"


def test_single_call_envelope_when_parallel_calls_are_off() -> None:
    plan = envelope.plan(_request(tools=[WEATHER], tool_choice="required", parallel_tool_calls=False))
    assert plan.schema is not None and plan.schema["properties"]["calls"]["maxItems"] == 1


def test_message_envelope_streams_its_text_with_escapes_decoded() -> None:
    plan = envelope.plan(_request(tools=[WEATHER], tool_choice="auto"))
    content = 'Line one\nsays "hi" \\ caf\u00e9 \U0001f600 done'
    output = json.dumps({"type": "message", "content": content}, separators=(",", ":"))
    decoder = envelope.Decoder(plan, _ids())
    first = decoder.feed(output[: len(envelope.MESSAGE_PREFIX) + 4])
    assert [c.text for c in first] == ["Line"], "text streams as soon as the envelope says it is a message"
    text, calls = _feed_all(decoder, output[len(envelope.MESSAGE_PREFIX) + 4 :], step=1)
    assert "Line" + text == content and calls == []


def test_tool_call_envelope_becomes_tool_call_chunks() -> None:
    plan = envelope.plan(_request(tools=[WEATHER], tool_choice="auto"))
    output = json.dumps(
        {
            "type": "tool_calls",
            "calls": [
                {"name": "get_weather", "arguments": {"city": "Oslo"}},
                {"name": "get_weather", "arguments": {"city": "Rome"}},
            ],
        },
        separators=(",", ":"),
    )
    text, calls = _feed_all(envelope.Decoder(plan, _ids()), output)
    assert text == ""
    (chunk,) = calls
    assert [(d.index, d.id, d.name, json.loads(d.arguments or "")) for d in chunk.tool_calls] == [
        (0, "call_0", "get_weather", {"city": "Oslo"}),
        (1, "call_1", "get_weather", {"city": "Rome"}),
    ]
    assert chunk.finish_reason == "tool_calls"


def test_forced_call_output_is_the_arguments() -> None:
    plan = envelope.plan(
        _request(tools=[WEATHER], tool_choice={"type": "function", "function": {"name": "get_weather"}})
    )
    _, calls = _feed_all(envelope.Decoder(plan, _ids()), '{"city":"Paris"}')
    assert [(d.name, d.arguments) for d in calls[0].tool_calls] == [("get_weather", '{"city": "Paris"}')]


def test_cut_off_envelope_keeps_the_complete_calls_only() -> None:
    plan = envelope.plan(_request(tools=[WEATHER], tool_choice="required"))
    output = '{"type":"tool_calls","calls":[{"name":"get_weather","arguments":{"city":"A"}},{"name":"get_wea'
    _, calls = _feed_all(envelope.Decoder(plan, _ids()), output)
    assert [d.arguments for d in calls[0].tool_calls] == ['{"city": "A"}']


def test_tool_turns_become_text_for_templates_without_tools() -> None:
    request = ChatRequest(
        model="m",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Weather?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "cold"},
        ],
        tools=[WEATHER],
        tool_choice="auto",
    )
    messages = envelope.chat_messages(request, envelope.plan(request))
    assert messages[0]["role"] == "system" and "get_weather" in messages[0]["content"]
    assert messages[0]["content"].startswith("Be brief.")
    assert json.loads(messages[2]["content"]) == {
        "type": "tool_calls",
        "calls": [{"name": "get_weather", "arguments": {"city": "Oslo"}}],
    }
    assert messages[3] == {"role": "user", "content": "Tool result for call call_1: cold"}

    # With tools off (tool_choice none: the answer after the calls) there is no grammar, and JSON calls in
    # the history would be copied into the answer as text: they are told in words.
    answering = dataclasses.replace(request, tool_choice="none")
    plain = envelope.chat_messages(answering, envelope.plan(answering))
    assert envelope.plan(answering).mode == "text"
    assert plain[2] == {
        "role": "assistant",
        "content": 'I called the tool get_weather with {"city": "Oslo"}.',
    }
    assert '{"type"' not in json.dumps(plain)


def test_local_models_setting_parses_paths_and_ids() -> None:
    from pathlib import Path

    from assistd.llm.local import LocalModelSpec, parse_models

    assert parse_models(" /m/Qwen2.5-1.5B.gguf , /m/b.gguf=fast ,") == [
        LocalModelSpec("qwen2.5-1.5b", Path("/m/Qwen2.5-1.5B.gguf")),
        LocalModelSpec("fast", Path("/m/b.gguf")),
    ]
