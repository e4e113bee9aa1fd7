"""Assistants objects as Conversations items (validated with the openai SDK's types), input items, and a
thread's items in conversation order."""

from __future__ import annotations

from typing import Any

import pytest
from openai.types.conversations import ConversationItem
from pydantic import TypeAdapter

from assistd.protocol.common import ParamValueError
from assistd.protocol.items import (
    INCLUDE_CODE_OUTPUTS,
    INCLUDE_FILE_SEARCH_RESULTS,
    ToolItemRef,
    input_to_messages,
    message_to_item,
    parse_item_id,
    step_to_items,
    tool_item_id,
)
from assistd.protocol.messages import MAX_MESSAGE_TEXT, Message
from assistd.protocol.run_steps import RunStep
from assistd.store.conversations import ordered_items
from assistd.store.models import MessageRow, RunRow, RunStepRow

ITEM: TypeAdapter[Any] = TypeAdapter(ConversationItem)


def parsed(item: dict[str, Any]) -> Any:
    """``item`` as the SDK reads it; its dump (unset fields left out) must be ``item`` again."""
    model = ITEM.validate_python(item)
    assert model.model_dump(exclude_unset=True, by_alias=True) == item
    return model


def message(**fields: Any) -> Message:
    base: dict[str, Any] = {
        "id": "msg_abc",
        "created_at": 1,
        "thread_id": "thread_x",
        "status": "completed",
        "incomplete_details": None,
        "completed_at": 1,
        "incomplete_at": None,
        "role": "user",
        "content": [],
        "assistant_id": None,
        "run_id": None,
        "attachments": [],
        "metadata": {},
    }
    return Message.model_validate({**base, **fields})


def step(details: dict[str, Any], status: str = "completed") -> RunStep:
    return RunStep.model_validate(
        {
            "id": "step_S1",
            "created_at": 1,
            "assistant_id": "asst_a",
            "thread_id": "thread_x",
            "run_id": "run_r",
            "type": details["type"],
            "status": status,
            "step_details": details,
            "last_error": None,
            "expired_at": None,
            "cancelled_at": None,
            "failed_at": None,
            "completed_at": None,
            "metadata": {},
            "usage": None,
        }
    )


def test_items_user_message_parts() -> None:
    item = message_to_item(
        message(
            content=[
                {"type": "text", "text": {"value": "hi", "annotations": []}},
                {"type": "image_file", "image_file": {"file_id": "file_1", "detail": "low"}},
                {"type": "image_url", "image_url": {"url": "https://x/y.png"}},
            ],
            attachments=[{"file_id": "file_2", "tools": [{"type": "file_search"}]}],
        )
    )
    assert item == {
        "type": "message",
        "id": "msg_abc",
        "role": "user",
        "status": "completed",
        "content": [
            {"type": "input_text", "text": "hi"},
            {"type": "input_image", "file_id": "file_1", "image_url": None, "detail": "low"},
            {"type": "input_image", "file_id": None, "image_url": "https://x/y.png", "detail": "auto"},
            {"type": "input_file", "file_id": "file_2"},
        ],
    }
    parsed(item)


def test_items_assistant_message_annotations_and_status() -> None:
    marker = "【0:1†notes.md】"
    text = f"Blue{marker}."
    item = message_to_item(
        message(
            role="assistant",
            status="in_progress",
            completed_at=None,
            content=[
                {
                    "type": "text",
                    "text": {
                        "value": text,
                        "annotations": [
                            {
                                "type": "file_citation",
                                "text": marker,
                                "start_index": 4,
                                "end_index": 4 + len(marker),
                                "file_citation": {"file_id": "file_9", "quote": "blue"},
                            },
                            {
                                "type": "file_path",
                                "text": "sandbox:/a.csv",
                                "start_index": 0,
                                "end_index": 3,
                                "file_path": {"file_id": "file_8"},
                            },
                        ],
                    },
                },
                {"type": "refusal", "refusal": "no"},
            ],
        )
    )
    assert item["status"] == "in_progress"
    assert item["content"] == [
        {
            "type": "output_text",
            "text": text,
            "annotations": [
                {"type": "file_citation", "file_id": "file_9", "filename": "notes.md", "index": 4},
                {"type": "file_path", "file_id": "file_8", "index": 0},
            ],
        },
        {"type": "refusal", "refusal": "no"},
    ]
    parsed(item)
    assert message_to_item(message(status="incomplete"))["status"] == "incomplete"


