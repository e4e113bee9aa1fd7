"""OpenAI's Agents SDK (openai-agents) pointed at assistd, through its default Responses model: function
tools, a handoff, a streamed run, on the scripted upstream and on the bundled local model.

The SDK sends the whole history each turn (no ``previous_response_id``): the function calls and outputs come
back as input items, which assistd writes into the next response's run (``engine/response_functions.py``).
"""

from __future__ import annotations

import json
from typing import Any

from agents import (
    Agent,
    ModelSettings,
    Runner,
    RunResult,
    RunResultStreaming,
    function_tool,
    handoff,
)
from agents.models import _openai_shared

from agents_support import on_assistd
from fake_upstream import FakeUpstream, Text, ToolCalls
from server import AssistdServer

LOCAL_MODEL = "smollm2-135m-instruct"


class _Weather:
    """A function tool that records how it was called."""

    def __init__(self, answer: str) -> None:
        self.calls: list[dict[str, Any]] = []
        self.answer = answer

        @function_tool
        def get_weather(city: str) -> str:
            """The current weather in a city.

            Args:
                city: The city's name.
            """
            self.calls.append({"city": city})
            return self.answer

        self.tool = get_weather


def _sent(request: dict[str, Any]) -> list[tuple[str, Any]]:
    return [
        (
            m["role"],
            m.get("content") if not m.get("tool_calls") else [c["function"]["name"] for c in m["tool_calls"]],
        )
        for m in request["messages"]
    ]


def test_agent_calls_a_function_tool(
    server: AssistdServer, fake: FakeUpstream, agents_defaults: None
) -> None:
    weather = _Weather("18C and sunny")
    agent = Agent(
        name="Weather agent", instructions="Use the tool.", model="fake-model", tools=[weather.tool]
    )
    fake.push(
        ToolCalls([{"id": "call_p", "name": "get_weather", "arguments": {"city": "Paris"}}]),
        Text("Paris: 18C and sunny."),
    )
    result: RunResult = on_assistd(server, lambda: Runner.run(agent, "Weather in Paris?"))
    assert weather.calls == [{"city": "Paris"}]
    assert result.final_output == "Paris: 18C and sunny."
    # The tool's schema reached the model; its result came back as a tool message after the call.
    tools = fake.requests[0]["tools"]
    assert [t["function"]["name"] for t in tools] == ["get_weather"]
    assert tools[0]["function"]["parameters"]["properties"]["city"]["type"] == "string"
    assert _sent(fake.requests[1]) == [
        ("system", "Use the tool."),
        ("user", "Weather in Paris?"),
        ("assistant", ["get_weather"]),
        ("tool", "18C and sunny"),
    ]
    assert fake.requests[1]["messages"][3]["tool_call_id"] == "call_p"
    assert [item.type for item in result.new_items] == [
        "tool_call_item",
        "tool_call_output_item",
        "message_output_item",
    ]


def test_handoff_reaches_the_second_agent(
    server: AssistdServer, fake: FakeUpstream, agents_defaults: None
) -> None:
    billing = Agent(name="Billing agent", instructions="You handle billing.", model="fake-model")
    triage = Agent(
        name="Triage agent", instructions="Route the user.", model="fake-model", handoffs=[billing]
    )
    tool_name = handoff(billing).tool_name
    fake.push(ToolCalls([(tool_name, {})]), Text("Billing here: your invoice is paid."))
    result: RunResult = on_assistd(server, lambda: Runner.run(triage, "Is my invoice paid?"))
    assert result.last_agent is billing
    assert result.final_output == "Billing here: your invoice is paid."
    assert [t["function"]["name"] for t in fake.requests[0]["tools"]] == [tool_name]
    # The second agent's turn: its instructions, and the handoff as a call answered.
    second = fake.requests[1]["messages"]
    assert second[0] == {"role": "system", "content": "You handle billing."}
    assert [m["role"] for m in second[1:]] == ["user", "assistant", "tool"]
    assert json.loads(second[3]["content"]) == {"assistant": "Billing agent"}


def test_streamed_run_with_a_function_tool(
    server: AssistdServer, fake: FakeUpstream, agents_defaults: None
) -> None:
    weather = _Weather("-2C")
    agent = Agent(
        name="Weather agent", instructions="Use the tool.", model="fake-model", tools=[weather.tool]
    )
    fake.push(
        ToolCalls(
            [{"id": "call_o", "name": "get_weather", "arguments": {"city": "Oslo"}}], argument_pieces=4
        ),
        Text("Oslo is at -2C.", chunks=["Oslo is ", "at -2C."]),
    )

    async def streamed() -> tuple[RunResultStreaming, list[str], list[str]]:
        result = Runner.run_streamed(agent, "Weather in Oslo?")
        raw: list[str] = []
        items: list[str] = []
        async for event in result.stream_events():
            if event.type == "raw_response_event":
                raw.append(event.data.type)
            elif event.type == "run_item_stream_event":
                items.append(event.item.type)
        return result, raw, items

    result, raw, items = on_assistd(server, streamed)
    assert weather.calls == [{"city": "Oslo"}]
    assert result.final_output == "Oslo is at -2C."
    assert items == ["tool_call_item", "tool_call_output_item", "message_output_item"]
    # Both responses streamed: the call's arguments, then the answer's text.
    assert raw.count("response.completed") == 2
    assert "response.function_call_arguments.delta" in raw
    assert raw.index("response.function_call_arguments.done") < raw.index("response.output_text.delta")


