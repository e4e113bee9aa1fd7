"""Built-in tools in /v1/responses: file_search over the vector stores the request names (filters, ranking,
citations), code_interpreter in a container, ``max_tool_calls``, ``include``, and their stream events, each
validated by the SDK's types and OpenAI's description."""

from __future__ import annotations

import io
import json
import re
from typing import Any

from openai import OpenAI
from openai.types.responses import Response, ResponseCodeInterpreterToolCall, ResponseFileSearchToolCall

from fake_upstream import Dynamic, FakeUpstream, Text, ToolCalls
from responses_wire import EVENTS, FILE_SEARCH_CALL_EVENTS, post, raw_create, spec_check, stream_frames
from server import AssistdServer

FACT = "The launch code for Project Kestrel is 4471."
DOCUMENTS = {
    "orchard.md": ("Apples ripen in September. The orchard has forty trees and a cider press.", "farm"),
    "kestrel.md": ("Project Kestrel briefing.\n\n" + FACT + "\n\nThe code changes every spring.", "secret"),
    "weather.md": ("Rain is expected over the hills on Tuesday, with clear skies by Friday.", "farm"),
}
QUESTION = "What is the launch code for Project Kestrel?"
RESULTS = "file_search_call.results"
OUTPUTS = "code_interpreter_call.outputs"


def _knowledge_base(client: OpenAI) -> tuple[str, dict[str, str]]:
    store = client.vector_stores.create(name="briefings")
    ids = {}
    for name, (text, kind) in DOCUMENTS.items():
        done = client.vector_stores.files.upload_and_poll(
            vector_store_id=store.id, file=(name, io.BytesIO(text.encode())), poll_interval_ms=50
        )
        assert done.status == "completed"
        client.vector_stores.files.update(
            file_id=done.id, vector_store_id=store.id, attributes={"kind": kind}
        )
        ids[name] = done.id
    return store.id, ids


def _tool_text(body: dict[str, Any]) -> str:
    return "\n".join(str(m.get("content") or "") for m in body["messages"] if m.get("role") == "tool")


def _cite_the_fact(body: dict[str, Any]) -> Text:
    shown = _tool_text(body)
    number = re.search(r"\[(\d+)\] kestrel\.md\n[^\[]*4471", shown)
    assert number is not None, shown
    return Text(f"The launch code is 4471 [{number.group(1)}].")


def _search_then_cite(fake: FakeUpstream) -> None:
    fake.push(
        ToolCalls([("file_search", {"queries": ["launch code Project Kestrel"]})]), Dynamic(_cite_the_fact)
    )


def test_file_search_response_searches_the_named_store_and_cites(client: OpenAI, fake: FakeUpstream) -> None:
    store_id, ids = _knowledge_base(client)
    _search_then_cite(fake)
    tool = {"type": "file_search", "vector_store_ids": [store_id], "max_num_results": 5}
    response = raw_create(client, model="fake-model", input=QUESTION, tools=[tool], include=[RESULTS])
    assert response.status == "completed", response.error

    # The model was offered the search, and the passage with the fact reached it.
    first, second = fake.requests[-2:]
    assert [t["function"]["name"] for t in first["tools"]] == ["file_search"]
    assert FACT in _tool_text(second)

    # The call, then the message that cites it.
    assert [item.type for item in response.output] == ["file_search_call", "message"]
    call = response.output[0]
    assert isinstance(call, ResponseFileSearchToolCall)
    assert call.id.startswith("fs_") and call.status == "completed"
    assert call.queries == ["launch code Project Kestrel"]
    assert call.results is not None and call.results[0].file_id == ids["kestrel.md"]
    assert call.results[0].filename == "kestrel.md" and FACT in (call.results[0].text or "")
    # Each result carries its file's attributes, as the vector store file has them.
    kinds = {v: DOCUMENTS[k][1] for k, v in ids.items()}
    assert [r.attributes for r in call.results] == [{"kind": kinds[r.file_id]} for r in call.results]
    assert len(call.results) <= 5
    text = response.output[1].content[0]  # type: ignore[union-attr]
    assert text.type == "output_text"
    citation = text.annotations[0]
    assert citation.type == "file_citation"
    assert (citation.file_id, citation.filename) == (ids["kestrel.md"], "kestrel.md")
    # The index is the citation's place in the text: its marker starts there.
    assert text.text[citation.index :].startswith("【") and "kestrel.md" in text.text[citation.index :]
    # The tool is echoed with OpenAI's defaults filled in.
    assert response.tools[0].type == "file_search"
    assert response.tools[0].vector_store_ids == [store_id]  # type: ignore[union-attr]
    assert response.tools[0].max_num_results == 5  # type: ignore[union-attr]

    # Without include, the results are not shown; a retrieve shows what its own include asks for.
    fake.push(ToolCalls([("file_search", {"queries": ["kestrel"]})]), Text("4471."))
    plain = raw_create(client, model="fake-model", input=QUESTION, tools=[tool])
    assert plain.output[0].type == "file_search_call" and plain.output[0].results is None  # type: ignore[union-attr]
    assert client.responses.retrieve(response.id).output[0].results is None  # type: ignore[union-attr]
    again = client.responses.retrieve(response.id, include=[RESULTS])
    assert again.output[0].results == call.results  # type: ignore[union-attr]


