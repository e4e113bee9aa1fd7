"""/v1/responses with ``prompt``: an assistant as a reusable prompt (its model, filled instructions, tools
and options), the request's own parameters winning; the refusals name ``prompt.*``."""

from __future__ import annotations

import io
import re
from typing import Any

import openai
import pytest
from openai import OpenAI

from conftest import Databases, make_client, start_server
from fake_upstream import Dynamic, FakeUpstream, Text, ToolCalls
from responses_wire import post, raw_create, text_stream
from samples import WEATHER_TOOL
from server import AssistdServer


def _sent(fake: FakeUpstream) -> list[tuple[str, str]]:
    return [(m["role"], m["content"]) for m in fake.requests[-1]["messages"]]


def test_assistant_as_prompt_fills_its_instructions(client: OpenAI, fake: FakeUpstream) -> None:
    assistant = client.beta.assistants.create(
        model="fake-model",
        instructions="You help {{customer}} with {{ topic }}. Sign as {{customer}}'s helper.",
        temperature=0.3,
        top_p=0.8,
    )
    fake.push("Hello Ada.")
    variables: dict[str, Any] = {"customer": "Ada", "topic": {"type": "input_text", "text": "billing"}}
    response = raw_create(client, prompt={"id": assistant.id, "variables": variables}, input="Hi")
    assert response.status == "completed" and response.output_text == "Hello Ada."
    # The assistant's model, options and filled instructions reach the model, as for a run of it.
    sent = fake.requests[-1]
    assert sent["model"] == "fake-model"
    assert (sent["temperature"], sent["top_p"]) == (0.3, 0.8)
    assert _sent(fake) == [
        ("system", "You help Ada with billing. Sign as Ada's helper."),
        ("user", "Hi"),
    ]
    # The response shows them, and its prompt as asked.
    assert response.model == "fake-model"
    assert response.instructions == "You help Ada with billing. Sign as Ada's helper."
    assert (response.temperature, response.top_p) == (0.3, 0.8)
    assert response.tools == []
    assert response.prompt is not None
    assert response.prompt.model_dump(exclude_none=True) == {"id": assistant.id, "variables": variables}
    assert response.prompt.version is None
    again = client.responses.retrieve(response.id)
    assert again.prompt == response.prompt and again.instructions == response.instructions


def test_request_parameters_win_over_the_prompt(client: OpenAI, fake: FakeUpstream) -> None:
    assistant = client.beta.assistants.create(
        model="fake-model",
        instructions="Assistant rules for {{who}}.",
        temperature=0.3,
        response_format={"type": "json_object"},
        reasoning_effort="low",
    )
    fake.push('{"a": 1}', "Plain.")
    overridden = raw_create(
        client,
        prompt={"id": assistant.id, "variables": {"who": "Bo"}},
        model="fake-model-large",
        instructions="Request rules.",
        temperature=0.9,
        input=[{"role": "developer", "content": "Be brief."}, {"role": "user", "content": "Q"}],
        text={"format": {"type": "text"}},
        reasoning={"effort": "high"},
    )
    sent = fake.requests[-1]
    assert (sent["model"], sent["temperature"], sent["reasoning_effort"]) == ("fake-model-large", 0.9, "high")
    assert "response_format" not in sent
    # The request's instructions replace the assistant's; a developer message follows them, as without a
    # prompt.
    assert _sent(fake) == [("system", "Request rules.\n\nBe brief."), ("user", "Q")]
    assert overridden.model == "fake-model-large" and overridden.instructions == "Request rules."
    assert overridden.text is not None and overridden.text.format.type == "text"
    assert overridden.reasoning is not None and overridden.reasoning.effort == "high"
    # Left out, the assistant's own options apply, and the response shows them.
    kept = raw_create(client, prompt={"id": assistant.id, "variables": {"who": "Bo"}}, input="Q")
    sent = fake.requests[-1]
    assert sent["response_format"] == {"type": "json_object"}
    assert (sent["model"], sent["temperature"], sent["reasoning_effort"]) == ("fake-model", 0.3, "low")
    assert kept.text is not None and kept.text.format.type == "json_object"
    assert kept.reasoning is not None and kept.reasoning.effort == "low"
    assert kept.instructions == "Assistant rules for Bo."


