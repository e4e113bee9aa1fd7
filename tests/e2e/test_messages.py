"""Messages over the wire: create, list (order, run_id filter), retrieve, modify metadata, delete."""

from __future__ import annotations

import io
from typing import Any

import openai
import pytest
from openai import OpenAI
from openai.pagination import SyncCursorPage
from openai.types.beta.threads import Message, MessageDeleted

from fake_upstream import FakeUpstream, Text
from wire import api_error, check, raw


def _list(client: OpenAI, thread_id: str, **params: Any) -> dict[str, Any]:
    body: dict[str, Any] = raw(client.beta.threads.messages.with_raw_response.list(thread_id, **params))
    check(SyncCursorPage[Message], body, "ListMessagesResponse")
    for item in body["data"]:
        check(Message, item, "MessageObject")
    return body


def test_create_string_message(client: OpenAI) -> None:
    thread = client.beta.threads.create()
    body = raw(
        client.beta.threads.messages.with_raw_response.create(
            thread.id, role="user", content="Hello there", metadata={"k": "v"}
        )
    )
    message = check(Message, body, "MessageObject")
    assert body["object"] == "thread.message"
    assert body["id"].startswith("msg_")
    assert body["thread_id"] == thread.id
    assert body["role"] == "user"
    assert body["status"] == "completed"
    assert body["content"] == [{"type": "text", "text": {"value": "Hello there", "annotations": []}}]
    assert body["metadata"] == {"k": "v"}
    assert body["attachments"] == []
    assert body["assistant_id"] is None and body["run_id"] is None
    assert body["incomplete_details"] is None and body["incomplete_at"] is None
    assert isinstance(body["completed_at"], int)

    again = raw(client.beta.threads.messages.with_raw_response.retrieve(message.id, thread_id=thread.id))
    check(Message, again, "MessageObject")
    assert again == body


def test_create_content_parts_and_attachments(client: OpenAI) -> None:
    thread = client.beta.threads.create()
    data, doc, image = (
        client.files.create(file=(name, io.BytesIO(b"a,b\n1,2\n")), purpose="assistants").id
        for name in ("data.csv", "doc.csv", "b.png")
    )
    body = raw(
        client.beta.threads.messages.with_raw_response.create(
            thread.id,
            role="user",
            content=[
                {"type": "text", "text": "Compare these"},
                {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
                {"type": "image_file", "image_file": {"file_id": image, "detail": "auto"}},
            ],
            attachments=[
                {"file_id": data, "tools": [{"type": "code_interpreter"}, {"type": "file_search"}]},
                {"file_id": doc, "tools": [{"type": "file_search"}]},
            ],
        )
    )
    check(Message, body, "MessageObject")
    assert [part["type"] for part in body["content"]] == ["text", "image_url", "image_file"]
    assert body["content"][0]["text"]["value"] == "Compare these"
    assert body["content"][1]["image_url"]["url"] == "https://example.com/a.png"
    assert body["content"][2]["image_file"] == {"file_id": image, "detail": "auto"}
    assert body["attachments"] == [
        {"file_id": data, "tools": [{"type": "code_interpreter"}, {"type": "file_search"}]},
        {"file_id": doc, "tools": [{"type": "file_search"}]},
    ]

    assistant_message = raw(
        client.beta.threads.messages.with_raw_response.create(thread.id, role="assistant", content="Sure.")
    )
    check(Message, assistant_message, "MessageObject")
    assert assistant_message["role"] == "assistant"


def test_list_order_and_run_filter(client: OpenAI, fake: FakeUpstream) -> None:
    assistant = client.beta.assistants.create(model="fake-model")
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "first"}])
    client.beta.threads.messages.create(thread.id, role="user", content="second")
    fake.push(Text("answer one"))
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert run.status == "completed"
    client.beta.threads.messages.create(thread.id, role="user", content="third")
    fake.push(Text("answer two"))
    run2 = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert run2.status == "completed"

    def texts(body: dict[str, Any]) -> list[str]:
        return [item["content"][0]["text"]["value"] for item in body["data"]]

    expected = ["first", "second", "answer one", "third", "answer two"]
    assert texts(_list(client, thread.id)) == expected[::-1]  # default order is desc
    assert texts(_list(client, thread.id, order="desc")) == expected[::-1]
    asc = _list(client, thread.id, order="asc")
    assert texts(asc) == expected
    assert asc["first_id"] == asc["data"][0]["id"] and asc["last_id"] == asc["data"][-1]["id"]
    assert asc["has_more"] is False

    only_first = _list(client, thread.id, run_id=run.id)
    assert texts(only_first) == ["answer one"]
    produced = only_first["data"][0]
    assert produced["role"] == "assistant"
    assert produced["run_id"] == run.id
    assert produced["assistant_id"] == assistant.id
    assert produced["status"] == "completed"
    assert texts(_list(client, thread.id, run_id=run2.id)) == ["answer two"]
    # An empty page has null first_id/last_id, as OpenAI sends and the SDK types allow (the OpenAPI
    # description's "string" is silent on empty pages), so only the SDK type is checked here.
    empty = raw(client.beta.threads.messages.with_raw_response.list(thread.id, run_id="run_doesnotexist"))
    check(SyncCursorPage[Message], empty)
    assert empty == {"object": "list", "data": [], "first_id": None, "last_id": None, "has_more": False}


