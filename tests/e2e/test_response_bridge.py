"""The bridge between the Assistants and Responses APIs, with the official SDK: one thread, continued by
either API in turn, each seeing what the other added.

Already proven elsewhere, and not repeated here: a thread with messages continued by responses
(``test_responses.py::test_conversation_is_a_thread``), and a conversation made with items run by an
assistant, its messages and items listed (``test_conversations.py::test_conversation_used_as_a_thread``).
"""

from __future__ import annotations

import json
from typing import Any

from openai import OpenAI
from openai.types.beta.threads import Message as ThreadMessage
from openai.types.beta.threads import Run
from openai.types.conversations import ConversationItemList

from fake_upstream import FakeUpstream
from responses_wire import raw_create


def _sent(fake: FakeUpstream) -> list[tuple[str, str]]:
    return [(m["role"], m["content"]) for m in fake.requests[-1]["messages"]]


def _texts(client: OpenAI, thread_id: str) -> list[tuple[str, str]]:
    listed = client.beta.threads.messages.list(thread_id, order="asc")
    for message in listed.data:
        ThreadMessage.model_validate(message.model_dump())
    return [(m.role, m.content[0].text.value) for m in listed.data]  # type: ignore[union-attr]


def _items(client: OpenAI, conversation_id: str) -> list[dict[str, Any]]:
    raw = client.conversations.items.with_raw_response.list(conversation_id, order="asc")
    body = json.loads(raw.http_response.text)
    ConversationItemList.model_validate(body)
    items: list[dict[str, Any]] = body["data"]
    return items


def test_run_then_response_then_run_on_one_thread(client: OpenAI, fake: FakeUpstream) -> None:
    assistant = client.beta.assistants.create(model="fake-model", instructions="You are the desk.")
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "My order is 1234."}])
    fake.push("Noted: order 1234.", "It ships Monday.", "Monday, order 1234.")
    first = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert first.status == "completed"

    # A response on the thread (as a conversation) sees the whole history, the run's answer included.
    response = raw_create(client, model="fake-model", input="When does it ship?", conversation=thread.id)
    assert response.output_text == "It ships Monday."
    assert _sent(fake) == [
        ("user", "My order is 1234."),
        ("assistant", "Noted: order 1234."),
        ("user", "When does it ship?"),
    ]

    # A run after it sees what the response added, under the assistant's instructions.
    client.beta.threads.messages.create(thread.id, role="user", content="Summarise.")
    last = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert last.status == "completed"
    assert _sent(fake) == [
        ("system", "You are the desk."),
        ("user", "My order is 1234."),
        ("assistant", "Noted: order 1234."),
        ("user", "When does it ship?"),
        ("assistant", "It ships Monday."),
        ("user", "Summarise."),
    ]

    # Both APIs list the same six messages, in order, with the same ids.
    expected = [
        ("user", "My order is 1234."),
        ("assistant", "Noted: order 1234."),
        ("user", "When does it ship?"),
        ("assistant", "It ships Monday."),
        ("user", "Summarise."),
        ("assistant", "Monday, order 1234."),
    ]
    assert _texts(client, thread.id) == expected
    items = _items(client, thread.id)
    assert [(i["type"], i["role"], i["content"][0]["text"]) for i in items] == [
        ("message", role, text) for role, text in expected
    ]
    assert items[3]["id"] == response.output[0].id
    # The three runs: the assistant's two, the response's with no assistant.
    runs = client.beta.threads.runs.list(thread.id, order="asc").data
    assert [Run.model_validate(r.model_dump()).assistant_id for r in runs] == [assistant.id, "", assistant.id]


def test_assistant_as_prompt_on_a_conversation(client: OpenAI, fake: FakeUpstream) -> None:
    assistant = client.beta.assistants.create(model="fake-model", instructions="You speak {{language}}.")
    conversation = client.conversations.create(items=[{"role": "user", "content": "Hello."}])
    fake.push("Bonjour.", "Au revoir.")
    response = raw_create(
        client,
        prompt={"id": assistant.id, "variables": {"language": "French"}},
        input="Greet me.",
        conversation=conversation.id,
    )
    assert response.output_text == "Bonjour." and response.conversation is not None
    assert _sent(fake) == [("system", "You speak French."), ("user", "Hello."), ("user", "Greet me.")]

    # The response's run is the assistant's: the Assistants API shows it so, and its message too.
    runs = client.beta.threads.runs.list(conversation.id).data
    assert [r.assistant_id for r in runs] == [assistant.id]
    assert runs[0].instructions == "You speak French." and runs[0].model == "fake-model"
    written = client.beta.threads.messages.list(conversation.id).data[0]
    assert written.id == response.output[0].id and written.assistant_id == assistant.id

    # A run of the same assistant goes on from there (a run has no variables: it gives its instructions).
    client.beta.threads.messages.create(conversation.id, role="user", content="Bye.")
    run = client.beta.threads.runs.create_and_poll(
        thread_id=conversation.id, assistant_id=assistant.id, instructions="You speak French still."
    )
    assert run.status == "completed"
    assert _sent(fake) == [
        ("system", "You speak French still."),
        ("user", "Hello."),
        ("user", "Greet me."),
        ("assistant", "Bonjour."),
        ("user", "Bye."),
    ]
    assert [i["content"][0]["text"] for i in _items(client, conversation.id)] == [
        "Hello.",
        "Greet me.",
        "Bonjour.",
        "Bye.",
        "Au revoir.",
    ]
