"""Tool calling and structured output for models with no native tool support, by constrained decoding.

A small local model is asked for one JSON "envelope" whose shape a grammar enforces: either
``{"type": "message", "content": "..."}`` or ``{"type": "tool_calls", "calls": [{"name", "arguments"}]}``,
each call's ``arguments`` constrained by that tool's parameters schema. Whatever the model decides, the
answer parses, and a forced call is always valid. ``Decoder`` turns the envelope back into the text and
tool-call chunks the run engine gets from any provider, streaming a message's text as it is generated.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from .types import ChatChunk, ChatRequest, ToolCallDelta

MESSAGE_PREFIX = '{"type":"message","content":"'
CALLS_PREFIX = '{"type":"tool_calls","calls":['
MAX_PARALLEL_CALLS = 4

Mode = Literal["text", "json_object", "json_schema", "envelope", "forced"]


@dataclass(frozen=True)
class Plan:
    """How one request is decoded: free text, or JSON under ``schema``."""

    mode: Mode
    schema: dict[str, Any] | None = None
    forced_tool: str | None = None


def _tools_by_name(request: ChatRequest) -> dict[str, dict[str, Any]]:
    return {
        tool["function"]["name"]: tool["function"] for tool in request.tools if tool.get("type") == "function"
    }


def _parameters(function: dict[str, Any]) -> dict[str, Any]:
    schema = dict(function.get("parameters") or {"type": "object", "properties": {}})
    # Arguments a schema does not name are allowed by JSON schema, and a tiny model fills them with noise;
    # closing the object keeps every answer valid against the original schema, and short.
    if schema.get("type") == "object" and "additionalProperties" not in schema:
        schema["additionalProperties"] = False
    return schema


def plan(request: ChatRequest) -> Plan:
    tools = _tools_by_name(request)
    choice = request.tool_choice
    if tools and choice != "none":
        if isinstance(choice, dict) and choice.get("type") == "function":
            name = choice["function"]["name"]
            if name in tools:
                return Plan("forced", _parameters(tools[name]), forced_tool=name)
        return Plan(
            "envelope",
            envelope_schema(
                tools, allow_message=choice != "required", parallel=request.parallel_tool_calls is not False
            ),
        )
    response_format = request.response_format or {}
    if response_format.get("type") == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema") or {"type": "object"}
        return Plan("json_schema", schema)
    if response_format.get("type") == "json_object":
        return Plan("json_object", {"type": "object"})
    return Plan("text")


def envelope_schema(
    tools: dict[str, dict[str, Any]], *, allow_message: bool, parallel: bool
) -> dict[str, Any]:
    calls = [
        {
            "type": "object",
            "properties": {"name": {"const": name}, "arguments": _parameters(function)},
            "required": ["name", "arguments"],
            "additionalProperties": False,
        }
        for name, function in tools.items()
    ]
    tool_calls = {
        "type": "object",
        "properties": {
            "type": {"const": "tool_calls"},
            "calls": {
                "type": "array",
                "items": {"anyOf": calls},
                "minItems": 1,
                "maxItems": 8 if parallel else 1,
            },
        },
        "required": ["type", "calls"],
        "additionalProperties": False,
    }
    if not allow_message:
        return tool_calls
    message = {
        "type": "object",
        "properties": {"type": {"const": "message"}, "content": {"type": "string"}},
        "required": ["type", "content"],
        "additionalProperties": False,
    }
    return {"anyOf": [message, tool_calls]}


def tool_instructions(request: ChatRequest, forced_tool: str | None) -> str:
    """What the model is told about its tools, since its chat template cannot say it."""
    tools = _tools_by_name(request)
    lines = ["You can call these tools:"]
    for name, function in tools.items():
        description = function.get("description") or ""
        lines.append(f"- {name}: {description} Arguments (JSON schema): {json.dumps(_parameters(function))}")
    if forced_tool:
        lines.append(f"Answer with the JSON arguments for {forced_tool} only.")
    else:
        lines.append(
            'Answer in JSON: {"type":"tool_calls","calls":[{"name":...,"arguments":{...}}]} to call tools, '
            'or {"type":"message","content":"..."} to reply to the user.'
        )
    return "\n".join(lines)


def chat_messages(request: ChatRequest, current: Plan) -> list[dict[str, Any]]:
    """The request's messages for a model whose template knows no tools: calls and results become text."""
    messages: list[dict[str, Any]] = []
    for message in request.messages:
        if message["role"] == "tool":
            messages.append(
                {
                    "role": "user",
                    "content": f"Tool result for call {message['tool_call_id']}: {message['content']}",
                }
            )
        elif message.get("tool_calls"):
            calls = [
                {"name": c["function"]["name"], "arguments": _json_or_text(c["function"]["arguments"])}
                for c in message["tool_calls"]
            ]
            if current.mode in ("envelope", "forced"):
                content = json.dumps({"type": "tool_calls", "calls": calls})
            else:
                # Without a grammar a small model copies what it sees: JSON calls in the history would come
                # back as JSON text in its answer. Past calls are told in words instead.
                content = "; ".join(
                    f"I called the tool {call['name']} with {json.dumps(call['arguments'])}."
                    for call in calls
                )
            messages.append({"role": "assistant", "content": content})
        else:
            messages.append({"role": message["role"], "content": message.get("content") or ""})
    if current.mode in ("envelope", "forced"):
        note = tool_instructions(request, current.forced_tool)
        if messages and messages[0]["role"] == "system":
            messages[0] = {"role": "system", "content": f"{messages[0]['content']}\n\n{note}"}
        else:
            messages.insert(0, {"role": "system", "content": note})
    return messages