def test_items_function_calls_with_and_without_output() -> None:
    details = {
        "type": "tool_calls",
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "f", "arguments": "{}", "output": "42"},
            },
            {"id": "call_2", "type": "function", "function": {"name": "g", "arguments": '{"a":1}'}},
        ],
    }
    items = step_to_items(step(details, status="in_progress"))
    assert items == [
        {
            "type": "function_call",
            "id": "fc_S1_0",
            "call_id": "call_1",
            "name": "f",
            "arguments": "{}",
            "status": "completed",
        },
        {
            "type": "function_call_output",
            "id": "fco_S1_0",
            "call_id": "call_1",
            "output": "42",
            "status": "completed",
        },
        {
            "type": "function_call",
            "id": "fc_S1_1",
            "call_id": "call_2",
            "name": "g",
            "arguments": '{"a":1}',
            "status": "in_progress",
        },
    ]
    for item in items:
        parsed(item)
    assert step_to_items(step(details, status="cancelled"))[2]["status"] == "incomplete"


def test_items_builtin_calls_follow_include() -> None:
    details = {
        "type": "tool_calls",
        "tool_calls": [
            {
                "id": "call_fs",
                "type": "file_search",
                "file_search": {
                    "ranking_options": {"ranker": "auto", "score_threshold": 0.0},
                    "results": [
                        {
                            "file_id": "file_1",
                            "file_name": "a.md",
                            "score": 0.5,
                            "content": [{"type": "text", "text": "passage"}],
                        }
                    ],
                },
            },
            {
                "id": "call_ci",
                "type": "code_interpreter",
                "code_interpreter": {
                    "input": "print(1)",
                    "outputs": [
                        {"type": "logs", "logs": "1\n"},
                        {"type": "image", "image": {"file_id": "file_p"}},
                    ],
                },
            },
        ],
    }
    tool_io = {"call_fs": {"name": "file_search", "arguments": '{"queries": ["blue?"]}'}}
    bare = step_to_items(step(details), tool_io=tool_io)
    assert bare == [
        {
            "type": "file_search_call",
            "id": "fs_S1_0",
            "queries": ["blue?"],
            "status": "completed",
            "results": None,
        },
        {
            "type": "code_interpreter_call",
            "id": "ci_S1_1",
            "code": "print(1)",
            "outputs": None,
            "status": "completed",
            "container_id": "thread_x",
        },
    ]
    full = step_to_items(
        step(details), tool_io=tool_io, include=[INCLUDE_FILE_SEARCH_RESULTS, INCLUDE_CODE_OUTPUTS]
    )
    assert full[0]["results"] == [
        {"file_id": "file_1", "filename": "a.md", "score": 0.5, "attributes": None, "text": "passage"}
    ]
    assert full[1]["outputs"] == [
        {"type": "logs", "logs": "1\n"},
        {"type": "image", "url": "/v1/files/file_p/content"},
    ]
    for item in [*bare, *full]:
        parsed(item)
    assert step_to_items(step(details))[0]["queries"] == []


def test_items_message_creation_step_gives_none() -> None:
    details = {"type": "message_creation", "message_creation": {"message_id": "msg_1"}}
    assert step_to_items(step(details)) == []


def test_items_tool_item_ids_round_trip() -> None:
    for kind in ("function_call", "function_call_output", "file_search_call", "code_interpreter_call"):
        item_id = tool_item_id(kind, "step_Ab3", 7)
        assert parse_item_id(item_id) == ToolItemRef(kind, "step_Ab3", 7)
    for other in ("msg_abc", "fc_abc", "fc__1", "xx_abc_1", "fc_abc_x", "fc_a_b_1", "fc_abc_²", "fc_abc_٣"):
        assert parse_item_id(other) is None