def test_file_search_filters_and_score_threshold(client: OpenAI, fake: FakeUpstream) -> None:
    store_id, ids = _knowledge_base(client)
    # Only the farm files may be searched: the kestrel briefing never reaches the model.
    fake.push(ToolCalls([("file_search", {"queries": ["launch code Project Kestrel"]})]), Text("Not found."))
    farm = {"type": "eq", "key": "kind", "value": "farm"}
    tool = {"type": "file_search", "vector_store_ids": [store_id], "filters": farm}
    response = raw_create(client, model="fake-model", input=QUESTION, tools=[tool], include=[RESULTS])
    results = response.output[0].results  # type: ignore[union-attr]
    assert results is not None
    assert {r.file_id for r in results} <= {ids["orchard.md"], ids["weather.md"]}
    assert FACT not in _tool_text(fake.requests[-1])
    # A compound filter: kind is secret or farm, and not the weather.
    either = {
        "type": "and",
        "filters": [
            {"type": "in", "key": "kind", "value": ["secret", "farm"]},
            {"type": "ne", "key": "kind", "value": "nothing"},
        ],
    }
    _search_then_cite(fake)
    tool = {"type": "file_search", "vector_store_ids": [store_id], "filters": either}
    # Checked by the SDK's type alone: the description's compound filter nests itself with a
    # ``$recursiveRef``, which its 2020-12 validator cannot follow (any nested filter would fail it).
    raw = client.responses.with_raw_response.create(
        model="fake-model", input=QUESTION, tools=[tool], include=[RESULTS]
    )
    response = Response.model_validate(json.loads(raw.http_response.text))
    assert response.tools[0].filters is not None  # type: ignore[union-attr]
    assert response.output[0].results[0].file_id == ids["kestrel.md"]  # type: ignore[union-attr,index]
    # A threshold no passage reaches: nothing found.
    fake.push(ToolCalls([("file_search", {"queries": ["launch code"]})]), Text("Nothing."))
    ranking = {"ranker": "auto", "score_threshold": 1.0}
    tool = {"type": "file_search", "vector_store_ids": [store_id], "ranking_options": ranking}
    response = raw_create(client, model="fake-model", input=QUESTION, tools=[tool], include=[RESULTS])
    assert response.output[0].results == []  # type: ignore[union-attr]
    assert "No passages matched" in _tool_text(fake.requests[-1])