def test_prompt_brings_the_assistants_tools(client: OpenAI, fake: FakeUpstream) -> None:
    store = client.vector_stores.create(name="notes")
    assistant = client.beta.assistants.create(
        model="fake-model",
        instructions="Use your tools.",
        tools=[WEATHER_TOOL, {"type": "file_search", "file_search": {"max_num_results": 5}}],
        tool_resources={"file_search": {"vector_store_ids": [store.id]}},
    )
    fake.push("No tool needed.")
    response = raw_create(client, prompt={"id": assistant.id}, input="Hi")
    assert response.output_text == "No tool needed."
    # The run's tools are the assistant's: the model is offered its function and file_search.
    offered = [tool["function"]["name"] for tool in fake.requests[-1]["tools"]]
    assert offered == [WEATHER_TOOL["function"]["name"], "file_search"]
    # The response shows them as Responses tools (strictly valid: raw_create checked the body).
    shown = [tool.model_dump(exclude_none=True) for tool in response.tools]
    assert shown[0]["type"] == "function" and shown[0]["name"] == WEATHER_TOOL["function"]["name"]
    assert shown[0]["parameters"] == WEATHER_TOOL["function"]["parameters"]
    assert shown[1] == {"type": "file_search", "vector_store_ids": [store.id], "max_num_results": 5}


def test_streamed_response_with_a_prompt(client: OpenAI, fake: FakeUpstream) -> None:
    assistant = client.beta.assistants.create(model="fake-model", instructions="Talk like {{style}}.")
    fake.push("Ahoy.")
    # ``client.responses.stream`` insists on a model; ``create(stream=True)`` does not, as OpenAI's API.
    prompt = {"id": assistant.id, "variables": {"style": "a pirate"}}
    events = list(client.responses.create(prompt=prompt, input="Hi", stream=True))
    assert [event.type for event in events] == text_stream(1)
    final = events[-1].response  # type: ignore[union-attr]
    assert final.output_text == "Ahoy." and final.instructions == "Talk like a pirate."
    assert final.prompt is not None and final.prompt.id == assistant.id
    assert _sent(fake)[0] == ("system", "Talk like a pirate.")


def test_prompt_refusals_name_the_parameter(
    server: AssistdServer, client: OpenAI, other_client: OpenAI, fake: FakeUpstream
) -> None:
    assistant = client.beta.assistants.create(model="fake-model", instructions="Hello {{name}}.")
    theirs = other_client.beta.assistants.create(model="fake-model", instructions="Theirs.")
    image = {"type": "input_image", "image_url": "https://example.com/a.png", "detail": "auto"}
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"id": "asst_missing"}, 404, "prompt.id"),
        # Another key's assistant is not found, as on every other surface.
        ({"id": theirs.id}, 404, "prompt.id"),
        ({"id": assistant.id}, 400, "prompt.variables"),
        ({"id": assistant.id, "variables": {}}, 400, "prompt.variables"),
        ({"id": assistant.id, "variables": {"name": "A", "nmae": "B"}}, 400, "prompt.variables.nmae"),
        ({"id": assistant.id, "variables": {"name": image}}, 400, "prompt.variables.name"),
        ({"id": assistant.id, "variables": {"name": 3}}, 400, "prompt.variables.name"),
        ({"id": assistant.id, "variables": {"name": "A"}, "version": "2"}, 400, "prompt.version"),
        ({"id": assistant.id, "extra": 1}, 400, "prompt.extra"),
        ({"variables": {}}, 400, "prompt.id"),
    ]
    for prompt, status, param in cases:
        answer = post(server, "/responses", {"prompt": prompt, "input": "Hi"})
        assert answer.status_code == status, (prompt, answer.text)
        error = answer.json()["error"]
        assert error["param"] == param, (prompt, error)
        assert error["type"] == "invalid_request_error"
    # Through the SDK too, and the input of a refused request is not kept.
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(prompt={"id": assistant.id, "variables": {"name": image}}, input="Hi")  # type: ignore[typeddict-item]
    assert isinstance(caught.value.body, dict) and "input_image" in caught.value.body["message"]
    assert fake.requests == []


