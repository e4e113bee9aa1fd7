"""The Conversations API over the wire, and threads and conversations as one object."""

from __future__ import annotations

import io
import json
import re
from typing import Any

import openai
import pytest
from openai import OpenAI
from openai.types.beta.threads import Message
from openai.types.conversations import (
    Conversation,
    ConversationDeletedResource,
    ConversationItem,
    ConversationItemList,
)
from pydantic import TypeAdapter

from fake_upstream import Dynamic, FakeUpstream, Text, ToolCalls
from samples import WEATHER_TOOL
from wire import api_error, check, raw

ITEM: TypeAdapter[Any] = TypeAdapter(ConversationItem)


def _item(body: Any) -> dict[str, Any]:
    """``body`` parsed strictly as the SDK's ConversationItem."""
    ITEM.validate_python(body)
    assert isinstance(body, dict)
    return body


def _items(client: OpenAI, conversation_id: str, **params: Any) -> dict[str, Any]:
    body: dict[str, Any] = raw(client.conversations.items.with_raw_response.list(conversation_id, **params))
    if body["data"]:
        check(ConversationItemList, body)
    for item in body["data"]:
        _item(item)
    assert body["object"] == "list"
    return body


def _conversation(body: Any) -> dict[str, Any]:
    check(Conversation, body)
    assert isinstance(body, dict)
    return body


def _text(item: dict[str, Any]) -> str:
    return "".join(part.get("text", "") for part in item["content"])


def test_conversation_create_retrieve_update_delete(client: OpenAI) -> None:
    body = _conversation(
        raw(
            client.conversations.with_raw_response.create(
                metadata={"topic": "demo"}, items=[{"role": "user", "content": "Hello!"}]
            )
        )
    )
    assert body["object"] == "conversation"
    assert body["id"].startswith("conv_")
    assert body["metadata"] == {"topic": "demo"}
    assert body["tool_resources"] == {}
    assert isinstance(body["created_at"], int)

    assert _conversation(raw(client.conversations.with_raw_response.retrieve(body["id"]))) == body

    updated = _conversation(
        raw(client.conversations.with_raw_response.update(body["id"], metadata={"topic": "other"}))
    )
    assert updated == {**body, "metadata": {"topic": "other"}}

    page = _items(client, body["id"])
    assert [(i["type"], i["role"], i["status"], i["content"]) for i in page["data"]] == [
        ("message", "user", "completed", [{"type": "input_text", "text": "Hello!"}])
    ]
    assert page["data"][0]["id"].startswith("msg_")
    assert page["first_id"] == page["last_id"] == page["data"][0]["id"] and page["has_more"] is False

    deleted = raw(client.conversations.with_raw_response.delete(body["id"]))
    check(ConversationDeletedResource, deleted)
    assert deleted == {"id": body["id"], "object": "conversation.deleted", "deleted": True}
    with pytest.raises(openai.NotFoundError) as gone:
        client.conversations.retrieve(body["id"])
    api_error(gone.value, 404, "conversation_id")


def test_conversation_items_create_list_retrieve_delete(client: OpenAI) -> None:
    conversation = client.conversations.create()
    assert _items(client, conversation.id) == {
        "object": "list",
        "data": [],
        "first_id": None,
        "last_id": None,
        "has_more": False,
    }
    created = raw(
        client.conversations.items.with_raw_response.create(
            conversation.id,
            items=[
                {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "one"}]},
                {"role": "assistant", "content": "two"},
                {"role": "user", "content": "three"},
            ],
        )
    )
    check(ConversationItemList, created)
    assert [(i["role"], i["content"]) for i in created["data"]] == [
        ("user", [{"type": "input_text", "text": "one"}]),
        ("assistant", [{"type": "output_text", "text": "two", "annotations": []}]),
        ("user", [{"type": "input_text", "text": "three"}]),
    ]
    ids = [item["id"] for item in created["data"]]

    # Newest first by default, as OpenAI; cursor pagination both ways.
    assert [i["id"] for i in _items(client, conversation.id)["data"]] == ids[::-1]
    first = _items(client, conversation.id, order="asc", limit=2)
    assert [i["id"] for i in first["data"]] == ids[:2]
    assert (first["first_id"], first["last_id"], first["has_more"]) == (ids[0], ids[1], True)
    rest = _items(client, conversation.id, order="asc", limit=2, after=first["last_id"])
    assert [i["id"] for i in rest["data"]] == ids[2:] and rest["has_more"] is False
    # The SDK's auto-pagination walks it all.
    assert [item.id for item in client.conversations.items.list(conversation.id, limit=1)] == ids[::-1]

    one = _item(
        raw(client.conversations.items.with_raw_response.retrieve(ids[1], conversation_id=conversation.id))
    )
    assert one == created["data"][1]

    after_delete = _conversation(
        raw(client.conversations.items.with_raw_response.delete(ids[1], conversation_id=conversation.id))
    )
    assert after_delete["id"] == conversation.id
    assert [i["id"] for i in _items(client, conversation.id, order="asc")["data"]] == [ids[0], ids[2]]
    with pytest.raises(openai.NotFoundError) as gone:
        client.conversations.items.retrieve(ids[1], conversation_id=conversation.id)
    api_error(gone.value, 404, "item_id")


