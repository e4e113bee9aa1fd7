"""Error bodies: every failure is ``{"error": {"message", "type", "param", "code"}}`` with the right status,
and nothing a client sends makes the server answer 500."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI

from conftest import make_client
from fake_upstream import FakeUpstream
from server import KEYS, AssistdServer

AUTH = {"Authorization": f"Bearer {KEYS[0]}"}
JSON = {**AUTH, "Content-Type": "application/json"}


def error_of(
    response: httpx.Response, status: int, param: str | None = None, *, check_param: bool = True
) -> Any:
    """Assert OpenAI's error body and status; return the inner error object."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert isinstance(error["message"], str) and error["message"].strip()
    assert isinstance(error["type"], str) and error["type"]
    assert error["code"] is None or isinstance(error["code"], str)
    assert error["param"] is None or isinstance(error["param"], str)
    if check_param:
        assert error["param"] == param, error
    return error


def sdk_error(exc: openai.APIStatusError, status: int, param: str | None) -> Any:
    return error_of(exc.response, status, param)  # type: ignore[arg-type]


@dataclass
class World:
    assistant_id: str
    thread_id: str
    message_id: str
    run_id: str
    step_id: str


@pytest.fixture
def http(server: AssistdServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, headers=AUTH, timeout=30) as c:
        yield c


@pytest.fixture
def world(client: OpenAI, fake: FakeUpstream) -> World:
    assistant = client.beta.assistants.create(model="fake-model")
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "hi"}])
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert run.status == "completed"
    step = client.beta.threads.runs.steps.list(run.id, thread_id=thread.id).data[0]
    message = client.beta.threads.messages.list(thread.id).data[0]
    return World(assistant.id, thread.id, message.id, run.id, step.id)


# Bodies -----------------------------------------------------------------------------------------


def test_malformed_json(http: httpx.Client) -> None:
    for raw_body in (
        b"{bad",
        b'{"model": "fake-model",}',
        b'{"model": "fake-model"}{}',
        b"\x00",
        b"[" * 20_000,
    ):
        error = error_of(http.post("/assistants", content=raw_body, headers=JSON), 400, None)
        assert error["type"] == "invalid_request_error"
    error = error_of(http.post("/assistants", content=b"{bad", headers=JSON), 400, None)
    assert "parse the JSON body" in error["message"]


def test_non_utf8_bytes(http: httpx.Client) -> None:
    for raw_body in (
        b"\xff\xfe\x00garbage",
        b'{"model": "\xff\xfe"}',
        b'{"model": "ok", "name": "\xc3\x28"}',
    ):
        error_of(http.post("/assistants", content=raw_body, headers=JSON), 400, None)