def test_items_input_string_and_easy_messages() -> None:
    result = input_to_messages("hello")
    assert [m.model_dump(exclude_none=True) for m in result.messages] == [
        {"role": "user", "content": [{"type": "text", "text": "hello"}]}
    ]
    result = input_to_messages(
        [
            {"role": "user", "content": "a"},
            {
                "type": "message",
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "b"},
                    {"type": "input_image", "file_id": "file_i", "detail": "high"},
                    {"type": "input_image", "image_url": "https://x/i.png"},
                    {"type": "input_file", "file_id": "file_f"},
                ],
            },
            {"role": "assistant", "content": [{"type": "output_text", "text": "c", "annotations": []}]},
        ],
        at="items",
    )
    assert result.message_at == ["items[0]", "items[1]", "items[2]"]
    dumped = [m.model_dump(exclude_none=True, mode="json") for m in result.messages]
    assert dumped == [
        {"role": "user", "content": [{"type": "text", "text": "a"}]},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "b"},
                {"type": "image_file", "image_file": {"file_id": "file_i", "detail": "high"}},
                {"type": "image_url", "image_url": {"url": "https://x/i.png", "detail": "auto"}},
            ],
            "attachments": [{"file_id": "file_f", "tools": [{"type": "file_search"}]}],
        },
        {"role": "assistant", "content": [{"type": "text", "text": "c"}]},
    ]


def test_items_input_instructions_only_where_allowed() -> None:
    items = [
        {"role": "developer", "content": "be brief"},
        {"role": "system", "content": [{"type": "input_text", "text": "x"}]},
    ]
    with pytest.raises(ParamValueError) as refused:
        input_to_messages(items, at="items")
    assert refused.value.param == "items[0].role"
    result = input_to_messages(items, allow_instructions=True)
    assert result.instructions == ["be brief", "x"]
    assert result.messages == []