def test_thread_listed_as_conversation_with_function_call_and_output(
    client: OpenAI, fake: FakeUpstream
) -> None:
    fake.push(
        ToolCalls([{"id": "call_weather1", "name": "get_weather", "arguments": {"city": "Paris"}}]),
        Text("It is 22C in Paris."),
    )
    assistant = client.beta.assistants.create(
        model="fake-model", instructions="Use tools.", tools=[WEATHER_TOOL]
    )
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "Weather in Paris?"}])
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert run.status == "requires_action"

    # While the run waits for the output, the call is listed and in progress, with no output item.
    waiting = _items(client, thread.id, order="asc")
    assert [(i["type"], i["status"]) for i in waiting["data"]] == [
        ("message", "completed"),
        ("function_call", "in_progress"),
    ]

    done = client.beta.threads.runs.submit_tool_outputs_and_poll(
        run_id=run.id, thread_id=thread.id, tool_outputs=[{"tool_call_id": "call_weather1", "output": "22C"}]
    )
    assert done.status == "completed"

    messages = list(client.beta.threads.messages.list(thread.id, order="asc"))
    steps = list(client.beta.threads.runs.steps.list(run_id=run.id, thread_id=thread.id, order="asc"))
    tool_step = next(step for step in steps if step.type == "tool_calls")
    suffix = tool_step.id.removeprefix("step_")

    page = _items(client, thread.id, order="asc")
    assert page["data"] == [
        {
            "type": "message",
            "id": messages[0].id,
            "role": "user",
            "status": "completed",
            "content": [{"type": "input_text", "text": "Weather in Paris?"}],
        },
        {
            "type": "function_call",
            "id": f"fc_{suffix}_0",
            "call_id": "call_weather1",
            "name": "get_weather",
            "arguments": json.dumps({"city": "Paris"}),
            "status": "completed",
        },
        {
            "type": "function_call_output",
            "id": f"fco_{suffix}_0",
            "call_id": "call_weather1",
            "output": "22C",
            "status": "completed",
        },
        {
            "type": "message",
            "id": messages[1].id,
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": "It is 22C in Paris.", "annotations": []}],
        },
    ]
    assert [m.role for m in messages] == ["user", "assistant"]
    # Newest first by default.
    assert [i["id"] for i in _items(client, thread.id)["data"]] == [i["id"] for i in page["data"]][::-1]

    # Each tool-call item is found again by its id; it cannot be deleted, a message can.
    for item in page["data"]:
        got = raw(
            client.conversations.items.with_raw_response.retrieve(item["id"], conversation_id=thread.id)
        )
        assert _item(got) == item
    with pytest.raises(openai.BadRequestError) as refused:
        client.conversations.items.delete(f"fc_{suffix}_0", conversation_id=thread.id)
    api_error(refused.value, 400, "item_id")
    with pytest.raises(openai.NotFoundError) as missing:
        client.conversations.items.retrieve(f"fc_{suffix}_5", conversation_id=thread.id)
    api_error(missing.value, 404, "item_id")

    # The thread is a conversation: retrieved as one, with the thread's metadata.
    conversation = _conversation(raw(client.conversations.with_raw_response.retrieve(thread.id)))
    assert conversation["id"] == thread.id and conversation["created_at"] == thread.created_at


