"""The scripted fake upstream, driven with the official ``openai`` SDK over real HTTP."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionFunctionToolParam, ChatCompletionMessageParam

_TESTS_DIR = str(Path(__file__).resolve().parents[1])
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)

import fake_upstream  # noqa: E402
from fake_upstream import (  # noqa: E402
    DEFAULT_TEXT,
    Drop,
    Dynamic,
    Echo,
    Error,
    FakeUpstream,
    Hang,
    Raw,
    Stall,
    StreamError,
    Text,
    ToolCalls,
)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeUpstream]:
    server = FakeUpstream(models=["fake-model", "fake-model-2"]).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def upstream(fake: FakeUpstream) -> Iterator[FakeUpstream]:
    fake.reset()
    fake.instant = False
    yield fake
    fake.reset()


@pytest.fixture
def client(upstream: FakeUpstream) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=upstream.base_url, api_key="sk-test", max_retries=0, timeout=5.0) as c:
        yield c


USER: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Hi!"}]


def test_streaming_text_with_usage(upstream: FakeUpstream, client: openai.OpenAI) -> None:
    upstream.push(Text("The quick brown fox", prompt_tokens=7, completion_tokens=4))
    stream = client.chat.completions.create(
        model="fake-model", messages=USER, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    content = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert "".join(content) == "The quick brown fox"
    assert len(content) == 4
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.object == "chat.completion.chunk" and c.model == "fake-model" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens, last.usage.total_tokens) == (7, 4, 11)


def test_streaming_without_usage_and_explicit_chunks(upstream: FakeUpstream, client: openai.OpenAI) -> None:
    upstream.push(Text("abcdef", chunks=["ab", "cd", "ef"], chunk_delay_s=0.01))
    chunks = list(client.chat.completions.create(model="fake-model", messages=USER, stream=True))
    pieces = [c.choices[0].delta.content for c in chunks if c.choices[0].delta.content]
    assert pieces == ["ab", "cd", "ef"]
    assert all(c.usage is None for c in chunks)


def test_default_reply_and_instant_mode(upstream: FakeUpstream, client: openai.OpenAI) -> None:
    upstream.instant = True
    upstream.push(Text("slow", delay_s=30, chunk_delay_s=30))  # delays ignored when instant
    started = time.monotonic()
    chunks = list(client.chat.completions.create(model="fake-model", messages=USER, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "slow"
    assert time.monotonic() - started < 2
    reply = client.chat.completions.create(model="fake-model", messages=USER)
    assert reply.choices[0].message.content == DEFAULT_TEXT


def test_tool_calls_streamed_and_reassembled(upstream: FakeUpstream, client: openai.OpenAI) -> None:
    upstream.push(
        ToolCalls(
            [
                ("get_weather", '{"city": "Paris", "unit": "celsius"}'),
                {"name": "lookup", "arguments": {"q": "x"}, "id": "call_fixed"},
            ],
            prompt_tokens=3,
        )
    )
    tools: list[ChatCompletionFunctionToolParam] = [
        {"type": "function", "function": {"name": n, "parameters": {"type": "object"}}}
        for n in ("get_weather", "lookup")
    ]
    raw = list(
        client.chat.completions.create(
            model="fake-model",
            messages=USER,
            tools=tools,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    arg_deltas = [
        tc.function.arguments
        for c in raw
        if c.choices
        for tc in c.choices[0].delta.tool_calls or []
        if tc.function and tc.function.arguments
    ]
    assert len(arg_deltas) >= 4  # arguments arrive in several pieces
    assert raw[-1].usage is not None and raw[-1].usage.prompt_tokens == 3

    upstream.push(ToolCalls([("get_weather", '{"city": "Paris"}'), ("lookup", "{}")]))
    with client.chat.completions.stream(model="fake-model", messages=USER, tools=tools) as stream:
        for _ in stream:
            pass
        final = stream.get_final_completion()
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls or []
    assert [c.function.name for c in calls] == ["get_weather", "lookup"]
    assert json.loads(calls[0].function.arguments) == {"city": "Paris"}
    assert all(c.id.startswith("call_") for c in calls)
    assert len({c.id for c in calls}) == 2


def test_non_streaming(upstream: FakeUpstream, client: openai.OpenAI) -> None:
    upstream.push(Text("Plain answer", prompt_tokens=5, completion_tokens=2))
    upstream.push(ToolCalls([("f", '{"a": 1}')], text="Calling f"))
    reply = client.chat.completions.create(model="fake-model-2", messages=USER)
    assert reply.object == "chat.completion"
    assert reply.model == "fake-model-2"
    assert reply.choices[0].message.content == "Plain answer"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None and reply.usage.total_tokens == 7
    reply = client.chat.completions.create(model="fake-model", messages=USER)
    message = reply.choices[0].message
    assert message.content == "Calling f"
    assert message.tool_calls
    call = message.tool_calls[0]
    assert call.type == "function" and call.function.arguments == '{"a": 1}'
    assert reply.choices[0].finish_reason == "tool_calls"


def test_rate_limit_error_with_retry_after(upstream: FakeUpstream, client: openai.OpenAI) -> None:
    upstream.push(Error(429, "Slow down", retry_after=2))
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model="fake-model", messages=USER, stream=True)
    assert info.value.status_code == 429
    assert info.value.response.headers["retry-after"] == "2"
    assert info.value.body == {
        "message": "Slow down",
        "type": "requests",
        "param": None,
        "code": "rate_limit_exceeded",
    }
    upstream.push(Error(503, body={"error": {"message": "custom", "type": "x", "param": None, "code": None}}))
    with pytest.raises(openai.InternalServerError) as info5:
        client.chat.completions.create(model="fake-model", messages=USER)
    assert info5.value.status_code == 503 and "custom" in info5.value.message


def test_hang_times_out_client(upstream: FakeUpstream, client: openai.OpenAI) -> None:
    upstream.push(Hang(30))
    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(model="fake-model", messages=USER, stream=True, timeout=0.3)
    assert time.monotonic() - started < 2
    # The hang is abandoned when the client goes away; the server keeps answering.
    reply = client.chat.completions.create(model="fake-model", messages=USER)
    assert reply.choices[0].message.content == DEFAULT_TEXT


def test_hang_then_reply(upstream: FakeUpstream, client: openai.OpenAI) -> None:
    upstream.push(Hang(0.05, then=Text("late")))
    reply = client.chat.completions.create(model="fake-model", messages=USER)
    assert reply.choices[0].message.content == "late"


def test_drop_cuts_the_stream(upstream: FakeUpstream, client: openai.OpenAI) -> None:
    upstream.push(Drop("partial"))
    received: list[str] = []
    with pytest.raises(openai.APIConnectionError):
        for chunk in client.chat.completions.create(model="fake-model", messages=USER, stream=True):
            received.append(chunk.choices[0].delta.content or "")
    assert "".join(received) == "partial"
    upstream.push(Drop())
    with pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(model="fake-model", messages=USER)


def test_stream_error_event(upstream: FakeUpstream, client: openai.OpenAI) -> None:
    upstream.push(StreamError("boom", text="half"))
    received: list[str] = []
    with pytest.raises(openai.APIError, match="boom"):
        for chunk in client.chat.completions.create(model="fake-model", messages=USER, stream=True):
            received.append(chunk.choices[0].delta.content or "")
    assert "".join(received) == "half"


def test_raw_events_are_sent_verbatim(upstream: FakeUpstream) -> None:
    upstream.push(Raw([b"data: {not json\n\n"], text="half"), Raw([b"data: [1]\n\n"], done=False))
    body = {"model": "fake-model", "messages": USER, "stream": True}
    with httpx.Client(base_url=upstream.base_url) as http:
        first = http.post("/chat/completions", json=body)
        second = http.post("/chat/completions", json=body)
    assert first.status_code == 200 and first.headers["content-type"].startswith("text/event-stream")
    events = first.text.split("\n\n")
    assert json.loads(events[1].removeprefix("data: "))["choices"][0]["delta"]["content"] == "half"
    assert events[2:] == ["data: {not json", "data: [DONE]", ""]
    assert second.text.endswith("data: [1]\n\n")


def test_stall_then_rest_or_a_cut(upstream: FakeUpstream, client: openai.OpenAI) -> None:
    upstream.push(Stall(0.2, text="slow ", rest="but sure"), Stall(30, text="never"))
    chunks = client.chat.completions.create(model="fake-model", messages=USER, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "slow but sure"
    # Past the client's read timeout mid-stream: the client gives up, the stall ends with it.
    received: list[str] = []
    with pytest.raises((openai.APITimeoutError, httpx.ReadTimeout)):
        for chunk in client.chat.completions.create(
            model="fake-model", messages=USER, stream=True, timeout=0.3
        ):
            received.append(chunk.choices[0].delta.content or "")
    assert "".join(received) == "never"
    times = upstream.request_times
    assert len(times) == 2 and times[0] <= times[1]


def test_dynamic_and_echo(upstream: FakeUpstream, client: openai.OpenAI) -> None:
    upstream.push(Dynamic(lambda body: Text(f"{len(body['messages'])} messages")), Echo())
    reply = client.chat.completions.create(model="fake-model", messages=USER)
    assert reply.choices[0].message.content == "1 messages"
    messages: list[ChatCompletionMessageParam] = [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": [{"type": "text", "text": "second "}, {"type": "text", "text": "turn"}]},
    ]
    chunks = client.chat.completions.create(model="fake-model", messages=messages, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "echo: second turn"


def test_models_and_embeddings(upstream: FakeUpstream, client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == ["fake-model", "fake-model-2"]
    model = client.models.retrieve("fake-model-2")
    assert model.owned_by == "fake"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("nope")
    raw = httpx.get(upstream.base_url + "/models").json()
    assert raw["object"] == "list" and raw["data"][0]["object"] == "model"

    first = client.embeddings.create(model="fake-embed", input=["a", "b"])  # base64 by default
    again = client.embeddings.create(model="fake-embed", input="a", encoding_format="float")
    assert len(first.data) == 2 and len(first.data[0].embedding) == 8
    assert first.data[0].embedding == pytest.approx(again.data[0].embedding, rel=1e-6)
    assert first.data[0].embedding != first.data[1].embedding
    assert len(upstream.embedding_requests) == 2
    assert upstream.requests == []  # embeddings are not chat requests


def test_request_recording_and_reset(upstream: FakeUpstream, client: openai.OpenAI) -> None:
    upstream.push("one", "two", "three")
    assert upstream.queued == 3
    for i in range(2):
        client.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": f"m{i}"}])
    bodies = upstream.wait_for_requests(2, timeout=1)
    assert [b["messages"][0]["content"] for b in bodies] == ["m0", "m1"]
    assert bodies[0]["model"] == "fake-model"
    assert upstream.request_headers[0]["authorization"] == "Bearer sk-test"
    assert upstream.queued == 1
    upstream.reset()
    assert upstream.requests == [] and upstream.queued == 0
    with pytest.raises(TimeoutError):
        upstream.wait_for_requests(1, timeout=0.01)


def test_unknown_path_and_bad_json(upstream: FakeUpstream) -> None:
    with httpx.Client(base_url=upstream.base_url) as http:
        missing = http.get("/nope")
        assert missing.status_code == 404 and "error" in missing.json()
        bad = http.post(
            "/chat/completions", content=b"{not json", headers={"content-type": "application/json"}
        )
        assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"
    assert upstream.requests == []


def test_start_stop_is_clean() -> None:
    outcome: list[object] = []

    def hung_request(url: str) -> None:
        try:
            with httpx.Client(timeout=10) as http:
                outcome.append(http.post(url + "/chat/completions", json={"messages": USER}).status_code)
        except httpx.HTTPError as exc:
            outcome.append(exc)

    with FakeUpstream() as server:
        url = server.base_url
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
        server.push(Hang(30))
        worker = threading.Thread(target=hung_request, args=(url,))
        worker.start()
        server.wait_for_requests(1)
        started = time.monotonic()
    # Stopping cancels the in-flight hang instead of waiting 30 s for it.
    assert time.monotonic() - started < 2
    worker.join(5)
    assert not worker.is_alive() and len(outcome) == 1
    server.stop()  # idempotent
    with pytest.raises(RuntimeError):
        _ = server.base_url
    with pytest.raises(httpx.ConnectError), httpx.Client(timeout=1) as http:
        http.get(url + "/models")


def test_helpers() -> None:
    assert fake_upstream.split_words("Hello  big world") == ["Hello  ", "big ", "world"]
    assert fake_upstream.split_words("") == [""]
    assert fake_upstream.split_even('{"a": 1}', 3) == ['{"a', '": ', "1}"]
    assert fake_upstream.last_user_text({"messages": USER}) == "Hi!"
    assert fake_upstream.last_user_text({}) == ""
    vector = fake_upstream.fake_embedding("x")
    assert len(vector) == 8 and sum(v * v for v in vector) == pytest.approx(1.0)


def test_client_abandoning_a_slow_stream(upstream: FakeUpstream, client: openai.OpenAI) -> None:
    upstream.push(Text("a b c d e f", chunk_delay_s=5))
    started = time.monotonic()
    stream = client.chat.completions.create(model="fake-model", messages=USER, stream=True)
    first = next(iter(stream))
    assert first.choices[0].delta.role == "assistant"
    stream.close()
    # Parallel requests are served concurrently while the abandoned one is torn down.
    results: list[str | None] = []
    threads = [
        threading.Thread(
            target=lambda: results.append(
                client.chat.completions.create(model="fake-model", messages=USER).choices[0].message.content
            )
        )
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert results == [DEFAULT_TEXT] * 4
    assert time.monotonic() - started < 2
