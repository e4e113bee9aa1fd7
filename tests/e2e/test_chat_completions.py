"""``POST /v1/chat/completions`` with the official SDK, on the scripted upstream and on the bundled local
model: bodies and every streamed chunk validated strictly by the SDK's own types, the parameters passed
through to the model, refusals naming their parameter, and the key's rate limit and tokens per day."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema
import openai
import pytest
from openai import OpenAI
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from conftest import Databases, make_client, start_server
from fake_upstream import Error, FakeUpstream, StreamError, Text, ToolCalls
from server import KEYS, AssistdServer

MODEL = "fake-model"
LOCAL_MODEL = "smollm2-135m-instruct"
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}
PLACE = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
    "required": ["city", "country"],
    "additionalProperties": False,
}
ADMIN_KEY = "sk-admin-chat"


def _strict(data: dict[str, Any]) -> ChatCompletion:
    return ChatCompletion.model_validate(data, strict=True)


def _create(client: OpenAI, **body: Any) -> tuple[ChatCompletion, dict[str, Any], httpx.Headers]:
    """A completion made with the SDK, its raw body validated strictly; (parsed, raw body, headers)."""
    raw = client.chat.completions.with_raw_response.create(**body)
    data = json.loads(raw.http_response.text)
    return _strict(data), data, raw.headers


def _post(server: AssistdServer, body: dict[str, Any], key: str = KEYS[0]) -> httpx.Response:
    with httpx.Client(base_url=server.base_url, timeout=120) as http:
        return http.post("/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"})


def _stream(server: AssistdServer, body: dict[str, Any]) -> list[ChatCompletionChunk]:
    """A streamed completion read as raw SSE: ``data:`` lines only, the last ``[DONE]``, every other one a
    chunk the SDK's type takes strictly, all of one id."""
    with (
        httpx.Client(base_url=server.base_url, timeout=120) as http,
        http.stream(
            "POST",
            "/chat/completions",
            json={**body, "stream": True},
            headers={"Authorization": f"Bearer {KEYS[0]}"},
        ) as answer,
    ):
        assert answer.status_code == 200, answer.read()
        assert answer.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in answer.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines), lines
    assert lines[-1] == "data: [DONE]"
    chunks = [ChatCompletionChunk.model_validate(json.loads(line[6:]), strict=True) for line in lines[:-1]]
    assert len({chunk.id for chunk in chunks}) == 1 and chunks[0].id.startswith("chatcmpl-")
    return chunks


def _error(response: httpx.Response) -> dict[str, Any]:
    error: dict[str, Any] = response.json()["error"]
    return error


def _without_ids(data: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in data.items() if key not in ("id", "created")}


# On the scripted upstream -------------------------------------------------------------------------


def test_completion_passes_options_through_and_answers_with_usage(client: OpenAI, fake: FakeUpstream) -> None:
    fake.push(
        Text("Hello there.", prompt_tokens=12, completion_tokens=3, cached_tokens=2, reasoning_tokens=1)
    )
    messages = [{"role": "developer", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    completion, data, _ = _create(
        client,
        model=MODEL,
        messages=messages,
        temperature=0.5,
        top_p=0.9,
        stop=["END"],
        seed=7,
        max_completion_tokens=50,
        frequency_penalty=0.1,
        presence_penalty=0.2,
        user="someone",
    )
    assert completion.id.startswith("chatcmpl-") and completion.created > 0
    assert _without_ids(data) == {
        "object": "chat.completion",
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Hello there.",
                    "refusal": None,
                    "annotations": [],
                },
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 12,
            "completion_tokens": 3,
            "total_tokens": 15,
            "prompt_tokens_details": {"cached_tokens": 2},
            "completion_tokens_details": {"reasoning_tokens": 1},
        },
        "service_tier": "default",
        "system_fingerprint": None,
    }
    sent = fake.requests[0]
    assert sent["messages"] == messages
    assert {k: sent[k] for k in ("temperature", "top_p", "stop", "seed", "max_completion_tokens")} == {
        "temperature": 0.5,
        "top_p": 0.9,
        "stop": ["END"],
        "seed": 7,
        "max_completion_tokens": 50,
    }
    assert (sent["frequency_penalty"], sent["presence_penalty"]) == (0.1, 0.2)
    # Sent on the SDK's httpx client directly, with the headers its streaming create would send.
    headers = fake.request_headers[0]
    assert headers["user-agent"].startswith("AsyncOpenAI/Python ")
    assert (headers["x-stainless-async"], headers["x-stainless-raw-response"]) == ("async:asyncio", "stream")
    assert (headers["x-stainless-lang"], headers["x-stainless-retry-count"]) == ("python", "0")
    assert headers["content-type"] == "application/json" and headers["authorization"].startswith("Bearer ")
    # The legacy name of the bound, and a stop sequence given as a string; finish_reason "length".
    fake.push(Text("Cut", finish_reason="length"))
    cut, _, _ = _create(
        client, model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=1, stop="x"
    )
    assert cut.choices[0].finish_reason == "length"
    assert (fake.requests[1]["max_completion_tokens"], fake.requests[1]["stop"]) == (1, ["x"])