def test_items_input_function_items_only_where_allowed() -> None:
    items = [
        {"type": "function_call", "call_id": "call_1", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_1", "output": "42"},
    ]
    with pytest.raises(ParamValueError) as refused:
        input_to_messages(items)
    assert refused.value.param == "input[0].type"
    result = input_to_messages(items, allow_function_items=True)
    assert [(c.call_id, c.name, c.arguments, c.at) for c in result.function_calls] == [
        ("call_1", "f", "{}", "input[0]")
    ]
    assert [(o.call_id, o.output, o.at) for o in result.function_outputs] == [("call_1", "42", "input[1]")]


@pytest.mark.parametrize(
    ("value", "param"),
    [
        (42, "input"),
        (["x"], "input[0]"),
        ([{"role": "tool", "content": "x"}], "input[0].role"),
        ([{"role": "user", "content": []}], "input[0].content"),
        ([{"role": "user", "content": [{"type": "input_audio"}]}], "input[0].content[0].type"),
        ([{"role": "user", "content": [{"type": "input_text"}]}], "input[0].content[0].text"),
        ([{"role": "user", "content": [{"type": "input_image"}]}], "input[0].content[0]"),
        (
            [{"role": "user", "content": [{"type": "input_file", "file_url": "https://x"}]}],
            "input[0].content[0]",
        ),
        ([{"type": "reasoning", "summary": []}], "input[0].type"),
        ([{"type": "function_call_output", "output": "x"}], "input[0].call_id"),
    ],
)
def test_items_input_refused_names_param(value: Any, param: str) -> None:
    with pytest.raises(ParamValueError) as refused:
        input_to_messages(value, allow_function_items=True)
    assert refused.value.param == param


def test_items_input_message_bounds_name_the_item_content() -> None:
    too_long = "x" * (MAX_MESSAGE_TEXT + 1)
    for content in (
        too_long,
        [{"type": "input_text", "text": too_long}],
        [{"type": "input_text", "text": "a"}] * 33,
    ):
        with pytest.raises(ParamValueError) as refused:
            input_to_messages(
                [{"role": "user", "content": "ok"}, {"role": "user", "content": content}], at="items"
            )
        assert refused.value.param == "items[1].content"
    with pytest.raises(ParamValueError) as detail:
        input_to_messages(
            [{"role": "user", "content": [{"type": "input_image", "file_id": "f", "detail": "x"}]}]
        )
    assert detail.value.param == "input[0].content"


def test_items_input_names_files_where_the_client_put_them() -> None:
    result = input_to_messages(
        [
            {
                "role": "user",
                "content": [
                    {"type": "input_file", "file_id": "file_a"},
                    {"type": "input_image", "file_id": "file_b"},
                    {"type": "input_image", "image_url": "https://x/c.png"},
                ],
            }
        ],
        at="items",
    )
    assert result.files == [
        ("file_a", "items[0].content[0].file_id"),
        ("file_b", "items[0].content[1].file_id"),
    ]


# A thread in conversation order (store.conversations.ordered_items) -------------------------------


def _message_row(message_id: str, at: int, role: str = "user", run_id: str | None = None) -> MessageRow:
    return MessageRow(
        id=message_id,
        thread_id="thread_x",
        created_at=at,
        role=role,
        content=[{"type": "text", "text": {"value": message_id, "annotations": []}}],
        status="completed",
        run_id=run_id,
        attachments=[],
        meta={},
    )


def _run_row(run_id: str, pk: int, at: int) -> RunRow:
    return RunRow(id=run_id, pk=pk, created_at=at, thread_id="thread_x")


def _step_row(step_id: str, run_id: str, details: dict[str, Any]) -> RunStepRow:
    return RunStepRow(
        id=step_id,
        run_id=run_id,
        thread_id="thread_x",
        assistant_id="asst_a",
        created_at=0,
        type=details["type"],
        status="completed",
        step_details=details,
        meta={},
    )


def _calls(call_id: str) -> dict[str, Any]:
    function = {"name": "f", "arguments": "{}", "output": "out"}
    return {"type": "tool_calls", "tool_calls": [{"id": call_id, "type": "function", "function": function}]}


def _created(message_id: str) -> dict[str, Any]:
    return {"type": "message_creation", "message_creation": {"message_id": message_id}}


def test_items_thread_in_conversation_order() -> None:
    thread_messages = [
        _message_row("msg_1", 1),
        _message_row("msg_2", 1, "assistant", "run_1"),
        _message_row("msg_3", 2),
        # run_2 wrote no message (it failed after a call); msg_4 came after it.
        _message_row("msg_4", 3),
        _message_row("msg_5", 3, "assistant", "run_3"),
        _message_row("msg_6", 3, "assistant", "run_3"),
    ]
    thread_runs = [_run_row("run_1", 1, 1), _run_row("run_2", 2, 2), _run_row("run_3", 3, 3)]
    thread_steps = [
        _step_row("step_A", "run_1", _calls("call_a")),
        _step_row("step_B", "run_1", _created("msg_2")),
        _step_row("step_C", "run_2", _calls("call_c")),
        # A run may write, call, then write again: its steps say in which order.
        _step_row("step_D", "run_3", _created("msg_5")),
        _step_row("step_E", "run_3", _calls("call_e")),
        _step_row("step_F", "run_3", _created("msg_6")),
    ]
    items = ordered_items(thread_messages, thread_runs, thread_steps)
    assert [item["id"] for item in items] == [
        "msg_1",
        "fc_A_0",
        "fco_A_0",
        "msg_2",
        "msg_3",
        "fc_C_0",
        "fco_C_0",
        "msg_4",
        "msg_5",
        "fc_E_0",
        "fco_E_0",
        "msg_6",
    ]
    for item in items:
        parsed(item)
    # A deleted message leaves its step with nothing to show; the rest keeps its order.
    without = ordered_items([m for m in thread_messages if m.id != "msg_2"], thread_runs, thread_steps)
    assert [item["id"] for item in without][:4] == ["msg_1", "fc_A_0", "fco_A_0", "msg_3"]
