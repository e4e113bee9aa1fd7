"""/actions: the ``?action=`` function's ten actions through GET and POST, its envelope, and its refusals."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from openai import OpenAI
from openai.pagination import SyncCursorPage
from openai.types.beta import Assistant, Thread, ThreadDeleted
from openai.types.beta.threads import Message, Run

from conftest import Databases, start_server
from fake_upstream import Error, FakeUpstream, Hang, Text, ToolCalls
from samples import WEATHER_TOOL
from server import KEYS, AssistdServer, free_port
from wire import check

# How a request carries its parameters: all in the query (the original function's GET), all in a JSON
# body, or the action in the query and the rest in the body.
TRANSPORTS = ("get", "post-body", "post-mixed")
FORM = "application/x-www-form-urlencoded"
# The bundled local model, the default of last resort.
LOCAL_MODEL = "smollm2-135m-instruct"


class Actions:
    """Calls ``/actions`` one way, and checks the envelope of every answer."""

    def __init__(self, server: AssistdServer, transport: str, key: str | None = KEYS[0]) -> None:
        self.server = server
        self.transport = transport
        self.headers = {"Authorization": f"Bearer {key}"} if key else {}

    def raw(self, action: str | None, **params: Any) -> httpx.Response:
        url = f"{self.server.url}/actions"
        every = {"action": action, **params} if action is not None else params
        if self.transport == "get":
            return httpx.get(url, params=every, headers=self.headers, timeout=30)
        if self.transport == "post-body":
            return httpx.post(url, json=every, headers=self.headers, timeout=30)
        query = {"action": action} if action is not None else {}
        return httpx.post(url, params=query, json=params, headers=self.headers, timeout=30)

    def call(self, action: str | None, **params: Any) -> tuple[int, dict[str, Any]]:
        response = self.raw(action, **params)
        assert response.headers["content-type"] == "application/json"
        body: dict[str, Any] = response.json()
        assert set(body) == {"success", "data", "error"}, body
        return response.status_code, body

    def ok(self, action: str, **params: Any) -> Any:
        # 200 for every success, the creating actions too: the original function's front ends test
        # ``res.ok`` or ``status === 200``.
        code, body = self.call(action, **params)
        assert (code, body["success"], body["error"]) == (200, True, None), body
        return body["data"]

    def fails(self, action: str | None, status: int, **params: Any) -> str:
        code, body = self.call(action, **params)
        assert (code, body["success"]) == (status, False), body
        assert body["data"] is None
        assert isinstance(body["error"], str) and body["error"]
        return str(body["error"])


@pytest.fixture(params=TRANSPORTS)
def actions(request: pytest.FixtureRequest, server: AssistdServer) -> Actions:
    return Actions(server, request.param)


def _page(data: Any, item: type[Assistant] | type[Message]) -> list[Any]:
    assert data["object"] == "list"
    check(SyncCursorPage[item], data)
    return [check(item, entry) for entry in data["data"]]


def test_ten_actions_from_assistant_to_deleted_thread(actions: Actions, fake: FakeUpstream) -> None:
    created = actions.ok(
        "create-assistant",
        name="Property Assistant",
        instructions="You are a property expert",
        model="fake-model",
    )
    assistant = check(Assistant, created, "AssistantObject")
    assert assistant.id.startswith("asst_")
    assert (assistant.name, assistant.instructions, assistant.model) == (
        "Property Assistant",
        "You are a property expert",
        "fake-model",
    )

    listed = _page(actions.ok("list-assistants", limit=1), Assistant)
    assert [a.id for a in listed] == [assistant.id]
    assert actions.ok("get-assistant", assistantId=assistant.id) == created

    updated = check(
        Assistant,
        actions.ok(
            "update-assistant",
            assistantId=assistant.id,
            name="Updated Property Assistant",
            instructions="Answer in one sentence.",
        ),
        "AssistantObject",
    )
    assert (updated.id, updated.name, updated.instructions, updated.model) == (
        assistant.id,
        "Updated Property Assistant",
        "Answer in one sentence.",
        "fake-model",
    )

    thread_data = actions.ok("create-thread")
    thread = check(Thread, thread_data, "ThreadObject")
    assert thread.id.startswith("thread_")

    sent = check(Message, actions.ok("send-message", threadId=thread.id, message="Is rent due?"))
    assert (sent.thread_id, sent.role) == (thread.id, "user")
    assert sent.content[0].type == "text" and sent.content[0].text.value == "Is rent due?"

    fake.push("Rent is due on the first of the month.")
    reply = actions.ok("run-assistant", threadId=thread.id, assistantId=assistant.id)
    assert set(reply) == {"threadId", "runId", "status", "response", "run"}
    run = check(Run, reply["run"], "RunObject")
    assert (run.id, run.thread_id, run.assistant_id, run.status) == (
        reply["runId"],
        thread.id,
        assistant.id,
        "completed",
    )
    assert (reply["threadId"], reply["status"]) == (thread.id, "completed")
    assert reply["response"] == "Rent is due on the first of the month."
    # The updated instructions and the sent message are what reached the model.
    (request,) = fake.requests
    assert request["messages"] == [
        {"role": "system", "content": "Answer in one sentence."},
        {"role": "user", "content": "Is rent due?"},
    ]

    assert actions.ok("get-thread", threadId=thread.id) == thread_data

    newest_first = _page(actions.ok("list-messages", threadId=thread.id), Message)
    assert [(m.role, m.content[0].text.value) for m in newest_first] == [
        ("assistant", "Rent is due on the first of the month."),
        ("user", "Is rent due?"),
    ]
    assert newest_first[0].run_id == run.id
    oldest_first = _page(actions.ok("list-messages", threadId=thread.id, order="asc"), Message)
    assert [m.id for m in oldest_first] == [m.id for m in reversed(newest_first)]

    deleted = check(ThreadDeleted, actions.ok("delete-thread", threadId=thread.id))
    assert (deleted.id, deleted.deleted, deleted.object) == (thread.id, True, "thread.deleted")
    assert "thread_" in actions.fails("get-thread", 404, threadId=thread.id)


def test_unknown_or_missing_action_is_refused_naming_it(actions: Actions) -> None:
    error = actions.fails("launch-rocket", 400)
    assert "action" in error and "launch-rocket" in error and "create-assistant" in error
    assert "'action'" in actions.fails(None, 400)
    assert "'action'" in actions.fails("", 400)


@pytest.mark.parametrize(
    ("action", "params", "missing"),
    [
        ("get-assistant", {}, "assistantId"),
        ("update-assistant", {"name": "x"}, "assistantId"),
        ("send-message", {"message": "hi"}, "threadId"),
        ("send-message", {"threadId": "thread_x", "message": "  "}, "message"),
        ("run-assistant", {"threadId": "thread_x"}, "assistantId"),
        ("run-assistant", {"assistantId": "asst_x"}, "threadId"),
        ("get-thread", {"threadId": ""}, "threadId"),
        ("list-messages", {}, "threadId"),
        ("delete-thread", {}, "threadId"),
    ],
)
def test_missing_parameter_is_named(
    actions: Actions, action: str, params: dict[str, str], missing: str
) -> None:
    assert actions.fails(action, 400, **params) == f"Missing required parameter: '{missing}'."


def test_unknown_ids_are_404(actions: Actions) -> None:
    assistant_id = actions.ok("create-assistant", model="fake-model")["id"]
    thread_id = actions.ok("create-thread")["id"]
    assert "asst_nope" in actions.fails("get-assistant", 404, assistantId="asst_nope")
    assert "asst_nope" in actions.fails("update-assistant", 404, assistantId="asst_nope", name="x")
    assert "thread_nope" in actions.fails("send-message", 404, threadId="thread_nope", message="hi")
    assert "thread_nope" in actions.fails("list-messages", 404, threadId="thread_nope")
    assert "thread_nope" in actions.fails("delete-thread", 404, threadId="thread_nope")
    assert "asst_nope" in actions.fails("run-assistant", 404, threadId=thread_id, assistantId="asst_nope")
    assert "thread_nope" in actions.fails(
        "run-assistant", 404, threadId="thread_nope", assistantId=assistant_id
    )


def test_objects_of_another_key_are_not_found(server: AssistdServer) -> None:
    mine = Actions(server, "get")
    theirs = Actions(server, "get", KEYS[1])
    assistant_id = mine.ok("create-assistant", model="fake-model")["id"]
    thread_id = mine.ok("create-thread")["id"]
    theirs.fails("get-assistant", 404, assistantId=assistant_id)
    theirs.fails("get-thread", 404, threadId=thread_id)
    theirs.fails("send-message", 404, threadId=thread_id, message="hi")
    assert assistant_id not in {a["id"] for a in theirs.ok("list-assistants", limit=100)["data"]}


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("key", [None, "sk-wrong"])
def test_a_missing_or_wrong_key_is_401_in_the_envelope(
    server: AssistdServer, transport: str, key: str | None
) -> None:
    error = Actions(server, transport, key).fails("list-assistants", 401)
    assert "API key" in error
    assert "sk-wrong" not in error


def test_invalid_values_are_refused_naming_the_parameter(actions: Actions) -> None:
    assert "'name'" in actions.fails("create-assistant", 400, model="fake-model", name="n" * 300)
    assert "'limit'" in actions.fails("list-assistants", 400, limit=0)
    assert "'limit'" in actions.fails("list-assistants", 400, limit="many")
    assert "'order'" in actions.fails("list-messages", 400, threadId="thread_x", order="sideways")
    assert "'timeout'" in actions.fails("run-assistant", 400, threadId="t", assistantId="a", timeout=-1)
    if actions.transport != "get":
        # A NUL in the query string is refused before routing, by the app-wide guard.
        assert "'threadId'" in actions.fails("get-thread", 400, threadId="thread_\x00")


def v1_create_without_model(server: AssistdServer) -> Assistant:
    """``POST /v1/assistants`` with no ``model``: the SDK's types require one, the HTTP API does not."""
    response = httpx.post(
        f"{server.base_url}/assistants",
        json={"name": "No model named"},
        headers={"Authorization": f"Bearer {KEYS[0]}", "OpenAI-Beta": "assistants=v2"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return check(Assistant, response.json(), "AssistantObject")


def test_without_default_model_the_upstreams_first_model_is_taken(
    actions: Actions, server: AssistdServer
) -> None:
    # The session server talks to the fake upstream, which lists ["fake-model", "fake-model-large"], and
    # sets no ASSISTD_DEFAULT_MODEL.
    data = actions.ok("create-assistant", name="No model", instructions="Hi")
    assert check(Assistant, data, "AssistantObject").model == "fake-model"
    assert v1_create_without_model(server).model == "fake-model"


@pytest.fixture(scope="module")
def defaulted(
    tmp_path_factory: pytest.TempPathFactory, databases: Databases, fake: FakeUpstream
) -> Iterator[AssistdServer]:
    srv = start_server(tmp_path_factory, databases, fake, default_model="fake-model-large")
    yield srv
    srv.stop()


def test_create_assistant_without_model_takes_the_configured_default(defaulted: AssistdServer) -> None:
    # ASSISTD_DEFAULT_MODEL wins over the upstream's first listed model, on /actions and /v1 alike.
    for transport in TRANSPORTS:
        data = Actions(defaulted, transport).ok("create-assistant", name="Helper", instructions="Hi")
        assert check(Assistant, data, "AssistantObject").model == "fake-model-large"
    assert v1_create_without_model(defaulted).model == "fake-model-large"


def test_an_unreachable_upstream_falls_back_to_the_local_model(
    tmp_path_factory: pytest.TempPathFactory, databases: Databases
) -> None:
    # Nothing listens on this port: listing the upstream's models fails at once.
    dead = {"ASSISTD_UPSTREAM_BASE_URL": f"http://127.0.0.1:{free_port()}/v1"}
    srv = AssistdServer(tmp_path_factory.mktemp("dead-upstream"), databases.new(), dead).start()
    try:
        data = Actions(srv, "post-body").ok("create-assistant", name="Fallback")
        assert check(Assistant, data, "AssistantObject").model == LOCAL_MODEL
        assert v1_create_without_model(srv).model == LOCAL_MODEL
    finally:
        srv.stop()
    # Without the bundled model either, nothing is left to default to: the client must name a model.
    srv = AssistdServer(
        tmp_path_factory.mktemp("no-model"), databases.new(), dead | {"ASSISTD_LOCAL_DEFAULT_MODEL": "false"}
    ).start()
    try:
        error = Actions(srv, "get").fails("create-assistant", 400, name="No model anywhere")
        assert "'model'" in error and "ASSISTD_DEFAULT_MODEL" in error
    finally:
        srv.stop()


def test_post_body_values_win_and_must_have_their_type(server: AssistdServer) -> None:
    url = f"{server.url}/actions"
    headers = {"Authorization": f"Bearer {KEYS[0]}"}
    response = httpx.post(
        url,
        params={"action": "create-thread", "name": "ignored"},
        json={"action": "create-assistant", "name": "From the body", "model": "fake-model"},
        headers=headers,
    )
    assert response.status_code == 200 and response.json()["data"]["name"] == "From the body"

    # URL-encoded, as an HTML form or ``curl -d`` posts.
    response = httpx.post(url, content=b"action=create-thread", headers=headers | {"Content-Type": FORM})
    assert response.status_code == 200 and response.json()["data"]["object"] == "thread"

    for content, needle in [(b"{not json", "JSON"), (b"[1, 2]", "JSON"), (b'{"name": 5}', "'name'")]:
        response = httpx.post(
            url,
            params={"action": "create-assistant", "model": "fake-model"},
            content=content,
            headers={**headers, "Content-Type": "application/json"},
        )
        body = response.json()
        assert (response.status_code, body["success"], body["data"]) == (400, False, None)
        assert needle in body["error"]


def test_failed_run_is_502_with_the_reason(actions: Actions, fake: FakeUpstream) -> None:
    assistant_id = actions.ok("create-assistant", model="fake-model")["id"]
    thread_id = actions.ok("create-thread")["id"]
    actions.ok("send-message", threadId=thread_id, message="hi")
    fake.push(Error(400, "This model does not support that."))
    code, body = actions.call("run-assistant", threadId=thread_id, assistantId=assistant_id)
    assert (code, body["success"]) == (502, False)
    assert "failed" in body["error"] and "This model does not support that." in body["error"]
    assert body["data"]["status"] == "failed" and body["data"]["response"] == ""
    assert check(Run, body["data"]["run"]).last_error is not None


def _wait_until_done(client: OpenAI, thread_id: str, run_id: str) -> Run:
    deadline = time.monotonic() + 20
    run = client.beta.threads.runs.retrieve(run_id, thread_id=thread_id)
    while run.status in ("queued", "in_progress") and time.monotonic() < deadline:
        time.sleep(0.05)
        run = client.beta.threads.runs.retrieve(run_id, thread_id=thread_id)
    return run


def test_run_past_its_timeout_is_504_and_goes_on(
    server: AssistdServer, client: OpenAI, fake: FakeUpstream
) -> None:
    actions = Actions(server, "get")
    assistant_id = actions.ok("create-assistant", model="fake-model")["id"]
    thread_id = actions.ok("create-thread")["id"]
    actions.ok("send-message", threadId=thread_id, message="Take your time.")
    fake.push(Hang(1.5, then=Text("Late, but here.")))
    started = time.monotonic()
    code, body = actions.call("run-assistant", threadId=thread_id, assistantId=assistant_id, timeout="0.3")
    assert time.monotonic() - started < 1.4
    assert (code, body["success"]) == (504, False)
    assert "0.3 seconds" in body["error"]
    assert body["data"]["status"] in ("queued", "in_progress")
    # The thread is busy until the run ends: a message now is refused, not lost silently.
    assert "active" in actions.fails("send-message", 400, threadId=thread_id, message="Hello?")

    assert _wait_until_done(client, thread_id, body["data"]["runId"]).status == "completed"
    newest = actions.ok("list-messages", threadId=thread_id, limit=1)["data"][0]
    assert newest["content"][0]["text"]["value"] == "Late, but here."


def test_function_call_cancels_the_run_and_frees_the_thread(
    server: AssistdServer, client: OpenAI, fake: FakeUpstream
) -> None:
    actions = Actions(server, "post-body")
    assistant = client.beta.assistants.create(model="fake-model", tools=[WEATHER_TOOL])
    thread_id = actions.ok("create-thread")["id"]
    actions.ok("send-message", threadId=thread_id, message="Weather in Paris?")
    fake.push(ToolCalls([("get_weather", {"city": "Paris"})]))
    code, body = actions.call("run-assistant", threadId=thread_id, assistantId=assistant.id)
    assert (code, body["success"]) == (409, False)
    assert "function" in body["error"] and "/v1" in body["error"]
    assert body["data"]["status"] == "cancelled"
    actions.ok("send-message", threadId=thread_id, message="Never mind.")
