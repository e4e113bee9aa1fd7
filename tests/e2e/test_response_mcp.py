"""MCP tools in /v1/responses, executed by assistd against a real MCP server (``tests/mcp_server.py``, the
``mcp`` package's ``MCPServer`` over Streamable HTTP and SSE on loopback ports the allow-list names): the
tools listed and called, a failing tool, a host the allow-list refuses, approvals (with a function call in
the same turn too), the stream's events, the headers never kept in clear, a stateless history's listing kept,
``tool_choice`` naming an MCP tool, ``input_tokens`` counting listed tools, the connection pinned to the
address checked, and the Agents SDK's ``HostedMCPTool``. Bodies and events are validated with
the SDK's types (strictly) and OpenAI's description."""

from __future__ import annotations

import asyncio
import json
import socket
import sqlite3
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from openai import OpenAI
from openai.types.conversations import ConversationItem
from openai.types.responses import Response
from openai.types.responses.response_output_item import McpApprovalRequest, McpCall, McpListTools
from pydantic import TypeAdapter

from agents_support import on_assistd
from assistd.engine.context import estimate_tokens
from conftest import Databases, make_client, start_server
from fake_upstream import Dynamic, FakeUpstream, Text, ToolCalls
from mcp_server import McpTestServer
from responses_wire import EVENTS, message_item, raw_create, spec_check, squeeze, stream_frames
from server import AssistdServer

SECRET = "Bearer sk-mcp-secret-4242xyz"
ITEM: TypeAdapter[ConversationItem] = TypeAdapter(ConversationItem)


@pytest.fixture(scope="module")
def mcp_server() -> Iterator[McpTestServer]:
    started = McpTestServer().start()
    yield started
    started.stop()


@pytest.fixture(scope="module")
def mcp_assistd(
    tmp_path_factory: pytest.TempPathFactory,
    databases: Databases,
    fake: FakeUpstream,
    mcp_server: McpTestServer,
) -> Iterator[AssistdServer]:
    # The test server's loopback ports are listed; ``localhost`` (the same server) is not.
    hosts = f"127.0.0.1:{mcp_server.port},127.0.0.1:{mcp_server.sse_port}"
    srv = start_server(tmp_path_factory, databases, fake, mcp_allowed_hosts=hosts, mcp_timeout_seconds="10")
    yield srv
    srv.stop()


@pytest.fixture
def mcp_client(mcp_assistd: AssistdServer) -> Iterator[OpenAI]:
    with make_client(mcp_assistd) as c:
        yield c


def _tool(url: str, **extra: Any) -> dict[str, Any]:
    return {"type": "mcp", "server_label": "calc", "server_url": url, "require_approval": "never", **extra}


def _tool_messages(body: dict[str, Any]) -> list[str]:
    return [str(m.get("content")) for m in body["messages"] if m.get("role") == "tool"]