def test_stream_with_usage_sends_chunks_in_openais_order(
    server: AssistdServer, client: OpenAI, fake: FakeUpstream
) -> None:
    fake.push(Text("One two three", chunks=["One", " two", " three"], prompt_tokens=9, completion_tokens=3))
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Count"}],
        "stream_options": {"include_usage": True},
    }
    chunks = _stream(server, body)
    first, *texts, finish, usage = chunks
    assert first.choices[0].delta.role == "assistant" and first.choices[0].delta.content == ""
    assert [c.choices[0].delta.content for c in texts] == ["One", " two", " three"]
    assert all(c.choices[0].finish_reason is None for c in [first, *texts])
    assert finish.choices[0].finish_reason == "stop" and finish.choices[0].delta.content is None
    # Every chunk names usage, null but on the last, whose choices are empty.
    assert all(c.usage is None and "usage" in c.model_fields_set for c in [first, *texts, finish])
    assert usage.choices == []
    assert usage.usage is not None and (usage.usage.prompt_tokens, usage.usage.completion_tokens) == (9, 3)
    assert usage.usage.total_tokens == 12
    # Without include_usage no chunk names it; the SDK's stream helper puts the completion together.
    fake.push(Text("Hello there", chunks=["Hello", " there"]))
    plain = _stream(server, {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}]})
    assert plain[-1].choices[0].finish_reason == "stop" and all(
        "usage" not in c.model_fields_set for c in plain
    )
    fake.push(Text("Hello again", chunks=["Hello", " again"]))
    with client.chat.completions.stream(model=MODEL, messages=[{"role": "user", "content": "Hi"}]) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].message.content == "Hello again" and final.choices[0].finish_reason == "stop"
    assert fake.requests[-1]["stream"] is True