def test_wrong_types_name_the_param(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.beta.assistants.create(model="fake-model", temperature="hot")  # type: ignore[arg-type]
    error = sdk_error(info.value, 400, "temperature")
    assert error["type"] == "invalid_request_error"
    assert "temperature" in error["message"]
    cases: list[tuple[dict[str, Any], str]] = [
        ({"top_p": 2}, "top_p"),
        ({"temperature": -0.1}, "temperature"),
        ({"name": 5}, "name"),
        ({"tools": {"type": "code_interpreter"}}, "tools"),
        ({"tools": [{"type": "browser"}]}, "tools[0]"),
        ({"tools": [{"type": "function", "function": {"name": "bad name"}}]}, "tools[0].function.name"),
        (
            {"tools": [{"type": "file_search", "file_search": {"max_num_results": 99}}]},
            "tools[0].file_search.max_num_results",
        ),
        ({"response_format": "xml"}, "response_format"),
        ({"reasoning_effort": "extreme"}, "reasoning_effort"),
        ({"metadata": {"k": 1}}, "metadata.k"),
        (
            {"tool_resources": {"code_interpreter": {"file_ids": "file-1"}}},
            "tool_resources.code_interpreter.file_ids",
        ),
    ]
    for extra, param in cases:
        with pytest.raises(openai.BadRequestError) as info:
            client.beta.assistants.create(model="fake-model", extra_body=extra)
        sdk_error(info.value, 400, param)


def test_unknown_parameter_is_named(client: OpenAI, world: World) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.beta.assistants.create(model="fake-model", extra_body={"temperture": 0.5})
    error = sdk_error(info.value, 400, "temperture")
    assert "temperture" in error["message"]
    with pytest.raises(openai.BadRequestError) as info:
        client.beta.threads.create(extra_body={"title": "x"})
    sdk_error(info.value, 400, "title")
    with pytest.raises(openai.BadRequestError) as info:
        client.beta.threads.messages.create(
            world.thread_id, role="user", content="x", extra_body={"file_ids": []}
        )
    sdk_error(info.value, 400, "file_ids")
    with pytest.raises(openai.BadRequestError) as info:
        client.beta.threads.create(messages=[{"role": "user", "content": "x", "name": "bob"}])  # type: ignore[typeddict-unknown-key]
    sdk_error(info.value, 400, "messages[0].name")


def test_missing_required_parameters(client: OpenAI, http: httpx.Client, world: World) -> None:
    # A model left out is the server's default (test_actions.py); an empty one is refused.
    error_of(http.post("/assistants", json={"model": ""}), 400, "model")
    error_of(http.post("/assistants", headers=AUTH), 400, None)
    error_of(http.post(f"/threads/{world.thread_id}/messages", json={"content": "x"}), 400, "role")
    error_of(http.post(f"/threads/{world.thread_id}/messages", json={"role": "user"}), 400, "content")
    error_of(http.post(f"/threads/{world.thread_id}/runs", json={}), 400, "assistant_id")
    error_of(http.post("/threads/runs", json={"thread": {}}), 400, "assistant_id")


def test_metadata_limits(client: OpenAI, world: World) -> None:
    too_many = {f"k{i}": "v" for i in range(17)}
    long_key = {"k" * 65: "v"}
    long_value = {"k": "v" * 513}
    for metadata in (too_many, long_key, long_value):
        with pytest.raises(openai.BadRequestError) as info:
            client.beta.assistants.create(model="fake-model", metadata=metadata)
        sdk_error(info.value, 400, "metadata")
        with pytest.raises(openai.BadRequestError) as info:
            client.beta.assistants.update(world.assistant_id, metadata=metadata)
        sdk_error(info.value, 400, "metadata")
        with pytest.raises(openai.BadRequestError) as info:
            client.beta.threads.create(metadata=metadata)
        sdk_error(info.value, 400, "metadata")
        with pytest.raises(openai.BadRequestError) as info:
            client.beta.threads.update(world.thread_id, metadata=metadata)
        sdk_error(info.value, 400, "metadata")
        with pytest.raises(openai.BadRequestError) as info:
            client.beta.threads.messages.update(
                world.message_id, thread_id=world.thread_id, metadata=metadata
            )
        sdk_error(info.value, 400, "metadata")
        with pytest.raises(openai.BadRequestError) as info:
            client.beta.threads.runs.update(world.run_id, thread_id=world.thread_id, metadata=metadata)
        sdk_error(info.value, 400, "metadata")
    # The limits themselves are allowed.
    at_limit = {f"{i:02d}" + "k" * 62: "v" * 512 for i in range(16)}
    assistant = client.beta.assistants.create(model="fake-model", metadata=at_limit)
    assert assistant.metadata == at_limit
    assert client.beta.assistants.retrieve(world.assistant_id).metadata == {}


def test_invalid_message_role_and_empty_content(client: OpenAI, world: World) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.beta.threads.create(messages=[{"role": "system", "content": "x"}])  # type: ignore[typeddict-item]
    sdk_error(info.value, 400, "messages[0].role")
    with pytest.raises(openai.BadRequestError) as info:
        client.beta.threads.messages.create(world.thread_id, role="tool", content="x")  # type: ignore[arg-type]
    sdk_error(info.value, 400, "role")
    with pytest.raises(openai.BadRequestError) as info:
        client.beta.threads.create(messages=[{"role": "user", "content": []}])
    error = sdk_error(info.value, 400, "messages[0].content")
    assert "valid string" not in error["message"], "the client sent a list: say what is wrong with it"
    with pytest.raises(openai.BadRequestError) as info:
        client.beta.threads.messages.create(world.thread_id, role="user", content=[])
    sdk_error(info.value, 400, "content")
    with pytest.raises(openai.BadRequestError) as info:
        client.beta.threads.messages.create(world.thread_id, role="user", content=[{"type": "text"}])  # type: ignore[list-item,typeddict-item]
    sdk_error(info.value, 400, "content[0].text")
    # Nothing was written by the refused requests.
    assert len(client.beta.threads.messages.list(world.thread_id).data) == 2


# Routes and keys --------------------------------------------------------------------------------


def test_unknown_route_and_wrong_method(http: httpx.Client, server: AssistdServer) -> None:
    error = error_of(http.get("/nothing-here"), 404, None)
    assert error["type"] == "invalid_request_error"
    error_of(http.post("/assistants/asst_x/nothing"), 404, None)
    error_of(httpx.get(f"{server.url}/not-v1", headers=AUTH), 404, None)
    error = error_of(http.put("/assistants"), 405, None)
    assert "PUT" in error["message"]
    error_of(http.patch("/threads/thread_x"), 405, None)
    error_of(http.delete("/assistants"), 405, None)


def test_missing_and_bad_keys(server: AssistdServer) -> None:
    for headers in ({}, {"Authorization": ""}, {"Authorization": "Bearer"}, {"Authorization": "Basic abc"}):
        error = error_of(httpx.get(f"{server.base_url}/assistants", headers=headers), 401, None)
        assert error["type"] == "invalid_request_error"
    error = error_of(
        httpx.get(f"{server.base_url}/assistants", headers={"Authorization": "Bearer sk-wrong"}), 401, None
    )
    assert error["code"] == "invalid_api_key"
    assert "sk-wrong" not in error["message"]
    with make_client(server, "sk-not-a-key") as bad, pytest.raises(openai.AuthenticationError) as info:
        bad.beta.assistants.list()
    sdk_error(info.value, 401, None)
    with make_client(server, "sk-not-a-key") as bad, pytest.raises(openai.AuthenticationError):
        bad.beta.threads.create()
    # Checked before anything else: a bad key on an unknown object is still 401.
    with make_client(server, "sk-not-a-key") as bad, pytest.raises(openai.AuthenticationError):
        bad.beta.assistants.retrieve("asst_nope")


def test_unknown_ids_are_404(client: OpenAI, world: World) -> None:
    t, r = world.thread_id, world.run_id
    calls: list[tuple[Any, str]] = [
        (lambda: client.beta.assistants.retrieve("asst_nope"), "assistant_id"),
        (lambda: client.beta.assistants.update("asst_nope", name="x"), "assistant_id"),
        (lambda: client.beta.assistants.delete("asst_nope"), "assistant_id"),
        (lambda: client.beta.threads.retrieve("thread_nope"), "thread_id"),
        (lambda: client.beta.threads.update("thread_nope", metadata={}), "thread_id"),
        (lambda: client.beta.threads.delete("thread_nope"), "thread_id"),
        (lambda: client.beta.threads.messages.list("thread_nope"), "thread_id"),
        (lambda: client.beta.threads.messages.retrieve("msg_nope", thread_id=t), "message_id"),
        (lambda: client.beta.threads.messages.update("msg_nope", thread_id=t, metadata={}), "message_id"),
        (lambda: client.beta.threads.messages.delete("msg_nope", thread_id=t), "message_id"),
        (lambda: client.beta.threads.runs.list("thread_nope"), "thread_id"),
        (lambda: client.beta.threads.runs.retrieve("run_nope", thread_id=t), "run_id"),
        (lambda: client.beta.threads.runs.update("run_nope", thread_id=t, metadata={}), "run_id"),
        (lambda: client.beta.threads.runs.cancel("run_nope", thread_id=t), "run_id"),
        (
            lambda: client.beta.threads.runs.submit_tool_outputs(
                "run_nope", thread_id=t, tool_outputs=[{"tool_call_id": "c", "output": "o"}]
            ),
            "run_id",
        ),
        (
            lambda: client.beta.threads.runs.create("thread_nope", assistant_id=world.assistant_id),
            "thread_id",
        ),
        (lambda: client.beta.threads.runs.create(t, assistant_id="asst_nope"), "assistant_id"),
        (lambda: client.beta.threads.create_and_run(assistant_id="asst_nope"), "assistant_id"),
        (lambda: client.beta.threads.runs.steps.list("run_nope", thread_id=t), "run_id"),
        (lambda: client.beta.threads.runs.steps.retrieve("step_nope", thread_id=t, run_id=r), "step_id"),
        (
            lambda: client.beta.threads.runs.steps.retrieve(world.step_id, thread_id=t, run_id="run_nope"),
            "run_id",
        ),
    ]
    for call, param in calls:
        with pytest.raises(openai.NotFoundError) as info:
            call()
        error = sdk_error(info.value, 404, param)
        assert error["type"] == "invalid_request_error"
    # A run of the thread is not found through another thread.
    other = client.beta.threads.create()
    with pytest.raises(openai.NotFoundError):
        client.beta.threads.runs.retrieve(r, thread_id=other.id)
    with pytest.raises(openai.NotFoundError):
        client.beta.threads.runs.steps.list(r, thread_id=other.id)


# Nothing a client sends gives 500 ----------------------------------------------------------------

HUGE = "x" * 1_000_000

INVALID_BODIES: list[bytes] = [
    b"[]",
    b"[{}]",
    b'"a string"',
    b"42",
    b"true",
    b"{" * 5_000,
    b"[" * 5_000 + b"]" * 5_000,
    b"\xff\xfe\xfd",
    b'{"\xff": 1}',
    b"\x00\x01\x02",
    json.dumps({"__junk__": {"a": [1, {"b": None}], "c": [[[]]]}}).encode(),
    json.dumps(
        {"model": None, "assistant_id": None, "role": None, "content": None, "metadata": [None]}
    ).encode(),
    json.dumps(
        {
            "model": [],
            "assistant_id": {},
            "role": 1,
            "content": {"type": "text"},
            "tool_outputs": "x",
            "metadata": "m",
            "tools": [[]],
            "messages": {},
        }
    ).encode(),
    json.dumps(
        {
            "model": HUGE,
            "name": HUGE,
            "assistant_id": HUGE,
            "metadata": {HUGE: HUGE},
            "role": "user",
            "content": [{"type": "text", "text": None}],
        }
    ).encode(),
    json.dumps({"metadata": {str(i): str(i) for i in range(5_000)}, "__x": 1}).encode(),
    json.dumps(
        {"tools": [{"type": "function", "function": {"name": "f", "parameters": "nope"}}] * 200, "__x": 1}
    ).encode(),
    json.dumps(
        {
            "messages": [{"role": "user", "content": "x"}] * 33,
            "thread": {"messages": [None]},
            "tool_outputs": [None],
            "__x": 1,
        }
    ).encode(),
    json.dumps({"temperature": 1e308, "top_p": -1e308, "max_prompt_tokens": 10**30, "__x": 1}).encode(),
    b'{"temperature": NaN, "top_p": Infinity}',
    json.dumps(
        {"content": [{"type": "image_url", "image_url": {"url": None}}], "role": "user", "__x": 1}
    ).encode(),
]


def _post_paths(world: World) -> list[str]:
    t, m, r, a = world.thread_id, world.message_id, world.run_id, world.assistant_id
    return [
        "/assistants",
        f"/assistants/{a}",
        "/threads",
        f"/threads/{t}",
        f"/threads/{t}/messages",
        f"/threads/{t}/messages/{m}",
        f"/threads/{t}/runs",
        "/threads/runs",
        f"/threads/{t}/runs/{r}",
        f"/threads/{t}/runs/{r}/submit_tool_outputs",
    ]


def test_odd_bodies_get_4xx_error_bodies(http: httpx.Client, world: World, server: AssistdServer) -> None:
    for path in _post_paths(world):
        for raw_body in INVALID_BODIES:
            response = http.post(path, content=raw_body, headers=JSON)
            error_of(response, 400, check_param=False)
        # The same with a body that is not declared JSON.
        error_of(
            http.post(path, content=b"model=x", headers={"Content-Type": "text/plain"}),
            400,
            check_param=False,
        )
    assert "Traceback" not in server.log()


def test_odd_queries_and_paths_never_500(http: httpx.Client, world: World) -> None:
    t, r = world.thread_id, world.run_id
    queries: list[dict[str, str]] = [
        {"limit": "abc"},
        {"limit": "1e3"},
        {"limit": "99999999999999999999999"},
        {"order": "random"},
        {"after": HUGE[:10_000]},
        {"before": "\u0000"},
        {"after": "'; DROP TABLE assistants; --"},
        {"run_id": "x" * 5_000},
        {"include[]": "bogus"},
    ]
    for path in (
        "/assistants",
        "/threads",
        f"/threads/{t}/messages",
        f"/threads/{t}/runs",
        f"/threads/{t}/runs/{r}/steps",
    ):
        for query in queries:
            response = http.get(path, params=query)
            if response.status_code == 200:
                assert response.json()["object"] == "list"
            else:
                error_of(response, 400, check_param=False)
    for odd in ("%00", "..%2F..%2Fetc", "x" * 5_000, "%ff%fe", "asst_" + "%F0%9F%98%80" * 10):
        error_of(http.get(f"/assistants/{odd}"), 404, check_param=False)
        error_of(http.get(f"/threads/{odd}/messages"), 404, check_param=False)
        error_of(http.delete(f"/threads/{t}/messages/{odd}"), 404, check_param=False)


def test_null_body_where_the_body_is_optional(http: httpx.Client, world: World) -> None:
    """``null`` is no body: endpoints whose body is optional accept it, the others refuse it with 400."""
    t, m = world.thread_id, world.message_id
    for path in ("/threads", f"/threads/{t}", f"/threads/{t}/messages/{m}"):
        response = http.post(path, content=b"null", headers=JSON)
        assert response.status_code == 200, response.text
    for path in ("/assistants", f"/threads/{t}/messages", f"/threads/{t}/runs", "/threads/runs"):
        error_of(http.post(path, content=b"null", headers=JSON), 400, None)


def test_nul_characters_are_refused_alike_on_every_backend(http: httpx.Client, world: World) -> None:
    """PostgreSQL text cannot hold NUL: assistd refuses it up front on SQLite too, naming the parameter."""
    body = error_of(http.post("/assistants", json={"model": "m", "name": "a\u0000b"}), 400, "name")
    assert "NUL" in body["message"]
    content = {"role": "user", "content": [{"type": "text", "text": "x\u0000"}]}
    error_of(http.post(f"/threads/{world.thread_id}/messages", json=content), 400, "content[0].text")
    error_of(http.post("/threads", json={"messages": [content]}), 400, "messages[0].content[0].text")
    error_of(http.post("/assistants", json={"model": "m", "metadata": {"k\u0000": "v"}}), 400, "metadata")
    error_of(http.get("/assistants", params={"after": "asst_\u0000"}), 400, "after")
    error_of(http.get("/assistants/asst_%00"), 404)