def test_mcp_tool_listed_and_called_then_listing_cached(
    mcp_client: OpenAI, fake: FakeUpstream, mcp_server: McpTestServer
) -> None:
    tool = _tool(mcp_server.url, allowed_tools=["add", "weather"])
    fake.push(ToolCalls([("add", {"a": 2, "b": 3})]), Text("It is 5."))
    response = raw_create(mcp_client, model="fake-model", input="What is 2 + 3?", tools=[tool])
    assert response.status == "completed", response.error
    assert [item.type for item in response.output] == ["mcp_list_tools", "mcp_call", "message"]
    listing, call = response.output[0], response.output[1]
    assert isinstance(listing, McpListTools) and isinstance(call, McpCall)
    assert listing.server_label == "calc" and listing.error is None
    assert [t.name for t in listing.tools] == ["add", "weather"]  # allowed_tools filters the listing
    assert listing.tools[0].input_schema["required"] == ["a", "b"]  # type: ignore[index]
    assert (call.server_label, call.name, json.loads(call.arguments)) == ("calc", "add", {"a": 2, "b": 3})
    assert (call.output, call.error, call.status) == ("5.0", None, "completed")
    assert listing.id.startswith("mcpl_") and call.id.startswith("mcp_")
    # The model was offered the allowed tools as functions, and got the call's output.
    first, second = fake.requests[-2:]
    assert [t["function"]["name"] for t in first["tools"]] == ["add", "weather"]
    assert _tool_messages(second) == ["5.0"]
    # The tool is echoed as given (``headers`` would show their names only).
    assert response.tools[0].type == "mcp" and response.tools[0].server_url == mcp_server.url  # type: ignore[union-attr]

    # A follow-up in the chain: the server's listing is in the chain already, so it is not listed again.
    # Its input tokens count the listed tools' definitions, as the create sends them.
    body = {"model": "fake-model", "input": "And Oslo?", "tools": [tool], "previous_response_id": response.id}
    counted = mcp_client.responses.input_tokens.count(**body).input_tokens  # type: ignore[arg-type]
    fake.push(ToolCalls([("weather", {"city": "Oslo"})]), Text("Sunny."))
    follow = raw_create(mcp_client, **body)
    assert [item.type for item in follow.output] == ["mcp_call", "message"]
    sent = fake.requests[-2]
    tools_json = json.dumps(sent["tools"], ensure_ascii=False)
    assert counted == estimate_tokens([*sent["messages"], {"role": "system", "content": tools_json}])
    assert follow.output[0].output == "Sunny in Oslo, 21 degrees."  # type: ignore[union-attr]

    # A stateless history sent back whole (as the Agents SDK sends it): the MCP call the server ran reaches
    # the model as its call and output.
    fake.push(Text("Still 5."))
    history = [
        {"role": "user", "content": "What is 2 + 3?"},
        *(item.model_dump(mode="json", exclude_none=True) for item in response.output),
        {"role": "user", "content": "Sure?"},
    ]
    again = raw_create(mcp_client, model="fake-model", input=history, tools=[tool], store=False)
    assert again.output_text == "Still 5."
    assert _tool_messages(fake.requests[-1]) == ["5.0"]
    # Its mcp_list_tools item is kept as the server's listing (as OpenAI does): not listed again, and the
    # model offered the tools it names.
    assert [item.type for item in again.output] == ["message"]
    assert [t["function"]["name"] for t in fake.requests[-1]["tools"]] == ["add", "weather"]


def test_mcp_stream_events_in_order(
    mcp_assistd: AssistdServer, fake: FakeUpstream, mcp_server: McpTestServer
) -> None:
    # Text before the call in the same turn: its message is done before the call's item is added.
    fake.push(ToolCalls([("add", {"a": 1, "b": 1})], text="Adding."), Text("Two."))
    body = {"model": "fake-model", "input": "1 + 1?", "tools": [_tool(mcp_server.url)], "stream": True}
    frames = stream_frames(mcp_assistd, body)
    for number, (name, data) in enumerate(frames):
        EVENTS.validate_python(data)
        assert data["type"] == name and data["sequence_number"] == number
    assert squeeze([name for name, _ in frames]) == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.mcp_list_tools.in_progress",
        "response.mcp_list_tools.completed",
        "response.output_item.done",
        *message_item(),
        "response.output_item.added",
        "response.mcp_call.in_progress",
        "response.mcp_call_arguments.delta",
        "response.mcp_call_arguments.done",
        "response.mcp_call.completed",
        "response.output_item.done",
        *message_item(),
        "response.completed",
    ]
    deltas = "".join(d["delta"] for n, d in frames if n == "response.mcp_call_arguments.delta")
    done = next(d for n, d in frames if n == "response.mcp_call_arguments.done")
    assert json.loads(deltas) == json.loads(done["arguments"]) == {"a": 1, "b": 1}
    final = frames[-1][1]["response"]
    spec_check(final, "Response")
    items = [d["item"] for n, d in frames if n == "response.output_item.done"]
    assert items == final["output"]
    assert [item["type"] for item in items] == ["mcp_list_tools", "message", "mcp_call", "message"]
    added = [d["output_index"] for n, d in frames if n == "response.output_item.added"]
    assert added == [0, 1, 2, 3]