def test_built_in_tool_errors_name_the_parameter(server: AssistdServer, client: OpenAI) -> None:
    store_id, _ = _knowledge_base(client)
    cases = [
        (
            [{"type": "file_search", "vector_store_ids": [store_id, "vs_nope"]}],
            "tools[0].vector_store_ids[1]",
        ),
        ([{"type": "file_search"}], "tools[0].vector_store_ids"),
        (
            [{"type": "file_search", "vector_store_ids": [store_id], "max_num_results": 51}],
            "tools[0].max_num_results",
        ),
        ([{"type": "file_search", "vector_store_ids": [store_id], "x": 1}], "tools[0].x"),
        (
            [{"type": "file_search", "vector_store_ids": [store_id], "filters": {"type": "eq", "key": "k"}}],
            "tools[0].filters.value",
        ),
        ([{"type": "code_interpreter"}], "tools[0].container"),
        ([{"type": "code_interpreter", "container": "thread_nope"}], "tools[0].container"),
        (
            [{"type": "code_interpreter", "container": {"type": "auto", "file_ids": ["file-nope"]}}],
            "tools[0].container.file_ids[0]",
        ),
    ]
    for tools, param in cases:
        answer = post(server, "/responses", {"model": "fake-model", "input": "Hi", "tools": tools})
        assert answer.status_code in (400, 404), (tools, answer.text)
        assert answer.json()["error"]["param"] == param, (tools, answer.json())
    for body, param in [
        ({"max_tool_calls": 0}, "max_tool_calls"),
        ({"tool_choice": {"type": "file_search"}}, "tool_choice"),
    ]:
        answer = post(server, "/responses", {"model": "fake-model", "input": "Hi", **body})
        assert (answer.status_code, answer.json()["error"]["param"]) == (400, param)


def test_code_interpreter_response_runs_code_in_its_container(client: OpenAI, fake: FakeUpstream) -> None:
    data = client.files.create(file=("numbers.csv", io.BytesIO(b"n\n1\n2\n3\n")), purpose="assistants")
    code = "import pandas as pd\ntotal = int(pd.read_csv('/mnt/data/numbers.csv').n.sum())\nprint(total)"
    fake.push(ToolCalls([("code_interpreter", {"code": code})]), Text("The total is 6."))
    tool = {"type": "code_interpreter", "container": {"type": "auto", "file_ids": [data.id]}}
    response = raw_create(
        client, model="fake-model", input="Sum the numbers.", tools=[tool], include=[OUTPUTS]
    )
    assert response.status == "completed", response.error
    assert [item.type for item in response.output] == ["code_interpreter_call", "message"]
    call = response.output[0]
    assert isinstance(call, ResponseCodeInterpreterToolCall)
    assert call.id.startswith("ci_") and call.status == "completed" and call.code == code
    assert call.outputs is not None and call.outputs[0].type == "logs"
    assert call.outputs[0].logs.strip() == "6"  # type: ignore[union-attr]
    assert response.output_text == "The total is 6."
    assert "6" in _tool_text(fake.requests[-1])

    # The container is the code session: a later response naming it, on another thread (a conversation),
    # finds the state the first left there.
    container = call.container_id
    conversation = client.conversations.create()
    assert container != conversation.id
    fake.push(ToolCalls([("code_interpreter", {"code": "print(total * 7)"})]), Text("42."))
    again = raw_create(
        client,
        model="fake-model",
        input="Multiply it by 7.",
        conversation=conversation.id,
        tools=[{"type": "code_interpreter", "container": container}],
        include=[OUTPUTS],
    )
    second = again.output[0]
    assert isinstance(second, ResponseCodeInterpreterToolCall) and second.container_id == container
    assert second.outputs is not None and second.outputs[0].logs.strip() == "42"  # type: ignore[union-attr]
    # The conversation's items show the call as the response does.
    items = client.conversations.items.list(conversation.id, order="asc", include=[OUTPUTS]).data
    [listed] = [item for item in items if item.type == "code_interpreter_call"]
    assert listed.model_dump() == second.model_dump()
    got = client.conversations.items.retrieve(second.id, conversation_id=conversation.id, include=[OUTPUTS])
    assert got.model_dump() == second.model_dump()
    # Without include, the outputs are not shown.
    assert client.responses.retrieve(again.id).output[0].outputs is None  # type: ignore[union-attr]


def test_max_tool_calls_bounds_built_in_calls(client: OpenAI, fake: FakeUpstream) -> None:
    store_id, _ = _knowledge_base(client)
    fake.push(
        ToolCalls([("file_search", {"queries": ["kestrel"]}), ("file_search", {"queries": ["launch"]})]),
        Text("Answered."),
    )
    tool = {"type": "file_search", "vector_store_ids": [store_id]}
    response = raw_create(
        client, model="fake-model", input=QUESTION, tools=[tool], max_tool_calls=1, include=[RESULTS]
    )
    assert response.status == "completed" and response.max_tool_calls == 1
    calls = [item for item in response.output if item.type == "file_search_call"]
    assert len(calls) == 2
    # The first ran; the one past the bound did not, and the model was told so, and offered no tool after.
    assert calls[0].results and not calls[1].results  # type: ignore[union-attr]
    assert "max_tool_calls" in _tool_text(fake.requests[-1])
    assert not fake.requests[-1].get("tools")