def test_modify_metadata(client: OpenAI) -> None:
    thread = client.beta.threads.create()
    message = client.beta.threads.messages.create(thread.id, role="user", content="x", metadata={"a": "1"})
    body = raw(
        client.beta.threads.messages.with_raw_response.update(
            message.id, thread_id=thread.id, metadata={"b": "2", "c": "3"}
        )
    )
    check(Message, body, "MessageObject")
    assert body["metadata"] == {"b": "2", "c": "3"}
    assert body["content"][0]["text"]["value"] == "x"

    # An empty body changes nothing.
    body = raw(client.beta.threads.messages.with_raw_response.update(message.id, thread_id=thread.id))
    check(Message, body, "MessageObject")
    assert body["metadata"] == {"b": "2", "c": "3"}

    body = raw(
        client.beta.threads.messages.with_raw_response.update(message.id, thread_id=thread.id, metadata=None)
    )
    assert body["metadata"] == {}

    with pytest.raises(openai.BadRequestError) as info:
        client.beta.threads.messages.update(message.id, thread_id=thread.id, extra_body={"content": "new"})
    api_error(info.value, 400, "content")


def test_delete_message(client: OpenAI) -> None:
    thread = client.beta.threads.create()
    keep = client.beta.threads.messages.create(thread.id, role="user", content="keep")
    drop = client.beta.threads.messages.create(thread.id, role="user", content="drop")

    body = raw(client.beta.threads.messages.with_raw_response.delete(drop.id, thread_id=thread.id))
    check(MessageDeleted, body, "DeleteMessageResponse")
    assert body == {"id": drop.id, "object": "thread.message.deleted", "deleted": True}

    with pytest.raises(openai.NotFoundError) as info:
        client.beta.threads.messages.retrieve(drop.id, thread_id=thread.id)
    api_error(info.value, 404, "message_id")
    with pytest.raises(openai.NotFoundError):
        client.beta.threads.messages.delete(drop.id, thread_id=thread.id)
    assert [m["id"] for m in _list(client, thread.id)["data"]] == [keep.id]


def test_message_is_scoped_to_its_thread(client: OpenAI) -> None:
    one = client.beta.threads.create(messages=[{"role": "user", "content": "in one"}])
    two = client.beta.threads.create()
    message_id = client.beta.threads.messages.list(one.id).data[0].id
    with pytest.raises(openai.NotFoundError):
        client.beta.threads.messages.retrieve(message_id, thread_id=two.id)
    with pytest.raises(openai.NotFoundError):
        client.beta.threads.messages.update(message_id, thread_id=two.id, metadata={"x": "y"})
    with pytest.raises(openai.NotFoundError):
        client.beta.threads.messages.delete(message_id, thread_id=two.id)
    assert client.beta.threads.messages.retrieve(message_id, thread_id=one.id).id == message_id


def test_invalid_messages(client: OpenAI) -> None:
    thread = client.beta.threads.create()
    with pytest.raises(openai.BadRequestError) as info:
        client.beta.threads.messages.create(thread.id, role="system", content="x")  # type: ignore[arg-type]
    api_error(info.value, 400, "role")
    with pytest.raises(openai.BadRequestError) as info:
        client.beta.threads.messages.create(thread.id, role="user", content=[])
    api_error(info.value, 400, "content")
    with pytest.raises(openai.BadRequestError) as info:
        client.beta.threads.messages.create(
            thread.id,
            role="user",
            content=[{"type": "video", "video": {}}],  # type: ignore[list-item]
        )
    api_error(info.value, 400, "content[0]")
    with pytest.raises(openai.BadRequestError) as info:
        client.beta.threads.messages.create(thread.id, role="user", content="x", attachments=[{"tools": []}])
    api_error(info.value, 400, "attachments[0].file_id")
    with pytest.raises(openai.NotFoundError) as info:
        client.beta.threads.messages.create("thread_nope", role="user", content="x")
    api_error(info.value, 404, "thread_id")
    assert client.beta.threads.messages.list(thread.id).data == []