def test_mcp_tool_that_fails_gives_its_error_to_the_model(
    mcp_client: OpenAI, fake: FakeUpstream, mcp_server: McpTestServer
) -> None:
    def answer(body: dict[str, Any]) -> Text:
        return Text("It failed: " + _tool_messages(body)[0])

    fake.push(ToolCalls([("explode", {"reason": "on purpose"})]), Dynamic(answer))
    conversation = mcp_client.conversations.create()
    response = raw_create(
        mcp_client,
        model="fake-model",
        input="Blow up.",
        tools=[_tool(mcp_server.sse_url)],
        conversation=conversation.id,
    )
    assert [item.type for item in response.output] == ["mcp_list_tools", "mcp_call", "message"]
    call = response.output[1]
    assert isinstance(call, McpCall)
    assert call.status == "failed" and call.output is None
    assert call.error is not None and call.error.type == "mcp_tool_execution_error"
    assert "boom: on purpose" in json.dumps(call.error.content)
    # Over SSE too (the URL ends in /sse), and the model saw the error and went on.
    assert "boom: on purpose" in response.output_text
    # The conversation shows the same items after the question (validated by the SDK's ConversationItem).
    raw = mcp_client.conversations.items.with_raw_response.list(conversation.id, order="asc")
    items = [ITEM.validate_python(item) for item in json.loads(raw.http_response.text)["data"]]
    assert [item.type for item in items] == ["message", "mcp_list_tools", "mcp_call", "message"]
    assert items[2].model_dump() == call.model_dump()


def test_mcp_host_refused_by_the_allow_list(
    mcp_client: OpenAI, mcp_assistd: AssistdServer, fake: FakeUpstream, mcp_server: McpTestServer
) -> None:
    fake.push(Text("I have no tools."))
    refused = mcp_server.url.replace("127.0.0.1", "localhost")
    response = raw_create(mcp_client, model="fake-model", input="2 + 2?", tools=[_tool(refused)])
    assert response.status == "completed"
    assert [item.type for item in response.output] == ["mcp_list_tools", "message"]
    listing = response.output[0]
    assert isinstance(listing, McpListTools) and listing.tools == []
    assert listing.error is not None and "ASSISTD_MCP_ALLOWED_HOSTS" in listing.error
    assert "non-public address" in listing.error
    assert "tools" not in fake.requests[-1] or not fake.requests[-1]["tools"]

    # Streamed: the listing fails in its events, and the answer follows.
    fake.push(Text("None."))
    body = {"model": "fake-model", "input": "2 + 2?", "tools": [_tool(refused)], "stream": True}
    frames = stream_frames(mcp_assistd, body)
    for _, data in frames:
        EVENTS.validate_python(data)
    assert [name for name, _ in frames][2:6] == [
        "response.output_item.added",
        "response.mcp_list_tools.in_progress",
        "response.mcp_list_tools.failed",
        "response.output_item.done",
    ]


def test_mcp_approval_requested_then_granted_or_denied(
    mcp_client: OpenAI, mcp_assistd: AssistdServer, fake: FakeUpstream, mcp_server: McpTestServer
) -> None:
    tool = {"type": "mcp", "server_label": "calc", "server_url": mcp_server.url}  # approval: "always"
    for approve in (True, False):
        fake.push(ToolCalls([("add", {"a": 20, "b": 22})]))
        if approve:
            asked = raw_create(mcp_client, model="fake-model", input="20 + 22?", tools=[tool])
        else:
            # Streamed: the request is an item added and done once the model's turn has ended.
            body = {"model": "fake-model", "input": "20 + 22?", "tools": [tool], "stream": True}
            frames = stream_frames(mcp_assistd, body)
            for _, data in frames:
                EVENTS.validate_python(data)
            assert [name for name, _ in frames][6:] == [
                "response.output_item.added",
                "response.output_item.done",
                "response.completed",
            ]
            asked = Response.model_validate(frames[-1][1]["response"])
        assert asked.status == "completed"
        assert [item.type for item in asked.output] == ["mcp_list_tools", "mcp_approval_request"]
        request = asked.output[1]
        assert isinstance(request, McpApprovalRequest) and request.id.startswith("mcpr_")
        if approve:
            # An answer to no approval request is refused, naming it.
            wrong = {"type": "mcp_approval_response", "approval_request_id": "mcpr_no_0", "approve": True}
            with pytest.raises(openai.BadRequestError) as refused:
                mcp_client.responses.create(
                    model="fake-model", input=[wrong], tools=[tool], previous_response_id=asked.id
                )
            assert refused.value.body["param"] == "input[0].approval_request_id"  # type: ignore[index]
        assert (request.name, json.loads(request.arguments)) == ("add", {"a": 20, "b": 22})

        fake.push(Dynamic(lambda body: Text("Told: " + _tool_messages(body)[0])))
        answer = {"type": "mcp_approval_response", "approval_request_id": request.id, "approve": approve}
        follow = raw_create(
            mcp_client, model="fake-model", input=[answer], tools=[tool], previous_response_id=asked.id
        )
        assert [item.type for item in follow.output] == ["mcp_call", "message"]
        call = follow.output[0]
        assert isinstance(call, McpCall) and call.approval_request_id == request.id
        if approve:
            assert call.output == "42.0" and follow.output_text == "Told: 42.0"
        else:
            assert call.output is None and call.status == "failed"
            assert "did not approve" in follow.output_text


