"""Function calls in responses, the logic without I/O: a response's segment of its run, the outputs a
follow-up gives a waiting run, a stateless history's order, and the function tools of a request."""

from __future__ import annotations

from typing import Any

import pytest
from openai.types.responses import FunctionTool, ResponseFunctionToolCall

from assistd.engine.response_functions import check_outputs, history_of, segment_of, segment_output
from assistd.engine.response_tools import run_tools
from assistd.errors import InvalidRequestError
from assistd.protocol.common import ParamValueError
from assistd.protocol.items import input_to_messages, step_to_items
from assistd.protocol.response_functions import function_tools, run_tool_choice
from assistd.protocol.responses import ResponseCreateParams
from assistd.protocol.run_steps import RunStep


def _step(number: int, details: dict[str, Any], usage: tuple[int, int] | None = None) -> RunStep:
    return RunStep.model_validate(
        {
            "id": f"step_S{number}",
            "created_at": number,
            "assistant_id": "",
            "thread_id": "thread_x",
            "run_id": "run_r",
            "type": details["type"],
            "status": "completed",
            "step_details": details,
            "last_error": None,
            "expired_at": None,
            "cancelled_at": None,
            "failed_at": None,
            "completed_at": number,
            "metadata": {},
            "usage": (
                {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": sum(usage)}
                if usage
                else None
            ),
        }
    )


def _written(number: int, usage: tuple[int, int] | None = None) -> RunStep:
    details = {"type": "message_creation", "message_creation": {"message_id": f"msg_{number}"}}
    return _step(number, details, usage)


def _called(number: int, call_id: str, output: str | None = None) -> RunStep:
    function = {"name": "f", "arguments": "{}", "output": output}
    details = {
        "type": "tool_calls",
        "tool_calls": [{"id": call_id, "type": "function", "function": function}],
    }
    return _step(number, details, (5, 2))


def test_segments_end_at_function_calls_and_start_after_them() -> None:
    steps = [_written(1, (3, 1)), _called(2, "call_a", "out"), _written(3, (9, 4))]
    first = segment_of(steps, 0)
    assert first.waited and [s.id for s in first.steps] == ["step_S1", "step_S2"]
    # The call's output (given by the next response) is not this response's output.
    output = segment_output([item for step in first.steps for item in step_to_items(step)])
    assert output == [
        {
            "type": "function_call",
            "id": "fc_S2_0",
            "call_id": "call_a",
            "name": "f",
            "arguments": "{}",
            "status": "completed",
        }
    ]
    ResponseFunctionToolCall.model_validate(output[0])
    assert first.usage() == {"input_tokens": 8, "output_tokens": 3, "total_tokens": 11}
    second = segment_of(steps, 2)
    assert not second.waited and [s.id for s in second.steps] == ["step_S3"]
    assert second.usage() == {"input_tokens": 9, "output_tokens": 4, "total_tokens": 13}
    assert segment_of(steps, 3).steps == [] and segment_of(steps, 3).usage() is None


def test_follow_up_outputs_in_the_order_the_calls_were_made() -> None:
    parsed = input_to_messages(
        [
            {"type": "function_call_output", "call_id": "b", "output": "2"},
            {"type": "function_call", "call_id": "a", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "a", "output": "1"},
        ],
        allow_function_items=True,
    )
    assert [(o.call_id, o.output) for o in check_outputs(parsed, ["a", "b"])] == [("a", "1"), ("b", "2")]
    with pytest.raises(InvalidRequestError) as missing:
        check_outputs(parsed, ["a", "b", "c"])
    assert missing.value.param == "input"
    with pytest.raises(InvalidRequestError) as unknown:
        check_outputs(parsed, ["a"])
    assert unknown.value.param == "input[0].call_id"


def test_stateless_history_keeps_input_order() -> None:
    parsed = input_to_messages(
        [
            {"role": "user", "content": "q1"},
            {"type": "function_call", "call_id": "a", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "a", "output": "1"},
            {"role": "assistant", "content": "a1"},
            {"role": "user", "content": "q2"},
            {"type": "function_call", "call_id": "b", "name": "g", "arguments": "{}"},
            {"type": "function_call", "call_id": "c", "name": "h", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c", "output": "3"},
            {"type": "function_call_output", "call_id": "b", "output": "2"},
        ],
        allow_function_items=True,
    )
    history = history_of(parsed)
    assert history is not None
    assert [at for _, at in history.head] == ["input[0]"]
    shown = [
        [call.call_id for call in entry.calls] if not isinstance(entry, tuple) else entry[1]
        for entry in history.tail
    ]
    assert shown == [["a"], "input[3]", "input[4]", ["b", "c"]]
    assert history.outputs == {"a": "1", "b": "2", "c": "3"}
    assert history_of(input_to_messages("plain", allow_function_items=True)) is None


def test_function_tools_checked_and_given_to_the_run() -> None:
    weather = {"type": "function", "name": "get_weather", "parameters": {"type": "object"}, "strict": True}
    params = ResponseCreateParams.model_validate(
        {
            "model": "m",
            "input": "x",
            "tools": [weather],
            "tool_choice": {"type": "function", "name": "get_weather"},
        }
    )
    (tool,) = params.functions()
    FunctionTool.model_validate(tool.echoed())
    assert params.echoed()["tools"] == [{**weather}]
    assert run_tools(params) == [
        {
            "type": "function",
            "function": {"name": "get_weather", "parameters": {"type": "object"}, "strict": True},
        }
    ]
    assert run_tool_choice(params.tool_choice) == {"type": "function", "function": {"name": "get_weather"}}
    assert run_tool_choice(None) == "auto" and run_tool_choice("required") == "required"
    with pytest.raises(ParamValueError) as bad:
        function_tools([weather, {"type": "function", "name": "a b"}], None)
    assert bad.value.param == "tools[1].name"