def _json_or_text(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value


class Decoder:
    """Reads the model's constrained output piece by piece and yields what the run engine understands."""

    def __init__(self, current: Plan, new_call_id: Any) -> None:
        self._plan = current
        self._new_call_id = new_call_id
        self._buffer = ""
        self._streamed = 0  # characters of the buffer already turned into message text
        self._streaming = False

    def feed(self, piece: str) -> list[ChatChunk]:
        if self._plan.mode in ("text", "json_object", "json_schema"):
            return [ChatChunk(text=piece)] if piece else []
        self._buffer += piece
        if self._plan.mode != "envelope":
            return []
        if not self._streaming:
            if not self._buffer.startswith(MESSAGE_PREFIX[: len(self._buffer)]):
                return []  # a tool call: decided when the JSON is complete
            if len(self._buffer) < len(MESSAGE_PREFIX):
                return []
            self._streaming = True
            self._streamed = len(MESSAGE_PREFIX)
        text, self._streamed = _decode_string_prefix(self._buffer, self._streamed)
        return [ChatChunk(text=text)] if text else []

    def finish(self) -> list[ChatChunk]:
        if self._plan.mode in ("text", "json_object", "json_schema"):
            return []
        try:
            value = json.loads(self._buffer)
        except ValueError:
            # Cut short (max tokens): streamed text stands, and the calls completed before the cut are made.
            calls = _complete_calls(self._buffer) if self._plan.mode == "envelope" else []
            return [self._calls(calls)] if calls else []
        if self._plan.mode == "forced":
            return [self._calls([{"name": self._plan.forced_tool, "arguments": value}])]
        if value.get("type") == "tool_calls":
            return [self._calls(value["calls"])]
        if self._streaming:
            return []
        return [ChatChunk(text=value.get("content", ""))]

    def _calls(self, calls: list[dict[str, Any]]) -> ChatChunk:
        return ChatChunk(
            tool_calls=tuple(
                ToolCallDelta(
                    index=index,
                    id=self._new_call_id(),
                    name=call["name"],
                    arguments=json.dumps(call.get("arguments", {})),
                )
                for index, call in enumerate(calls)
            ),
            finish_reason="tool_calls",
        )


def _decode_string_prefix(buffer: str, start: int) -> tuple[str, int]:
    """Decode the JSON string content in ``buffer`` from ``start`` up to what is complete so far.

    Returns the decoded text and where decoding stopped: before an escape sequence not yet complete, or at
    the closing quote.
    """
    out: list[str] = []
    i = start
    while i < len(buffer):
        char = buffer[i]
        if char == '"':
            return "".join(out), len(buffer) + 1  # closed: nothing after it is text
        if char != "\\":
            out.append(char)
            i += 1
            continue
        if i + 1 >= len(buffer):
            break
        if buffer[i + 1] == "u":
            if i + 6 > len(buffer):
                break
            code = int(buffer[i + 2 : i + 6], 16)
            if 0xD800 <= code < 0xDC00:  # a surrogate pair needs its second half
                if i + 12 > len(buffer):
                    break
                low = int(buffer[i + 8 : i + 12], 16)
                out.append(chr(0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)))
                i += 12
                continue
            out.append(chr(code))
            i += 6
            continue
        out.append(json.loads(f'"\\{buffer[i + 1]}"'))
        i += 2
    return "".join(out), i


def _complete_calls(buffer: str) -> list[dict[str, Any]]:
    """The whole call objects at the start of a tool_calls envelope that was cut off."""
    if not buffer.startswith(CALLS_PREFIX):
        return []
    decoder = json.JSONDecoder()
    calls: list[dict[str, Any]] = []
    position = len(CALLS_PREFIX)
    while True:
        try:
            call, position = decoder.raw_decode(buffer, position)
        except ValueError:
            return calls
        if isinstance(call, dict) and "name" in call:
            calls.append(call)
        if buffer[position : position + 1] != ",":
            return calls
        position += 1
