"""Assistants over the wire: create with every documented parameter, retrieve, modify, delete, list."""

from __future__ import annotations

import io
from typing import Any

import openai
import pytest
from openai import OpenAI
from openai.types.beta import Assistant, AssistantDeleted

from wire import api_error, check, raw

WEATHER_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
    "required": ["city", "unit"],
    "additionalProperties": False,
}

JSON_SCHEMA_FORMAT: dict[str, Any] = {
    "type": "json_schema",
    "json_schema": {
        "name": "weather_report",
        "description": "A weather report.",
        "schema": {
            "type": "object",
            "properties": {"summary": {"type": "string"}},
            "required": ["summary"],
            "additionalProperties": False,
        },
        "strict": True,
    },
}


def _upload(client: OpenAI, name: str) -> str:
    return client.files.create(file=(name, io.BytesIO(b"notes")), purpose="assistants").id


def test_create_with_every_documented_parameter(client: OpenAI) -> None:
    # Files and a store that exist: ids that name nothing are refused (tests/e2e/test_referenced_ids.py).
    file_ids = [_upload(client, "a.txt"), _upload(client, "b.txt")]
    store_id = client.vector_stores.create().id
    response = client.beta.assistants.with_raw_response.create(
        model="fake-model",
        name="Weather bot",
        description="Answers questions about the weather.",
        instructions="You are a meteorologist.",
        tools=[
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "The weather in a city.",
                    "parameters": WEATHER_PARAMETERS,
                    "strict": True,
                },
            },
            {"type": "file_search", "file_search": {"max_num_results": 7}},
            {"type": "code_interpreter"},
        ],
        tool_resources={
            "code_interpreter": {"file_ids": file_ids},
            "file_search": {"vector_store_ids": [store_id]},
        },
        metadata={"team": "weather", "tier": "gold"},
        temperature=0.4,
        top_p=0.9,
        response_format=JSON_SCHEMA_FORMAT,  # type: ignore[arg-type]
        reasoning_effort="low",
    )
    body = raw(response)
    assistant = check(Assistant, body, "AssistantObject")

    assert body["object"] == "assistant"
    assert body["id"].startswith("asst_")
    assert isinstance(body["created_at"], int) and body["created_at"] > 1_600_000_000
    assert body["model"] == "fake-model"
    assert body["name"] == "Weather bot"
    assert body["description"] == "Answers questions about the weather."
    assert body["instructions"] == "You are a meteorologist."
    function_tool, search_tool, code_tool = body["tools"]
    assert function_tool == {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city.",
            "parameters": WEATHER_PARAMETERS,
            "strict": True,
        },
    }
    assert search_tool["type"] == "file_search"
    assert search_tool["file_search"]["max_num_results"] == 7
    assert code_tool == {"type": "code_interpreter"}
    assert body["tool_resources"]["code_interpreter"]["file_ids"] == file_ids
    assert body["tool_resources"]["file_search"]["vector_store_ids"] == [store_id]
    assert body["metadata"] == {"team": "weather", "tier": "gold"}
    assert body["temperature"] == pytest.approx(0.4)
    assert body["top_p"] == pytest.approx(0.9)
    assert body["response_format"] == JSON_SCHEMA_FORMAT
    assert body["reasoning_effort"] == "low"

    # What was stored is what comes back.
    again = raw(client.beta.assistants.with_raw_response.retrieve(assistant.id))
    check(Assistant, again, "AssistantObject")
    assert again == body


def test_create_minimal_has_documented_defaults(client: OpenAI) -> None:
    body = raw(client.beta.assistants.with_raw_response.create(model="fake-model"))
    check(Assistant, body, "AssistantObject")
    assert body["name"] is None
    assert body["description"] is None
    assert body["instructions"] is None
    assert body["tools"] == []
    assert body["metadata"] == {}
    assert body["response_format"] == "auto"


@pytest.mark.parametrize(
    "response_format",
    ["auto", {"type": "text"}, {"type": "json_object"}, JSON_SCHEMA_FORMAT],
    ids=["auto", "text", "json_object", "json_schema"],
)
def test_response_formats_round_trip(client: OpenAI, response_format: Any) -> None:
    body = raw(
        client.beta.assistants.with_raw_response.create(model="fake-model", response_format=response_format)
    )
    check(Assistant, body, "AssistantObject")
    assert body["response_format"] == response_format


def test_every_documented_reasoning_effort_is_accepted(client: OpenAI) -> None:
    for effort in ("none", "minimal", "low", "medium", "high", "xhigh", "max"):
        body = raw(
            client.beta.assistants.with_raw_response.create(
                model="fake-model",
                reasoning_effort=effort,  # type: ignore[arg-type]
            )
        )
        check(Assistant, body, "AssistantObject")
        assert body["reasoning_effort"] == effort