def test_parallel_tool_calls_and_their_results_pass_through(
    server: AssistdServer, client: OpenAI, fake: FakeUpstream
) -> None:
    fake.push(
        ToolCalls([("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Rome"})], prompt_tokens=20)
    )
    question = {"role": "user", "content": "Weather in Paris and Rome?"}
    completion, data, _ = _create(
        client,
        model=MODEL,
        messages=[question],
        tools=[WEATHER],
        tool_choice="required",
        parallel_tool_calls=True,
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    calls = choice.message.tool_calls or []
    assert [(c.function.name, json.loads(c.function.arguments)) for c in calls] == [  # type: ignore[union-attr]
        ("get_weather", {"city": "Paris"}),
        ("get_weather", {"city": "Rome"}),
    ]
    assert all(c.type == "function" and c.id.startswith("call_") for c in calls)
    sent = fake.requests[0]
    assert (sent["tools"], sent["tool_choice"], sent["parallel_tool_calls"]) == ([WEATHER], "required", True)

    # The calls and their results go back to the model as they were given.
    history = [
        question,
        data["choices"][0]["message"] | {"content": None},
        *[
            {"role": "tool", "tool_call_id": c["id"], "content": "sunny"}
            for c in data["choices"][0]["message"]["tool_calls"]
        ],
    ]
    fake.push(Text("Sunny in both."))
    answer, _, _ = _create(
        client,
        model=MODEL,
        messages=history,
        tools=[WEATHER],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )
    assert answer.choices[0].message.content == "Sunny in both."
    sent = fake.requests[1]
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert sent["messages"][0] == question
    assert sent["messages"][1]["tool_calls"] == data["choices"][0]["message"]["tool_calls"]
    assert sent["messages"][2:] == history[2:]

    # Streamed: each call opens with its id, type and name; its arguments follow in pieces.
    fake.push(ToolCalls([("get_weather", {"city": "Oslo"}), ("get_weather", {"city": "Bergen"})]))
    chunks = _stream(server, {"model": MODEL, "messages": [question], "tools": [WEATHER]})
    deltas = [call for c in chunks if c.choices for call in c.choices[0].delta.tool_calls or []]
    opening = [d for d in deltas if d.id is not None]
    assert [(d.index, d.type, d.function and d.function.name) for d in opening] == [
        (0, "function", "get_weather"),
        (1, "function", "get_weather"),
    ]
    arguments = {
        i: "".join(d.function.arguments or "" for d in deltas if d.index == i and d.function) for i in (0, 1)
    }
    assert [json.loads(arguments[i]) for i in (0, 1)] == [{"city": "Oslo"}, {"city": "Bergen"}]
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    fake.push(ToolCalls([("get_weather", {"city": "Nice"})]))
    with client.chat.completions.stream(model=MODEL, messages=[question], tools=[WEATHER]) as stream:  # type: ignore[list-item]
        final = stream.get_final_completion()
    [call] = final.choices[0].message.tool_calls or []
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Nice"}  # type: ignore[union-attr]


def test_json_schema_response_format_and_logprobs_reach_the_model(client: OpenAI, fake: FakeUpstream) -> None:
    fake.push(Text('{"city":"Paris","country":"France"}', chunks=['{"city":"Paris",', '"country":"France"}']))
    response_format = {
        "type": "json_schema",
        "json_schema": {"name": "place", "schema": PLACE, "strict": True},
    }
    completion, data, _ = _create(
        client,
        model=MODEL,
        messages=[{"role": "user", "content": "A city?"}],
        response_format=response_format,
        logprobs=True,
        top_logprobs=2,
    )
    jsonschema.validate(json.loads(completion.choices[0].message.content or ""), PLACE)
    assert fake.requests[0]["response_format"] == response_format
    assert (fake.requests[0]["logprobs"], fake.requests[0]["top_logprobs"]) == (True, 2)
    tokens = data["choices"][0]["logprobs"]["content"]
    assert [t["token"] for t in tokens] == ['{"city":"Paris",', '"country":"France"}']
    assert all(len(t["top_logprobs"]) == 2 for t in tokens)
    fake.push(Text("{}"))
    _create(
        client,
        model=MODEL,
        messages=[{"role": "user", "content": "JSON"}],
        response_format={"type": "json_object"},
    )
    assert fake.requests[1]["response_format"] == {"type": "json_object"}


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"n": 2}, "n"),
        ({"temperature": 3}, "temperature"),
        ({"top_p": -0.1}, "top_p"),
        ({"max_completion_tokens": 0}, "max_completion_tokens"),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"stream_options": {"include_usage": True}}, "stream_options"),
        ({"tool_choice": "required"}, "tool_choice"),
        (
            {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
            "tool_choice",
        ),
        ({"tools": [{"type": "function", "function": {"name": "bad name!"}}]}, "tools[0].function.name"),
        ({"response_format": {"type": "yaml"}}, "response_format"),
        ({"store": True}, "store"),
        ({"logit_bias": {"50256": -100}}, "logit_bias"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "robot", "content": "Hi"}]}, "messages[0].role"),
        ({"messages": [{"role": "tool", "content": "sunny"}]}, "messages[0].tool_call_id"),
        ({"model": ""}, "model"),
    ],
)
def test_bad_parameters_are_refused_naming_them(
    server: AssistdServer, fake: FakeUpstream, body: dict[str, Any], param: str
) -> None:
    answer = _post(server, {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}]} | body)
    assert answer.status_code == 400, answer.text
    error = _error(answer)
    assert error["type"] == "invalid_request_error" and error["param"] == param, error
    assert fake.requests == []