def test_prompt_searches_the_assistants_vector_store(client: OpenAI, fake: FakeUpstream) -> None:
    # The run is the assistant's: file_search reads the assistant's tool resources, which the response's
    # new thread does not have.
    fact = "The harbour master of Port Wren is Ilse Marrow."
    store = client.vector_stores.create(name="harbour")
    file = client.vector_stores.files.upload_and_poll(
        vector_store_id=store.id, file=("wren.md", io.BytesIO(fact.encode())), poll_interval_ms=50
    )
    assert file.status == "completed"
    assistant = client.beta.assistants.create(
        model="fake-model",
        instructions="Answer from the files about {{place}}.",
        tools=[{"type": "file_search"}],
        tool_resources={"file_search": {"vector_store_ids": [store.id]}},
    )

    def cite(body: dict[str, Any]) -> Text:
        shown = "\n".join(str(m.get("content") or "") for m in body["messages"] if m.get("role") == "tool")
        number = re.search(r"\[(\d+)\] wren\.md", shown)
        assert number is not None, shown
        return Text(f"Ilse Marrow [{number.group(1)}].")

    fake.push(ToolCalls([("file_search", {"queries": ["Port Wren harbour master"]})]), Dynamic(cite))
    response = raw_create(
        client, prompt={"id": assistant.id, "variables": {"place": "Port Wren"}}, input="Who is it?"
    )
    assert response.status == "completed", response.error
    assert fake.requests[0]["messages"][0] == {
        "role": "system",
        "content": "Answer from the files about Port Wren.",
    }
    message = [item for item in response.output if item.type == "message"][-1]
    (part,) = message.content  # type: ignore[union-attr]
    assert part.type == "output_text" and part.text.startswith("Ilse Marrow")
    assert [(a.type, a.file_id) for a in part.annotations] == [("file_citation", file.id)]  # type: ignore[union-attr]


def test_prompt_function_calls_followed_up_by_conversation(client: OpenAI, fake: FakeUpstream) -> None:
    assistant = client.beta.assistants.create(
        model="fake-model", instructions="Use your tools.", tools=[WEATHER_TOOL]
    )
    fake.push(
        ToolCalls([{"id": "call_b", "name": "get_weather", "arguments": {"city": "Bern"}}]),
        Text("Bern: 12C."),
    )
    conversation = client.conversations.create().id
    first = raw_create(client, prompt={"id": assistant.id}, input="Bern?", conversation=conversation)
    assert [item.type for item in first.output] == ["function_call"]
    # Its run is the assistant's, and yet a response's: the conversation alone finds it for the outputs.
    waiting = client.beta.threads.runs.list(conversation).data[0]
    assert (waiting.assistant_id, waiting.status) == (assistant.id, "requires_action")
    second = raw_create(
        client,
        prompt={"id": assistant.id},
        conversation=conversation,
        input=[{"type": "function_call_output", "call_id": "call_b", "output": "12C"}],
    )
    assert second.status == "completed" and second.output_text == "Bern: 12C."
    runs = client.beta.threads.runs.list(conversation).data
    assert [(run.id, run.status) for run in runs] == [(waiting.id, "completed")]
    assert [m["role"] for m in fake.requests[1]["messages"]] == ["system", "user", "assistant", "tool"]
    # The follow-up's prompt brought the assistant's tools again: the run still offers them.
    assert [tool["function"]["name"] for tool in fake.requests[1]["tools"]] == ["get_weather"]