def _frames(server: AssistdServer, body: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    frames = stream_frames(server, {**body, "stream": True})
    for number, (name, data) in enumerate(frames):
        assert name == data["type"] and data["sequence_number"] == number
        EVENTS.validate_python(data)
        spec_check(data, "ResponseStreamEvent")
    return frames


def test_file_search_stream_events(server: AssistdServer, client: OpenAI, fake: FakeUpstream) -> None:
    store_id, ids = _knowledge_base(client)
    _search_then_cite(fake)
    tool = {"type": "file_search", "vector_store_ids": [store_id]}
    frames = _frames(
        server, {"model": "fake-model", "input": QUESTION, "tools": [tool], "include": [RESULTS]}
    )
    names = [name for name, _ in frames]
    deltas = names.count("response.output_text.delta")
    assert names == [
        "response.created",
        "response.in_progress",
        *FILE_SEARCH_CALL_EVENTS,
        "response.output_item.done",
        "response.output_item.added",
        "response.content_part.added",
        *names[9 : 9 + deltas + 1],
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    middle = names[9 : 9 + deltas + 1]
    assert sorted(middle) == sorted(
        ["response.output_text.delta"] * deltas + ["response.output_text.annotation.added"]
    )
    events = [data for _, data in frames]
    added, done = events[2]["item"], events[6]["item"]
    assert added["type"] == "file_search_call" and added["status"] == "in_progress"
    assert (
        done["id"] == added["id"]
        and done["status"] == "completed"
        and done["results"][0]["file_id"] == ids["kestrel.md"]
    )
    assert {e["output_index"] for e in events[2:7]} == {0}
    assert {e.get("output_index") for e in events[7:-1]} == {1}
    annotation = next(e for e in events if e["type"] == "response.output_text.annotation.added")
    assert annotation["annotation"]["file_id"] == ids["kestrel.md"] and annotation["annotation_index"] == 0
    final = events[-1]["response"]
    assert [item["type"] for item in final["output"]] == ["file_search_call", "message"]
    assert final["output"][0] == done
    assert final["output"][1] == events[-2]["item"]
    assert final["output"][1]["content"][0]["annotations"] == [annotation["annotation"]]


def test_code_interpreter_stream_events(server: AssistdServer, fake: FakeUpstream) -> None:
    code = "print(6 * 7)"
    fake.push(ToolCalls([("code_interpreter", {"code": code})]), Text("It is 42."))
    body = {
        "model": "fake-model",
        "input": "Compute.",
        "tools": [{"type": "code_interpreter", "container": "auto"}],
        "include": [OUTPUTS],
    }
    frames = _frames(server, body)
    names = [name for name, _ in frames]
    pieces = names.count("response.code_interpreter_call_code.delta")
    assert pieces >= 1
    assert names[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.code_interpreter_call.in_progress",
    ]
    assert names[4 : 4 + pieces] == ["response.code_interpreter_call_code.delta"] * pieces
    deltas = names.count("response.output_text.delta")
    assert names[4 + pieces :] == [
        "response.code_interpreter_call_code.done",
        "response.code_interpreter_call.interpreting",
        "response.code_interpreter_call.completed",
        "response.output_item.done",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * deltas,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    events = [data for _, data in frames]
    code_events = events[4 : 4 + pieces]
    assert "".join(e["delta"] for e in code_events) == code
    assert events[4 + pieces]["code"] == code
    done = events[7 + pieces]["item"]
    assert done["type"] == "code_interpreter_call" and done["code"] == code
    assert done["outputs"] == [{"type": "logs", "logs": "42\n"}]
    final = events[-1]["response"]
    assert final["output"][0] == done
    assert final["output"][1]["content"][0]["text"] == "It is 42."
    assert {e["output_index"] for e in events[2 : 8 + pieces]} == {0}
    assert {e["output_index"] for e in events[8 + pieces : -1]} == {1}