def test_conversation_used_as_a_thread(client: OpenAI, fake: FakeUpstream) -> None:
    fake.push(Text("Hello from the run."))
    conversation = client.conversations.create(items=[{"role": "user", "content": "Say hello."}])
    listed = list(client.beta.threads.messages.list(conversation.id, order="asc"))
    assert [(m.role, m.content[0].text.value) for m in listed if m.content[0].type == "text"] == [
        ("user", "Say hello.")
    ]
    for message in listed:
        check(Message, message)
    assert listed[0].thread_id == conversation.id

    thread = client.beta.threads.retrieve(conversation.id)
    assert thread.id == conversation.id

    assistant = client.beta.assistants.create(model="fake-model", instructions="Be brief.")
    run = client.beta.threads.runs.create_and_poll(thread_id=conversation.id, assistant_id=assistant.id)
    assert run.status == "completed" and run.thread_id == conversation.id

    items = _items(client, conversation.id, order="asc")["data"]
    assert [(i["role"], _text(i)) for i in items] == [
        ("user", "Say hello."),
        ("assistant", "Hello from the run."),
    ]
    assert items[0]["id"] == listed[0].id

    # Deleted through /v1/threads, it is gone as a conversation too.
    client.beta.threads.delete(conversation.id)
    with pytest.raises(openai.NotFoundError):
        client.conversations.retrieve(conversation.id)


def test_conversation_items_refused_while_a_run_is_active(client: OpenAI, fake: FakeUpstream) -> None:
    fake.push(ToolCalls([{"id": "call_w2", "name": "get_weather", "arguments": {"city": "Oslo"}}]))
    assistant = client.beta.assistants.create(model="fake-model", tools=[WEATHER_TOOL])
    conversation = client.conversations.create(items=[{"role": "user", "content": "Weather in Oslo?"}])
    run = client.beta.threads.runs.create_and_poll(thread_id=conversation.id, assistant_id=assistant.id)
    assert run.status == "requires_action"
    with pytest.raises(openai.BadRequestError) as refused:
        client.conversations.items.create(conversation.id, items=[{"role": "user", "content": "more"}])
    api_error(refused.value, 400, "conversation_id")
    client.beta.threads.runs.cancel(run_id=run.id, thread_id=conversation.id)


