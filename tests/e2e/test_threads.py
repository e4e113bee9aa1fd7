"""Threads over the wire: create (empty, with messages, metadata, tool resources), retrieve, modify, delete,
and the list-threads extension ``GET /v1/threads``."""

from __future__ import annotations

import io
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI
from openai.pagination import SyncCursorPage
from openai.types.beta import Thread, ThreadDeleted
from openai.types.beta.threads import Message

from server import KEYS, AssistdServer
from wire import api_error, check, raw

IMAGE_URL = "https://example.com/cat.png"


def _list_threads(server: AssistdServer, **params: Any) -> dict[str, Any]:
    response = httpx.get(
        f"{server.base_url}/threads", params=params, headers={"Authorization": f"Bearer {KEYS[0]}"}
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    check(SyncCursorPage[Thread], body)
    assert set(body) == {"object", "data", "first_id", "last_id", "has_more"}
    assert body["object"] == "list"
    for item in body["data"]:
        check(Thread, item, "ThreadObject")
    return body


def test_create_empty_thread(client: OpenAI) -> None:
    body = raw(client.beta.threads.with_raw_response.create())
    thread = check(Thread, body, "ThreadObject")
    assert body["object"] == "thread"
    assert body["id"].startswith("thread_")
    assert isinstance(body["created_at"], int)
    assert body["metadata"] == {}
    assert client.beta.threads.messages.list(thread.id).data == []


def _upload(client: OpenAI, name: str) -> str:
    return client.files.create(file=(name, io.BytesIO(b"notes")), purpose="assistants").id


def test_create_with_messages_metadata_and_tool_resources(client: OpenAI) -> None:
    # Files and a store that exist: ids that name nothing are refused (tests/e2e/test_referenced_ids.py).
    image, notes, store = (
        _upload(client, "cat.png"),
        _upload(client, "notes.txt"),
        client.vector_stores.create(),
    )
    body = raw(
        client.beta.threads.with_raw_response.create(
            messages=[
                {"role": "user", "content": "What is in this picture?"},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "Look:"},
                        {"type": "image_url", "image_url": {"url": IMAGE_URL, "detail": "low"}},
                        {"type": "image_file", "image_file": {"file_id": image, "detail": "high"}},
                    ],
                    "metadata": {"part": "2"},
                },
                {
                    "role": "assistant",
                    "content": "A cat.",
                    "attachments": [{"file_id": notes, "tools": [{"type": "code_interpreter"}]}],
                },
            ],
            metadata={"user": "u-1"},
            tool_resources={
                "code_interpreter": {"file_ids": [notes]},
                "file_search": {"vector_store_ids": [store.id]},
            },
        )
    )
    thread = check(Thread, body, "ThreadObject")
    assert body["metadata"] == {"user": "u-1"}
    assert body["tool_resources"]["code_interpreter"]["file_ids"] == [notes]
    assert body["tool_resources"]["file_search"]["vector_store_ids"] == [store.id]

    listed = raw(client.beta.threads.messages.with_raw_response.list(thread.id, order="asc"))
    check(SyncCursorPage[Message], listed, "ListMessagesResponse")
    first, second, third = listed["data"]
    for message in listed["data"]:
        check(Message, message, "MessageObject")
        assert message["thread_id"] == thread.id
        assert message["status"] == "completed"
        assert message["run_id"] is None
        assert message["assistant_id"] is None
    assert first["role"] == "user"
    assert first["content"] == [
        {"type": "text", "text": {"value": "What is in this picture?", "annotations": []}}
    ]
    assert second["content"][0] == {"type": "text", "text": {"value": "Look:", "annotations": []}}
    assert second["content"][1] == {"type": "image_url", "image_url": {"url": IMAGE_URL, "detail": "low"}}
    assert second["content"][2] == {
        "type": "image_file",
        "image_file": {"file_id": image, "detail": "high"},
    }
    assert second["metadata"] == {"part": "2"}
    assert third["role"] == "assistant"
    assert third["attachments"] == [{"file_id": notes, "tools": [{"type": "code_interpreter"}]}]