def test_assistants_run_waiting_on_a_conversation_is_left_alone(client: OpenAI, fake: FakeUpstream) -> None:
    assistant = client.beta.assistants.create(model="fake-model", tools=[WEATHER_TOOL])
    fake.push(ToolCalls([{"id": "call_z", "name": "get_weather", "arguments": {"city": "Zug"}}]))
    conversation = client.conversations.create(items=[{"role": "user", "content": "Zug?"}]).id
    run = client.beta.threads.runs.create_and_poll(thread_id=conversation, assistant_id=assistant.id)
    assert run.status == "requires_action"
    # Not a response's run: a response's function output does not go to it.
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(
            model="fake-model",
            conversation=conversation,
            input=[{"type": "function_call_output", "call_id": "call_z", "output": "8C"}],
        )
    assert refused.value.param == "input[0].call_id"
    assert client.beta.threads.runs.retrieve(run.id, thread_id=conversation).status == "requires_action"


def test_prompt_with_function_items_sends_them_to_the_model(client: OpenAI, fake: FakeUpstream) -> None:
    """A prompt's run (it has its assistant's id) whose input gives function calls and outputs back: they
    are its first steps, and its first turn reads them into the context."""
    assistant = client.beta.assistants.create(
        model="fake-model", instructions="Weather desk.", tools=[WEATHER_TOOL]
    )
    fake.push("Sunny, it said.")
    history: list[dict[str, Any]] = [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "type": "function_call",
            "call_id": "call_p",
            "name": "get_weather",
            "arguments": '{"city": "Paris"}',
        },
        {"type": "function_call_output", "call_id": "call_p", "output": "sunny"},
    ]
    response = raw_create(client, prompt={"id": assistant.id}, input=history)
    assert response.status == "completed" and response.output_text == "Sunny, it said."
    sent = fake.requests[-1]["messages"]
    assert [(m["role"], m.get("tool_call_id")) for m in sent] == [
        ("system", None),
        ("user", None),
        ("assistant", None),
        ("tool", "call_p"),
    ]
    assert sent[2]["tool_calls"][0]["id"] == "call_p" and sent[3]["content"] == "sunny"


def test_prompt_run_started_later_still_sends_its_function_items(
    tmp_path_factory: pytest.TempPathFactory, databases: Databases, fake: FakeUpstream
) -> None:
    """The same prompt's run, queued with no free slot (one worker, held by a slow run): it starts when the
    slot frees, not in the transaction that made it, and its first turn still reads its function items."""
    server = start_server(tmp_path_factory, databases, fake, workers="1")
    try:
        with make_client(server) as client:
            assistant = client.beta.assistants.create(
                model="fake-model", instructions="Weather desk.", tools=[WEATHER_TOOL]
            )
            fake.push(Text("Slow.", delay_s=1.0), "Sunny, it said.")
            thread = client.beta.threads.create(messages=[{"role": "user", "content": "Hold the slot."}])
            holding = client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
            fake.wait_for_requests(1)
            history: list[dict[str, Any]] = [
                {"role": "user", "content": "Weather in Paris?"},
                {"type": "function_call", "call_id": "call_q", "name": "get_weather", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "call_q", "output": "sunny"},
            ]
            response = raw_create(client, prompt={"id": assistant.id}, input=history)
            assert response.status == "completed" and response.output_text == "Sunny, it said."
            # It waited for the slot: the holding run had ended before its model call.
            held = client.beta.threads.runs.retrieve(holding.id, thread_id=thread.id)
            assert held.status == "completed" and held.completed_at is not None
            assert fake.request_times[-1] - fake.request_times[-2] >= 0.9
            sent = fake.requests[-1]["messages"]
            assert [(m["role"], m.get("tool_call_id")) for m in sent] == [
                ("system", None),
                ("user", None),
                ("assistant", None),
                ("tool", "call_q"),
            ]
            assert sent[2]["tool_calls"][0]["id"] == "call_q" and sent[3]["content"] == "sunny"
    finally:
        server.stop()