def _forced_local_weather_agent(weather: _Weather) -> Agent[Any]:
    """An agent on the local model whose tool is forced (the local model's grammar then writes a valid call);
    the run stops at its result, since what a 135M model writes after it is not what is tested here."""
    return Agent(
        name="Weather agent",
        instructions="Use the tool.",
        model=LOCAL_MODEL,
        tools=[weather.tool],
        model_settings=ModelSettings(tool_choice="get_weather", temperature=0),
        tool_use_behavior="stop_on_first_tool",
    )


def test_agent_calls_a_function_tool_on_the_local_model(
    local_server: AssistdServer, agents_defaults: None
) -> None:
    weather = _Weather("21C")
    agent = _forced_local_weather_agent(weather)
    result: RunResult = on_assistd(local_server, lambda: Runner.run(agent, "What is the weather in Paris?"))
    assert weather.calls and all(isinstance(call["city"], str) for call in weather.calls)
    assert result.final_output == "21C"
    assert [item.type for item in result.new_items][:2] == ["tool_call_item", "tool_call_output_item"]


def test_agent_chained_by_previous_response_id(
    server: AssistdServer, fake: FakeUpstream, agents_defaults: None
) -> None:
    weather = _Weather("25C")
    agent = Agent(
        name="Weather agent", instructions="Use the tool.", model="fake-model", tools=[weather.tool]
    )
    fake.push(
        ToolCalls([{"id": "call_m", "name": "get_weather", "arguments": {"city": "Madrid"}}]),
        Text("Madrid: 25C."),
    )
    # The SDK sends only the new items, the tool's output, with the previous response's id: the output goes
    # to the run that awaits it.
    result: RunResult = on_assistd(
        server, lambda: Runner.run(agent, "Madrid?", auto_previous_response_id=True)
    )
    assert weather.calls == [{"city": "Madrid"}]
    assert result.final_output == "Madrid: 25C."
    assert result.last_response_id is not None
    assert _sent(fake.requests[1]) == [
        ("system", "Use the tool."),
        ("user", "Madrid?"),
        ("assistant", ["get_weather"]),
        ("tool", "25C"),
    ]


def test_agent_on_a_conversation(server: AssistdServer, fake: FakeUpstream, agents_defaults: None) -> None:
    weather = _Weather("9C")
    agent = Agent(
        name="Weather agent", instructions="Use the tool.", model="fake-model", tools=[weather.tool]
    )
    fake.push(
        ToolCalls([{"id": "call_v", "name": "get_weather", "arguments": {"city": "Vienna"}}]),
        Text("Vienna: 9C."),
    )

    async def on_conversation() -> tuple[RunResult, list[str]]:
        client = _openai_shared.get_default_openai_client()
        assert client is not None
        conversation = await client.conversations.create()
        result = await Runner.run(agent, "Vienna?", conversation_id=conversation.id)
        items = await client.conversations.items.list(conversation.id, order="asc")
        return result, [item.type for item in items.data]

    result, items = on_assistd(server, on_conversation)
    assert weather.calls == [{"city": "Vienna"}]
    assert result.final_output == "Vienna: 9C."
    assert items == ["message", "function_call", "function_call_output", "message"]


def test_handoff_on_the_local_model(local_server: AssistdServer, agents_defaults: None) -> None:
    billing = Agent(
        name="Billing agent", instructions="You handle billing. Answer briefly.", model=LOCAL_MODEL
    )
    tool_name = handoff(billing).tool_name
    # The handoff is forced: a 135M model cannot be relied upon to choose it. What the second agent then
    # writes is the model's; its turn is what is checked.
    triage = Agent(
        name="Triage agent",
        instructions="Route the user.",
        model=LOCAL_MODEL,
        handoffs=[billing],
        model_settings=ModelSettings(tool_choice=tool_name, temperature=0),
    )

    async def run() -> tuple[RunResult, list[str | None]]:
        result = await Runner.run(triage, "Is my invoice paid?")
        client = _openai_shared.get_default_openai_client()
        assert client is not None
        instructions = []
        for raw in result.raw_responses:
            assert raw.response_id is not None
            instructions.append((await client.responses.retrieve(raw.response_id)).instructions)
        return result, instructions

    result, instructions = on_assistd(local_server, run)
    assert result.last_agent is billing
    assert [item.type for item in result.new_items] == [
        "handoff_call_item",
        "handoff_output_item",
        "message_output_item",
    ]
    assert isinstance(result.final_output, str)
    # Two responses: the triage agent's (the handoff call), then the billing agent's, with its instructions.
    assert instructions == ["Route the user.", "You handle billing. Answer briefly."]


def test_streamed_run_with_a_function_tool_on_the_local_model(
    local_server: AssistdServer, agents_defaults: None
) -> None:
    weather = _Weather("4C")
    agent = _forced_local_weather_agent(weather)

    async def streamed() -> tuple[RunResultStreaming, list[str], list[str]]:
        result = Runner.run_streamed(agent, "What is the weather in Oslo?")
        raw: list[str] = []
        items: list[str] = []
        async for event in result.stream_events():
            if event.type == "raw_response_event":
                raw.append(event.data.type)
            elif event.type == "run_item_stream_event":
                items.append(event.item.type)
        return result, raw, items

    result, raw, items = on_assistd(local_server, streamed)
    assert weather.calls and all(isinstance(call["city"], str) for call in weather.calls)
    assert items == ["tool_call_item", "tool_call_output_item"]
    assert result.final_output == "4C"
    # The call was streamed as the model wrote it, and the response ended completed.
    assert raw[0] == "response.created"
    assert "response.function_call_arguments.delta" in raw
    assert raw.index("response.function_call_arguments.done") < raw.index("response.completed")
    assert raw[-1] == "response.completed"