def test_conversation_errors_name_the_param(client: OpenAI, other_client: OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as unknown:
        client.conversations.retrieve("conv_doesnotexist")
    api_error(unknown.value, 404, "conversation_id")
    with pytest.raises(openai.NotFoundError) as unknown_items:
        client.conversations.items.list("conv_doesnotexist")
    api_error(unknown_items.value, 404, "conversation_id")

    too_many = [{"role": "user", "content": str(n)} for n in range(21)]
    with pytest.raises(openai.BadRequestError) as over:
        client.conversations.create(items=too_many)
    api_error(over.value, 400, "items")
    conversation = client.conversations.create()
    with pytest.raises(openai.BadRequestError) as over_items:
        client.conversations.items.create(conversation.id, items=too_many)
    api_error(over_items.value, 400, "items")

    cases: list[tuple[Any, str]] = [
        ({"role": "system", "content": "be brief"}, "items[1].role"),
        (
            {"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]},
            "items[1].content[0].type",
        ),
        ({"type": "function_call_output", "call_id": "call_1", "output": "x"}, "items[1].type"),
        (
            {"role": "user", "content": [{"type": "input_file", "file_id": "file_nope"}]},
            "items[1].content[0].file_id",
        ),
    ]
    for bad, param in cases:
        items: Any = [{"role": "user", "content": "fine"}, bad]
        with pytest.raises(openai.BadRequestError) as refused:
            client.conversations.items.create(conversation.id, items=items)
        api_error(refused.value, 400, param)
        with pytest.raises(openai.BadRequestError) as refused_create:
            client.conversations.create(items=items)
        api_error(refused_create.value, 400, param)
    # Nothing of a refused request was kept.
    assert _items(client, conversation.id)["data"] == []

    with pytest.raises(openai.BadRequestError) as cursor:
        client.conversations.items.list(conversation.id, after="msg_nope")
    api_error(cursor.value, 400, "after")
    with pytest.raises(openai.BadRequestError) as include:
        client.conversations.items.list(conversation.id, include=["nonsense"])  # type: ignore[list-item]
    api_error(include.value, 400, "include[0]")

    # Another tenant's conversation is not found, whichever API names it.
    with pytest.raises(openai.NotFoundError):
        other_client.conversations.retrieve(conversation.id)
    with pytest.raises(openai.NotFoundError):
        other_client.conversations.items.list(conversation.id)
    with pytest.raises(openai.NotFoundError):
        other_client.beta.threads.retrieve(conversation.id)
    with pytest.raises(openai.NotFoundError):
        other_client.conversations.delete(conversation.id)
    assert client.conversations.retrieve(conversation.id).id == conversation.id


def test_file_search_run_as_items_with_citation(client: OpenAI, fake: FakeUpstream) -> None:
    fact = "The launch code for Project Kestrel is 4471."
    store = client.vector_stores.create(name="briefings")
    file = client.vector_stores.files.upload_and_poll(
        vector_store_id=store.id, file=("kestrel.md", io.BytesIO(fact.encode())), poll_interval_ms=50
    )
    assert file.status == "completed"

    def cite(body: dict[str, Any]) -> Text:
        shown = "\n".join(str(m.get("content") or "") for m in body["messages"] if m.get("role") == "tool")
        number = re.search(r"\[(\d+)\] kestrel\.md", shown)
        assert number is not None, shown
        return Text(f"It is 4471 [{number.group(1)}].")

    fake.push(ToolCalls([("file_search", {"queries": ["Kestrel launch code"]})]), Dynamic(cite))
    assistant = client.beta.assistants.create(
        model="fake-model",
        tools=[{"type": "file_search"}],
        tool_resources={"file_search": {"vector_store_ids": [store.id]}},
    )
    conversation = client.conversations.create(items=[{"role": "user", "content": "The Kestrel code?"}])
    run = client.beta.threads.runs.create_and_poll(thread_id=conversation.id, assistant_id=assistant.id)
    assert run.status == "completed", run.last_error

    plain = _items(client, conversation.id, order="asc")["data"]
    assert [i["type"] for i in plain] == ["message", "file_search_call", "message"]
    search = plain[1]
    assert search["id"].startswith("fs_") and search["status"] == "completed"
    assert search["queries"] == ["Kestrel launch code"] and search["results"] is None

    included = _items(client, conversation.id, order="asc", include=["file_search_call.results"])["data"]
    (result,) = included[1]["results"]
    assert result["file_id"] == file.id and result["filename"] == "kestrel.md" and result["text"] == fact
    assert 0 <= result["score"] <= 1
    one = raw(
        client.conversations.items.with_raw_response.retrieve(
            search["id"], conversation_id=conversation.id, include=["file_search_call.results"]
        )
    )
    assert _item(one) == included[1]

    answer = plain[2]
    (part,) = answer["content"]
    marker = re.fullmatch(r"It is 4471(【0:0†kestrel\.md】)\.", part["text"])
    assert marker is not None, part["text"]
    assert part["annotations"] == [
        {"type": "file_citation", "file_id": file.id, "filename": "kestrel.md", "index": marker.start(1)}
    ]


def test_update_needs_metadata(client: OpenAI) -> None:
    conversation = client.conversations.create(metadata={"a": "b"})
    with pytest.raises(openai.BadRequestError) as missing:
        client.post(f"/conversations/{conversation.id}", body={}, cast_to=object)
    api_error(missing.value, 400, "metadata")
    cleared = client.conversations.update(conversation.id, metadata=None)
    assert cleared.metadata == {}


def test_code_interpreter_run_as_items(client: OpenAI, fake: FakeUpstream) -> None:
    fake.push(ToolCalls([("code_interpreter", {"code": "print(6*7)"})]), Text("It is 42."))
    assistant = client.beta.assistants.create(model="fake-model", tools=[{"type": "code_interpreter"}])
    conversation = client.conversations.create(items=[{"role": "user", "content": "Compute it."}])
    run = client.beta.threads.runs.create_and_poll(
        thread_id=conversation.id, assistant_id=assistant.id, poll_interval_ms=50
    )
    assert run.status == "completed", run.last_error

    plain = _items(client, conversation.id, order="asc")["data"]
    assert [i["type"] for i in plain] == ["message", "code_interpreter_call", "message"]
    call = plain[1]
    assert call["id"].startswith("ci_") and call["status"] == "completed"
    assert (call["code"], call["outputs"], call["container_id"]) == ("print(6*7)", None, conversation.id)

    included = _items(client, conversation.id, order="asc", include=["code_interpreter_call.outputs"])["data"]
    assert included[1] == {**call, "outputs": [{"type": "logs", "logs": "42\n"}]}
    assert _text(plain[2]) == "It is 42."

    # Deleting the conversation ends its code session, as deleting the thread does.
    client.conversations.delete(conversation.id)
    with pytest.raises(openai.NotFoundError):
        client.conversations.items.list(conversation.id)