def test_modify_changes_only_given_fields(client: OpenAI) -> None:
    created = client.beta.assistants.create(
        model="fake-model",
        name="before",
        description="desc",
        instructions="be brief",
        tools=[{"type": "code_interpreter"}],
        metadata={"a": "1"},
        temperature=0.5,
        top_p=0.5,
    )
    before = raw(client.beta.assistants.with_raw_response.retrieve(created.id))

    body = raw(client.beta.assistants.with_raw_response.update(created.id, name="after"))
    check(Assistant, body, "AssistantObject")
    assert body["name"] == "after"
    assert {k: v for k, v in body.items() if k != "name"} == {k: v for k, v in before.items() if k != "name"}

    body = raw(
        client.beta.assistants.with_raw_response.update(
            created.id,
            model="fake-model-large",
            instructions="be verbose",
            tools=[{"type": "function", "function": {"name": "lookup"}}],
            metadata={"b": "2"},
            temperature=1.5,
            response_format={"type": "json_object"},
        )
    )
    check(Assistant, body, "AssistantObject")
    assert body["model"] == "fake-model-large"
    assert body["instructions"] == "be verbose"
    assert [t["type"] for t in body["tools"]] == ["function"]
    assert body["tools"][0]["function"]["name"] == "lookup"
    assert body["metadata"] == {"b": "2"}
    assert body["temperature"] == pytest.approx(1.5)
    assert body["response_format"] == {"type": "json_object"}
    # Untouched by that call:
    assert body["name"] == "after"
    assert body["description"] == "desc"
    assert body["top_p"] == pytest.approx(0.5)
    assert body["id"] == created.id and body["created_at"] == created.created_at

    stored = raw(client.beta.assistants.with_raw_response.retrieve(created.id))
    assert stored == body


def test_modify_with_null_clears_the_field(client: OpenAI) -> None:
    created = client.beta.assistants.create(
        model="fake-model",
        name="named",
        description="described",
        instructions="instructed",
        metadata={"a": "1"},
        temperature=0.7,
        top_p=0.3,
        reasoning_effort="high",
    )
    body = raw(
        client.beta.assistants.with_raw_response.update(
            created.id,
            name=None,
            description=None,
            instructions=None,
            temperature=None,
            top_p=None,
            reasoning_effort=None,
            metadata=None,
        )
    )
    check(Assistant, body, "AssistantObject")
    assert body["name"] is None
    assert body["description"] is None
    assert body["instructions"] is None
    assert body["temperature"] is None
    assert body["top_p"] is None
    assert body.get("reasoning_effort") is None
    assert body["metadata"] == {}
    assert body["model"] == "fake-model"
    assert raw(client.beta.assistants.with_raw_response.retrieve(created.id)) == body


def test_modify_refuses_unknown_fields_and_bad_values(client: OpenAI) -> None:
    created = client.beta.assistants.create(model="fake-model", name="x")
    with pytest.raises(openai.BadRequestError) as info:
        client.beta.assistants.update(created.id, extra_body={"colour": "blue"})
    api_error(info.value, 400, "colour")
    with pytest.raises(openai.BadRequestError) as info:
        client.beta.assistants.update(created.id, top_p=1.5)
    api_error(info.value, 400, "top_p")
    assert client.beta.assistants.retrieve(created.id).name == "x"


def test_delete_then_404(client: OpenAI) -> None:
    created = client.beta.assistants.create(model="fake-model")
    body = raw(client.beta.assistants.with_raw_response.delete(created.id))
    deleted = check(AssistantDeleted, body, "DeleteAssistantResponse")
    assert body == {"id": created.id, "object": "assistant.deleted", "deleted": True}
    assert deleted.deleted is True

    with pytest.raises(openai.NotFoundError) as info:
        client.beta.assistants.retrieve(created.id)
    api_error(info.value, 404, "assistant_id")
    with pytest.raises(openai.NotFoundError):
        client.beta.assistants.update(created.id, name="ghost")
    with pytest.raises(openai.NotFoundError):
        client.beta.assistants.delete(created.id)
    listed = [a.id for a in client.beta.assistants.list(limit=100)]
    assert created.id not in listed


def test_list_returns_created_assistants_newest_first(client: OpenAI) -> None:
    ids = [client.beta.assistants.create(model="fake-model", name=f"list-{i}").id for i in range(3)]
    body = raw(client.beta.assistants.with_raw_response.list(limit=3))
    check(openai.pagination.SyncCursorPage[Assistant], body, "ListAssistantsResponse")
    for item in body["data"]:
        check(Assistant, item, "AssistantObject")
    assert body["object"] == "list"
    assert [item["id"] for item in body["data"]] == ids[::-1]
    assert body["first_id"] == ids[-1]
    assert body["last_id"] == ids[0]

    asc = raw(client.beta.assistants.with_raw_response.list(limit=3, order="asc", after=body["last_id"]))
    check(openai.pagination.SyncCursorPage[Assistant], asc, "ListAssistantsResponse")
    assert [item["id"] for item in asc["data"]][:2] == ids[1:]