def test_n_other_than_one_is_refused_by_the_sdk_as_a_bad_request(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}], n=2)
    assert caught.value.param == "n" and "'n' may only be 1" in caught.value.message
    client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}], n=1)


def test_upstream_failures_are_mapped_not_server_errors(server: AssistdServer, fake: FakeUpstream) -> None:
    body = {"model": "no-such-model", "messages": [{"role": "user", "content": "Hi"}]}
    fake.push(Error(404, "The model 'no-such-model' does not exist", code="model_not_found"))
    missing = _post(server, body)
    assert missing.status_code == 404
    assert (_error(missing)["code"], _error(missing)["param"]) == ("model_not_found", "model")
    fake.push(Error(400, "Unsupported parameter: 'seed'."))
    refused = _post(server, body | {"model": MODEL})
    assert refused.status_code == 400 and "Unsupported parameter" in _error(refused)["message"]
    fake.push(*[Error(503)] * 5)
    down = _post(server, body | {"model": MODEL})
    assert down.status_code == 502 and _error(down)["type"] == "server_error", down.text
    assert "sk-upstream-secret" not in down.text
    # Failing before the first chunk, a stream is an ordinary error response too.
    fake.push(Error(404, code="model_not_found"))
    streamed = _post(server, body | {"stream": True})
    assert streamed.status_code == 404 and _error(streamed)["code"] == "model_not_found"
    # After it, the failure is reported in the stream, as OpenAI does, and the SDK raises it.
    fake.push(StreamError(text="Partial"))
    with (
        httpx.Client(base_url=server.base_url, timeout=30) as http,
        http.stream(
            "POST",
            "/chat/completions",
            json=body | {"model": MODEL, "stream": True},
            headers={"Authorization": f"Bearer {KEYS[0]}"},
        ) as answer,
    ):
        lines = [line for line in answer.iter_lines() if line]
    assert answer.status_code == 200
    assert json.loads(lines[1][6:])["choices"][0]["delta"] == {"content": "Partial"}
    last = json.loads(lines[-1][6:])
    assert last["error"]["type"] == "server_error" and "data: [DONE]" not in lines


# Rate limits and tokens per day -------------------------------------------------------------------


@pytest.fixture(scope="module")
def managed(
    tmp_path_factory: pytest.TempPathFactory, databases: Databases, fake: FakeUpstream
) -> Iterator[AssistdServer]:
    srv = start_server(tmp_path_factory, databases, fake, admin_key=ADMIN_KEY)
    yield srv
    srv.stop()


def _new_key(server: AssistdServer, **quotas: int) -> str:
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as admin:
        created = admin.post("/admin/keys", json=quotas)
    assert created.status_code == 200, created.text
    key: str = created.json()["key"]
    return key


@pytest.mark.parametrize("stream", [False, True])
def test_tokens_per_day_count_completions_and_refuse_past_them(
    managed: AssistdServer, fake: FakeUpstream, stream: bool
) -> None:
    key = _new_key(managed, tokens_per_day=20)
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "stream": stream}
    fake.push(Text("A long answer.", prompt_tokens=15, completion_tokens=10))
    with make_client(managed, key) as client:
        raw = client.chat.completions.with_raw_response.create(**body)
        assert (raw.headers["x-ratelimit-limit-tokens"], raw.headers["x-ratelimit-remaining-tokens"]) == (
            "20",
            "20",
        )
        if stream:
            text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)  # type: ignore[union-attr]
            assert text == "A long answer."
        with pytest.raises(openai.RateLimitError) as caught:
            client.chat.completions.create(**body)
    error = caught.value.response.json()["error"]
    assert error["type"] == "tokens" and "Used 25." in error["message"]
    assert caught.value.response.headers["x-ratelimit-remaining-tokens"] == "0"
    assert len(fake.requests) == 1


