"""The file_search tool in runs: the model's search is run over the right stores, the passage with the
fact reaches the model, the step shows the results, and the answer cites the file precisely."""

from __future__ import annotations

import io
import re
from typing import Any

from openai import OpenAI
from openai.types.beta.threads import Message
from openai.types.beta.threads.runs import RunStep

from fake_upstream import Dynamic, FakeUpstream, Text, ToolCalls
from server import AssistdServer
from sse import stream_events
from wire import check, raw

FACT = "The launch code for Project Kestrel is 4471."
DOCUMENTS = {
    "orchard.md": "Apples ripen in September. The orchard has forty trees and a cider press.",
    "kestrel.md": "Project Kestrel briefing.\n\n" + FACT + "\n\nThe code changes every spring.",
    "weather.md": "Rain is expected over the hills on Tuesday, with clear skies by Friday.",
}
CONTENT_INCLUDE = "step_details.tool_calls[*].file_search.results[*].content"


def _knowledge_base(client: OpenAI) -> tuple[str, dict[str, str]]:
    store = client.vector_stores.create(name="briefings")
    ids = {}
    for name, text in DOCUMENTS.items():
        done = client.vector_stores.files.upload_and_poll(
            vector_store_id=store.id, file=(name, io.BytesIO(text.encode())), poll_interval_ms=50
        )
        assert done.status == "completed"
        ids[name] = done.id
    return store.id, ids


QUESTION = "What is the launch code for Project Kestrel?"


def _asking(client: OpenAI, store_id: str, tool: dict[str, Any] | None = None) -> tuple[str, str]:
    """An assistant searching the store, and a thread holding the question: their ids."""
    assistant = client.beta.assistants.create(
        model="fake-model",
        instructions="Answer from the files.",
        tools=[tool or {"type": "file_search"}],
        tool_resources={"file_search": {"vector_store_ids": [store_id]}},
    )
    thread = client.beta.threads.create(messages=[{"role": "user", "content": QUESTION}])
    return assistant.id, thread.id


def _tool_text(body: dict[str, Any]) -> str:
    return "\n".join(str(m.get("content") or "") for m in body["messages"] if m.get("role") == "tool")


def _answer_citing_the_fact(body: dict[str, Any]) -> Text:
    """Answer as a model would: cite the number under which the passage with the fact was shown."""
    shown = _tool_text(body)
    number = re.search(r"\[(\d+)\] kestrel\.md\n[^\[]*4471", shown)
    assert number is not None, shown
    return Text(f"The launch code is 4471 [{number.group(1)}]. It changes every spring.")


def _script(fake: FakeUpstream) -> None:
    fake.push(
        ToolCalls([("file_search", {"queries": ["launch code Project Kestrel"]})]),
        Dynamic(_answer_citing_the_fact),
    )


def _check_answer(client: OpenAI, thread_id: str, run_id: str, kestrel: str) -> Message:
    messages = client.beta.threads.messages.with_raw_response.list(thread_id, run_id=run_id)
    data = raw(messages)["data"]
    assert len(data) == 1
    message = check(Message, data[0], "MessageObject")
    text = message.content[0].text  # type: ignore[union-attr]
    # The model's [n] became OpenAI's marker (search 0, the passage's rank, the file), which the
    # annotation's text is.
    shown = re.fullmatch(
        r"The launch code is 4471(【0:\d+†kestrel\.md】)\. It changes every spring\.", text.value
    )
    assert shown is not None, text.value
    assert len(text.annotations) == 1
    citation = text.annotations[0]
    assert citation.type == "file_citation" and citation.file_citation.file_id == kestrel  # type: ignore[union-attr]
    assert citation.text == shown.group(1)
    assert text.value[citation.start_index : citation.end_index] == citation.text
    quote = data[0]["content"][0]["text"]["annotations"][0]["file_citation"]["quote"]
    assert FACT in quote
    return message


def test_file_search_finds_cites_and_shows_its_step(client: OpenAI, fake: FakeUpstream) -> None:
    store_id, ids = _knowledge_base(client)
    tool = {"type": "file_search", "file_search": {"max_num_results": 5}}
    assistant_id, thread_id = _asking(client, store_id, tool)
    _script(fake)
    run = client.beta.threads.runs.create_and_poll(thread_id=thread_id, assistant_id=assistant_id)
    assert run.status == "completed", run.last_error

    first, second = fake.requests
    offered = [tool["function"]["name"] for tool in first["tools"]]
    assert offered == ["file_search"]
    assert FACT in _tool_text(second)  # the passage with the fact reached the model

    steps = raw(
        client.beta.threads.runs.steps.with_raw_response.list(
            run_id=run.id, thread_id=thread_id, order="asc", include=[CONTENT_INCLUDE]
        )
    )["data"]
    search_step = check(RunStep, steps[0], "RunStepObject")
    assert search_step.type == "tool_calls" and search_step.status == "completed"
    call = search_step.step_details.tool_calls[0]  # type: ignore[union-attr]
    assert call.type == "file_search"
    assert call.file_search.ranking_options is not None
    results = call.file_search.results
    assert results is not None and results[0].file_id == ids["kestrel.md"]
    assert results[0].file_name == "kestrel.md" and 0 <= results[0].score <= 1
    assert results[0].content is not None and FACT in results[0].content[0].text
    plain = raw(
        client.beta.threads.runs.steps.with_raw_response.list(run_id=run.id, thread_id=thread_id, order="asc")
    )
    assert all(
        "content" not in r
        for r in plain["data"][0]["step_details"]["tool_calls"][0]["file_search"]["results"]
    )
    assert steps[1]["type"] == "message_creation"

    _check_answer(client, thread_id, run.id, ids["kestrel.md"])


