"""The OpenAI Agents SDK's ``FileSearchTool`` against assistd's /v1/responses: an agent searches an assistd
vector store (made with the SDK's ``upload_and_poll``), on the scripted upstream and on the bundled local
model. The SDK's global client is set for each test and restored after it."""

from __future__ import annotations

import io
from typing import Any

from agents import (
    Agent,
    FileSearchTool,
    ModelSettings,
    RawResponsesStreamEvent,
    Runner,
    RunResult,
    RunResultStreaming,
)
from agents.items import MessageOutputItem, ToolCallItem
from openai import OpenAI
from openai.types.responses import ResponseFileSearchToolCall

from agents_support import on_assistd
from conftest import make_client
from fake_upstream import FakeUpstream, Text, ToolCalls
from responses_wire import FILE_SEARCH_CALL_EVENTS
from server import AssistdServer

FACT = "The launch code for Project Kestrel is 4471."
LOCAL_MODEL = "smollm2-135m-instruct"


def _store(client: OpenAI) -> str:
    store = client.vector_stores.create(name="briefings")
    for name, text in {
        "kestrel.md": "Project Kestrel briefing.\n\n" + FACT,
        "orchard.md": "Apples ripen in September. The orchard has forty trees.",
    }.items():
        done = client.vector_stores.files.upload_and_poll(
            vector_store_id=store.id, file=(name, io.BytesIO(text.encode())), poll_interval_ms=50
        )
        assert done.status == "completed"
    return store.id


def _run(server: AssistdServer, agent: Agent[Any], question: str) -> RunResult:
    return on_assistd(server, lambda: Runner.run(agent, question))


def _run_streamed(
    server: AssistdServer, agent: Agent[Any], question: str
) -> tuple[RunResultStreaming, list[str]]:
    """The run over the Responses stream, and the types of the raw events the SDK read from it."""

    async def go() -> tuple[RunResultStreaming, list[str]]:
        result = Runner.run_streamed(agent, question)
        kinds = [
            event.data.type
            async for event in result.stream_events()
            if isinstance(event, RawResponsesStreamEvent)
        ]
        return result, kinds

    return on_assistd(server, go)


def _search_calls(result: RunResult | RunResultStreaming) -> list[ResponseFileSearchToolCall]:
    return [
        item.raw_item
        for item in result.new_items
        if isinstance(item, ToolCallItem) and isinstance(item.raw_item, ResponseFileSearchToolCall)
    ]


def test_agent_file_search_on_the_scripted_upstream(
    server: AssistdServer, client: OpenAI, fake: FakeUpstream, agents_defaults: None
) -> None:
    store_id = _store(client)
    fake.push(
        ToolCalls([("file_search", {"queries": ["Project Kestrel launch code"]})]), Text("It is 4471 [1].")
    )
    agent = Agent(
        name="Librarian",
        instructions="Answer from the files.",
        model="fake-model",
        tools=[FileSearchTool(vector_store_ids=[store_id], max_num_results=3, include_search_results=True)],
    )
    result = _run(server, agent, "What is the launch code for Project Kestrel?")

    [call] = _search_calls(result)
    assert call.status == "completed" and call.queries == ["Project Kestrel launch code"]
    assert call.results and call.results[0].filename == "kestrel.md" and FACT in (call.results[0].text or "")
    messages = [item for item in result.new_items if isinstance(item, MessageOutputItem)]
    assert len(messages) == 1
    assert result.final_output.startswith("It is 4471")
    # The citation's marker replaced the model's [1], and the annotation names the file.
    [part] = messages[0].raw_item.content
    assert part.type == "output_text"
    [citation] = part.annotations
    assert citation.type == "file_citation" and citation.filename == "kestrel.md"
    # What the SDK asked for reached the model: the search tool, the passage with the fact.
    first, second = fake.requests[-2:]
    assert [tool["function"]["name"] for tool in first["tools"]] == ["file_search"]
    assert any(FACT in str(m.get("content")) for m in second["messages"] if m.get("role") == "tool")


def test_agent_file_search_streamed(
    server: AssistdServer, client: OpenAI, fake: FakeUpstream, agents_defaults: None
) -> None:
    store_id = _store(client)
    fake.push(ToolCalls([("file_search", {"queries": ["Kestrel"]})]), Text("It is 4471 [1]."))
    agent = Agent(
        name="Librarian",
        model="fake-model",
        tools=[FileSearchTool(vector_store_ids=[store_id], include_search_results=True)],
    )
    result, kinds = _run_streamed(server, agent, "What is the launch code for Project Kestrel?")

    # The SDK read the search's events and the cited answer from the stream, and built the same items.
    assert kinds[:6] == ["response.created", "response.in_progress", *FILE_SEARCH_CALL_EVENTS]
    assert "response.output_text.annotation.added" in kinds and kinds[-1] == "response.completed"
    [call] = _search_calls(result)
    assert call.results and call.results[0].filename == "kestrel.md"
    assert isinstance(result.final_output, str) and result.final_output.startswith("It is 4471")


def test_agent_file_search_on_the_local_model(local_server: AssistdServer, agents_defaults: None) -> None:
    with make_client(local_server) as client:
        store_id = _store(client)
    # The tiny model is told to search first (tool_choice), then answers as it can: the structure is
    # checked, not its words.
    agent = Agent(
        name="Librarian",
        instructions="Answer from the files, briefly.",
        model=LOCAL_MODEL,
        tools=[FileSearchTool(vector_store_ids=[store_id], include_search_results=True)],
        model_settings=ModelSettings(tool_choice="file_search", temperature=0),
        reset_tool_choice=True,
    )
    result = _run(local_server, agent, "What is the launch code for Project Kestrel?")

    calls = _search_calls(result)
    assert calls and calls[0].status == "completed"
    assert calls[0].results, "the search found the store's passages"
    assert {r.filename for r in calls[0].results} <= {"kestrel.md", "orchard.md"}
    assert isinstance(result.final_output, str) and result.final_output.strip()
    assert isinstance(result.new_items[-1], MessageOutputItem)