def test_requests_per_minute_limit_completions(managed: AssistdServer, fake: FakeUpstream) -> None:
    key = _new_key(managed, requests_per_minute=1)
    with make_client(managed, key) as client:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}])
        with pytest.raises(openai.RateLimitError) as caught:
            client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}])
    assert caught.value.response.json()["error"]["type"] == "requests"
    assert len(fake.requests) == 1


# On the bundled local model ------------------------------------------------------------------------


@pytest.fixture
def local(local_server: AssistdServer) -> Iterator[OpenAI]:
    # The first call loads the model, and generation shares two cores with the rest of the suite.
    with OpenAI(base_url=local_server.base_url, api_key=KEYS[0], max_retries=0, timeout=180) as client:
        yield client


def test_local_model_completion_and_stream(local_server: AssistdServer, local: OpenAI) -> None:
    messages = [{"role": "user", "content": "Say hello."}]
    completion, _, _ = _create(
        local, model=LOCAL_MODEL, messages=messages, temperature=0, seed=1, logprobs=True, top_logprobs=1
    )
    choice = completion.choices[0]
    assert choice.message.content and choice.finish_reason in ("stop", "length")
    assert (
        completion.usage is not None
        and completion.usage.prompt_tokens > 0
        and completion.usage.completion_tokens > 0
    )
    # The model's own logprobs, a token each with one alternative, spelling the answer.
    assert choice.logprobs is not None and choice.logprobs.content
    assert "".join(t.token for t in choice.logprobs.content) == choice.message.content
    assert all(len(t.top_logprobs) == 1 for t in choice.logprobs.content)

    chunks = _stream(
        local_server,
        {
            "model": LOCAL_MODEL,
            "messages": messages,
            "temperature": 0,
            "seed": 1,
            "stream_options": {"include_usage": True},
        },
    )
    texts = [c.choices[0].delta.content for c in chunks[1:-2]]
    assert len(texts) > 1 and "".join(t or "" for t in texts) == choice.message.content
    assert chunks[-2].choices[0].finish_reason == choice.finish_reason
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.prompt_tokens == completion.usage.prompt_tokens

    missing = _post(local_server, {"model": "gpt-nothing", "messages": messages})
    assert missing.status_code == 400 and _error(missing)["code"] == "model_not_found"


def test_local_model_calls_tools_by_grammar(local: OpenAI) -> None:
    question = {"role": "user", "content": "What is the weather in Paris?"}
    forced, _, _ = _create(
        local,
        model=LOCAL_MODEL,
        messages=[question],
        tools=[WEATHER],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        temperature=0,
    )
    assert forced.choices[0].finish_reason == "tool_calls"
    calls = forced.choices[0].message.tool_calls or []
    assert calls and all(c.function.name == "get_weather" for c in calls)  # type: ignore[union-attr]
    for call in calls:
        jsonschema.validate(json.loads(call.function.arguments), WEATHER["function"]["parameters"])  # type: ignore[union-attr, index]
    # The results go back to the model, which answers (in text: tool_choice none).
    history = [
        question,
        forced.choices[0].message.model_dump(exclude_none=True, exclude={"annotations"}),
        *[{"role": "tool", "tool_call_id": c.id, "content": "21 C, sunny"} for c in calls],
    ]
    answer, _, _ = _create(
        local, model=LOCAL_MODEL, messages=history, tools=[WEATHER], tool_choice="none", temperature=0
    )
    assert answer.choices[0].message.content and not answer.choices[0].message.tool_calls


def test_local_model_json_schema_is_enforced(local: OpenAI) -> None:
    completion, _, _ = _create(
        local,
        model=LOCAL_MODEL,
        messages=[{"role": "user", "content": "Name a city and its country."}],
        response_format={"type": "json_schema", "json_schema": {"name": "place", "schema": PLACE}},
        max_completion_tokens=256,
        temperature=0,
    )
    jsonschema.validate(json.loads(completion.choices[0].message.content or ""), PLACE)