def test_streamed_file_search_run(client: OpenAI, fake: FakeUpstream, server: AssistdServer) -> None:
    store_id, ids = _knowledge_base(client)
    assistant_id, thread_id = _asking(client, store_id)
    _script(fake)
    events = list(
        stream_events(
            server.base_url, f"/threads/{thread_id}/runs", {"assistant_id": assistant_id, "stream": True}
        )
    )
    names = [name for name, _ in events]
    assert names[-2:] == ["thread.run.completed", "done"]
    step_deltas = [data for name, data in events if name == "thread.run.step.delta"]
    kinds = {call["type"] for d in step_deltas for call in d["delta"]["step_details"]["tool_calls"]}
    assert kinds == {"file_search"}
    shown = [
        d for d in step_deltas if d["delta"]["step_details"]["tool_calls"][0]["file_search"].get("results")
    ]
    assert (
        shown
        and shown[0]["delta"]["step_details"]["tool_calls"][0]["file_search"]["results"][0]["file_id"]
        == (ids["kestrel.md"])
    )
    # The search step completes before the message step is created.
    assert names.index("thread.run.step.completed") < names.index("thread.message.created")

    deltas = [data["delta"]["content"][0]["text"] for name, data in events if name == "thread.message.delta"]
    streamed = "".join(part["value"] for part in deltas)
    run_id = next(data["id"] for name, data in events if name == "thread.run.created")
    message = _check_answer(client, thread_id, run_id, ids["kestrel.md"])
    assert streamed == message.content[0].text.value  # type: ignore[union-attr]
    annotations = [a for part in deltas for a in part.get("annotations", [])]
    assert len(annotations) == 1 and annotations[0]["file_citation"]["file_id"] == ids["kestrel.md"]
    assert annotations[0]["index"] == 0


def test_attachments_make_a_thread_store(client: OpenAI, fake: FakeUpstream) -> None:
    uploaded = {
        name: client.files.create(file=(name, io.BytesIO(text.encode())), purpose="assistants").id
        for name, text in DOCUMENTS.items()
    }
    assistant = client.beta.assistants.create(model="fake-model", tools=[{"type": "file_search"}])
    thread = client.beta.threads.create(
        messages=[
            {
                "role": "user",
                "content": "What is the launch code for Project Kestrel?",
                "attachments": [
                    {"file_id": file_id, "tools": [{"type": "file_search"}]} for file_id in uploaded.values()
                ],
            }
        ]
    )
    fetched = client.beta.threads.retrieve(thread.id)
    assert fetched.tool_resources is not None and fetched.tool_resources.file_search is not None
    store_ids = fetched.tool_resources.file_search.vector_store_ids or []
    assert len(store_ids) == 1
    store = client.vector_stores.retrieve(store_ids[0])
    assert store.file_counts.total == 3 and store.expires_after is not None

    _script(fake)
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert run.status == "completed", run.last_error
    assert FACT in _tool_text(fake.requests[1])
    _check_answer(client, thread.id, run.id, uploaded["kestrel.md"])


def test_assistant_tool_resources_can_create_a_store(client: OpenAI, fake: FakeUpstream) -> None:
    file_id = client.files.create(
        file=("kestrel.md", io.BytesIO(DOCUMENTS["kestrel.md"].encode())), purpose="assistants"
    ).id
    assistant = client.beta.assistants.create(
        model="fake-model",
        tools=[{"type": "file_search"}],
        tool_resources={"file_search": {"vector_stores": [{"file_ids": [file_id]}]}},
    )
    assert assistant.tool_resources is not None and assistant.tool_resources.file_search is not None
    (store_id,) = assistant.tool_resources.file_search.vector_store_ids or []
    member = client.vector_stores.files.poll(file_id, vector_store_id=store_id, poll_interval_ms=50)
    assert member.status == "completed"

    thread = client.beta.threads.create(messages=[{"role": "user", "content": "Launch code?"}])
    _script(fake)
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert run.status == "completed", run.last_error
    _check_answer(client, thread.id, run.id, file_id)


def test_search_without_stores_tells_the_model(client: OpenAI, fake: FakeUpstream) -> None:
    assistant = client.beta.assistants.create(model="fake-model", tools=[{"type": "file_search"}])
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "Anything?"}])
    fake.push(ToolCalls([("file_search", {"queries": ["anything"]})]), Text("Nothing found."))
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert run.status == "completed"
    assert "No files are available" in _tool_text(fake.requests[1])
    message = client.beta.threads.messages.list(thread.id, run_id=run.id).data[0]
    assert message.content[0].text.value == "Nothing found."  # type: ignore[union-attr]


def test_a_call_without_a_query_searches_for_the_users_question(client: OpenAI, fake: FakeUpstream) -> None:
    store_id, _ = _knowledge_base(client)
    assistant_id, thread_id = _asking(client, store_id)
    # What small local models do: call the tool with empty arguments.
    fake.push(ToolCalls([("file_search", {"queries": []})]), Text("It is 4471."))
    run = client.beta.threads.runs.create_and_poll(thread_id=thread_id, assistant_id=assistant_id)
    assert run.status == "completed", run.last_error
    assert FACT in _tool_text(fake.requests[1])