def test_retrieve_and_modify(client: OpenAI) -> None:
    thread = client.beta.threads.create(metadata={"a": "1"})
    notes = _upload(client, "notes.txt")
    body = raw(client.beta.threads.with_raw_response.retrieve(thread.id))
    check(Thread, body, "ThreadObject")
    assert body["id"] == thread.id and body["metadata"] == {"a": "1"}

    body = raw(
        client.beta.threads.with_raw_response.update(
            thread.id, tool_resources={"code_interpreter": {"file_ids": [notes]}}
        )
    )
    check(Thread, body, "ThreadObject")
    assert body["metadata"] == {"a": "1"}, "metadata was not given, so it must not change"
    assert body["tool_resources"]["code_interpreter"]["file_ids"] == [notes]

    body = raw(client.beta.threads.with_raw_response.update(thread.id, metadata={"b": "2"}))
    check(Thread, body, "ThreadObject")
    assert body["metadata"] == {"b": "2"}
    assert body["tool_resources"]["code_interpreter"]["file_ids"] == [notes]

    body = raw(client.beta.threads.with_raw_response.update(thread.id, metadata=None))
    check(Thread, body, "ThreadObject")
    assert body["metadata"] == {}
    assert raw(client.beta.threads.with_raw_response.retrieve(thread.id)) == body

    with pytest.raises(openai.BadRequestError) as info:
        client.beta.threads.update(thread.id, extra_body={"messages": []})
    api_error(info.value, 400, "messages")


def test_delete_removes_thread_and_its_messages(client: OpenAI) -> None:
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "bye"}])
    message_id = client.beta.threads.messages.list(thread.id).data[0].id

    body = raw(client.beta.threads.with_raw_response.delete(thread.id))
    check(ThreadDeleted, body, "DeleteThreadResponse")
    assert body == {"id": thread.id, "object": "thread.deleted", "deleted": True}

    with pytest.raises(openai.NotFoundError) as info:
        client.beta.threads.retrieve(thread.id)
    api_error(info.value, 404, "thread_id")
    with pytest.raises(openai.NotFoundError):
        client.beta.threads.messages.retrieve(message_id, thread_id=thread.id)
    with pytest.raises(openai.NotFoundError):
        client.beta.threads.messages.list(thread.id)
    with pytest.raises(openai.NotFoundError):
        client.beta.threads.update(thread.id, metadata={"x": "y"})
    with pytest.raises(openai.NotFoundError):
        client.beta.threads.delete(thread.id)


def test_list_threads_extension(client: OpenAI, server: AssistdServer) -> None:
    ids = [client.beta.threads.create(metadata={"n": str(i)}).id for i in range(3)]

    via_sdk = client.get("/threads", cast_to=object, options={"params": {"limit": 3}})
    assert isinstance(via_sdk, dict)
    assert [item["id"] for item in via_sdk["data"]] == ids[::-1]

    newest = _list_threads(server, limit=2)
    assert [item["id"] for item in newest["data"]] == [ids[2], ids[1]]
    assert newest["first_id"] == ids[2] and newest["last_id"] == ids[1]
    assert newest["has_more"] is True

    after = _list_threads(server, limit=2, after=newest["last_id"])
    assert after["data"][0]["id"] == ids[0]

    oldest_first = _list_threads(server, limit=100, order="asc", after=ids[0])
    assert [item["id"] for item in oldest_first["data"]] == ids[1:]
    assert oldest_first["has_more"] is False

    client.beta.threads.delete(ids[1])
    remaining = _list_threads(server, limit=100)
    listed = [item["id"] for item in remaining["data"]]
    assert ids[1] not in listed and ids[0] in listed and ids[2] in listed