def _database_text(url: str) -> str:
    """Every row of every table of the server's database, as text."""
    if url.startswith("sqlite"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as db:
            tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            return "\n".join(str(db.execute(f'SELECT * FROM "{t}"').fetchall()) for t in tables)

    async def dump() -> str:
        import asyncpg

        conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            tables = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            rows = [await conn.fetch(f'SELECT * FROM "{t["tablename"]}"') for t in tables]
            return "\n".join(str([dict(r) for r in table]) for table in rows)
        finally:
            await conn.close()

    return asyncio.run(dump())


def test_mcp_headers_reach_the_server_and_are_never_kept_in_clear(
    mcp_client: OpenAI, mcp_assistd: AssistdServer, fake: FakeUpstream, mcp_server: McpTestServer
) -> None:
    tool = _tool(mcp_server.url, headers={"Authorization": SECRET}, allowed_tools=["authorization_seen"])
    fake.push(ToolCalls([("authorization_seen", {})]), Text("Checked."))
    response = raw_create(mcp_client, model="fake-model", input="Who am I?", tools=[tool], background=True)
    while response.status in ("queued", "in_progress"):
        response = mcp_client.responses.retrieve(response.id)
    # The server got the header (it says how long it was and how it ended, not what it was).
    assert response.output[1].output == f"{len(SECRET)} characters ending '{SECRET[-4:]}'"  # type: ignore[union-attr]
    assert response.tools[0].headers == {"Authorization": "<redacted>"}  # type: ignore[union-attr]
    raw = mcp_client.responses.with_raw_response.retrieve(response.id).http_response.text
    Response.model_validate(json.loads(raw))
    for where in (raw, _database_text(mcp_assistd.database_url), mcp_assistd.log()):
        assert SECRET not in where and "sk-mcp-secret" not in where


def test_agents_sdk_hosted_mcp_tool(
    mcp_assistd: AssistdServer, fake: FakeUpstream, mcp_server: McpTestServer, agents_defaults: None
) -> None:
    from agents import Agent, HostedMCPTool, Runner
    from agents.tool import MCPToolApprovalFunctionResult, MCPToolApprovalRequest

    asked: list[str] = []

    def approve(request: MCPToolApprovalRequest) -> MCPToolApprovalFunctionResult:
        asked.append(request.data.name)
        return {"approve": True}

    tool = HostedMCPTool(
        tool_config={"type": "mcp", "server_label": "calc", "server_url": mcp_server.url},
        on_approval_request=approve,
    )
    agent = Agent(name="Calculator", instructions="Use the tools.", model="fake-model", tools=[tool])
    fake.push(ToolCalls([("add", {"a": 4, "b": 5})]), Text("4 + 5 = 9."))
    result = on_assistd(mcp_assistd, lambda: Runner.run(agent, "What is 4 + 5?"))
    assert result.final_output == "4 + 5 = 9."
    # The SDK asked for the approval, sent it back, and assistd ran the call on the server.
    assert asked == ["add"]
    assert _tool_messages(fake.requests[-1]) == ["9.0"]
    kinds = [item.type for item in result.new_items]
    assert kinds[0] == "mcp_list_tools_item" and kinds[-1] == "message_output_item"
    assert "mcp_approval_request_item" in kinds


def test_mcp_approval_and_function_call_in_one_turn(
    mcp_client: OpenAI, fake: FakeUpstream, mcp_server: McpTestServer
) -> None:
    # A client function and an MCP tool that needs approval, called in the same turn: the response shows
    # both (as OpenAI's does), and the follow-up answers both at once.
    tools = [
        {"type": "mcp", "server_label": "calc", "server_url": mcp_server.url, "allowed_tools": ["add"]},
        {"type": "function", "name": "clock", "parameters": {"type": "object", "properties": {}}},
    ]
    fake.push(ToolCalls([("clock", {}), ("add", {"a": 1, "b": 2})]))
    asked = raw_create(mcp_client, model="fake-model", input="Time, and 1 + 2?", tools=tools)
    assert asked.status == "completed", asked.error
    assert [item.type for item in asked.output] == ["mcp_list_tools", "function_call", "mcp_approval_request"]
    function, request = asked.output[1], asked.output[2]
    assert function.type == "function_call" and request.type == "mcp_approval_request"

    def answer(body: dict[str, Any]) -> Text:
        return Text(" | ".join(sorted(_tool_messages(body))))

    fake.push(Dynamic(answer))
    follow = raw_create(
        mcp_client,
        model="fake-model",
        input=[
            {"type": "function_call_output", "call_id": function.call_id, "output": "noon"},
            {"type": "mcp_approval_response", "approval_request_id": request.id, "approve": True},
        ],
        tools=tools,
        previous_response_id=asked.id,
    )
    assert follow.status == "completed", follow.error
    assert [item.type for item in follow.output] == ["mcp_call", "message"]
    call = follow.output[0]
    assert isinstance(call, McpCall) and call.approval_request_id == request.id and call.output == "3.0"
    assert follow.output_text == "3.0 | noon"

    # The same answers in a stateless history sent back whole (the Agents SDK's way).
    fake.push(Dynamic(answer))
    history = [
        {"role": "user", "content": "Time, and 1 + 2?"},
        *(item.model_dump(mode="json", exclude_none=True) for item in asked.output),
        {"type": "function_call_output", "call_id": function.call_id, "output": "one"},
        {"type": "mcp_approval_response", "approval_request_id": request.id, "approve": True},
    ]
    again = raw_create(mcp_client, model="fake-model", input=history, tools=tools, store=False)
    assert [item.type for item in again.output] == ["mcp_call", "message"]
    assert again.output_text == "3.0 | one"


def test_mcp_connection_goes_to_the_address_checked(
    mcp_server: McpTestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # DNS rebinding: the name answers the checked address first, then another (where nothing listens). The
    # listing and the call connect to the first, with the name kept in the Host header.
    from assistd.tools import mcp

    url = mcp_server.url.replace("127.0.0.1", "localhost")
    answers: list[str] = []

    async def scenario() -> tuple[list[mcp.McpTool], mcp.McpCallResult]:
        loop = asyncio.get_running_loop()

        async def resolve(host: Any, port: Any, **kwargs: Any) -> list[Any]:
            answers.append(str(host))
            address = "127.0.0.1" if len(answers) == 1 else "127.0.0.2"
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, int(port)))]

        monkeypatch.setattr(loop, "getaddrinfo", resolve)
        address = await mcp.check_host(url, [f"localhost:{mcp_server.port}"])
        assert address == "127.0.0.1"
        tools = await mcp.list_tools(url, {}, 10, address)
        called = await mcp.call_tool(url, {}, "add", '{"a": 1, "b": 1}', 10, address)
        # The name resolved again answers elsewhere: a connection to it would fail.
        refused = await mcp.call_tool(
            url, {}, "add", '{"a": 1, "b": 1}', 10, (await resolve("localhost", 0))[0][4][0]
        )
        assert refused.error is not None and "Could not reach" in refused.error["message"]
        return tools, called

    tools, called = asyncio.run(scenario())
    assert answers == ["localhost", "localhost"]  # resolved once for the check, once by the test itself
    assert "add" in [tool.name for tool in tools]
    assert (called.output, called.error) == ("2.0", None)


def test_mcp_tool_choice_forces_the_call(
    mcp_client: OpenAI, fake: FakeUpstream, mcp_server: McpTestServer
) -> None:
    tool = _tool(mcp_server.url)
    choice = {"type": "mcp", "server_label": "calc", "name": "weather"}
    fake.push(ToolCalls([("weather", {"city": "Rome"})]), Text("Sunny."))
    response = raw_create(mcp_client, model="fake-model", input="Rome?", tools=[tool], tool_choice=choice)
    assert [item.type for item in response.output] == ["mcp_list_tools", "mcp_call", "message"]
    assert response.tool_choice.model_dump() == choice  # the SDK's ToolChoiceMcp
    first, second = fake.requests[-2:]
    assert first["tool_choice"] == {"type": "function", "function": {"name": "weather"}}
    assert second.get("tool_choice") in (None, "none")  # forced once: then the model answers
    # A server the tools do not name is refused, naming tool_choice.
    with pytest.raises(openai.BadRequestError) as refused:
        mcp_client.responses.create(
            model="fake-model",
            input="Rome?",
            tools=[tool],
            tool_choice={"type": "mcp", "server_label": "other", "name": "weather"},
        )
    assert refused.value.body["param"] == "tool_choice"  # type: ignore[index]
