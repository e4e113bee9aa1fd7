"""The /ask session service: sessions as threads kept per tenant, turns in order, private assistants,
named tenants of several keys, streaming, the built-in default assistant; and ``assistd keys``."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from openai.types.beta import Assistant
from openai.types.beta.threads import Run

import assistd
from conftest import Databases, make_client
from fake_upstream import Echo, Error, FakeUpstream, Text, ToolCalls
from samples import WEATHER_TOOL
from server import AssistdServer
from wire import check

ADMIN, PUBLIC, OTHER = "sk-ask-admin", "sk-ask-public", "sk-other"
KEYS_ENV = f"acme:{ADMIN},acme:{PUBLIC},{OTHER}"
# Plain keys, each a tenant of its own that no other test touches: where the built-in default is made.
FRESH_SOLO, FRESH_RACE, FRESH_MANY = "sk-ask-fresh-solo", "sk-ask-fresh-race", "sk-ask-fresh-many"
# What the built-in default assistant is made with (README, "The session service").
DEFAULT_MARK = {"assistd_default": "ask"}
NEUTRAL = "You are a helpful assistant."


def fingerprint(key: str) -> str:
    return "key_" + hashlib.sha256(key.encode()).hexdigest()[:12]


@pytest.fixture(scope="module")
def acme(
    tmp_path_factory: pytest.TempPathFactory, databases: Databases, fake: FakeUpstream
) -> Iterator[AssistdServer]:
    keys = ",".join([KEYS_ENV, FRESH_SOLO, FRESH_RACE, FRESH_MANY])
    srv = own_server(tmp_path_factory, databases, fake, api_keys=keys)
    yield srv
    srv.stop()


def own_server(
    tmp_path_factory: pytest.TempPathFactory, databases: Databases, fake: FakeUpstream, **env: str
) -> AssistdServer:
    """``start_server`` with a patient start: these tests start servers of their own on a busy machine."""
    settings = {"ASSISTD_UPSTREAM_BASE_URL": fake.base_url, "ASSISTD_UPSTREAM_API_KEY": "sk-upstream-secret"}
    settings.update({f"ASSISTD_{k.upper()}": v for k, v in env.items()})
    return AssistdServer(tmp_path_factory.mktemp("assistd"), databases.new(), settings).start(timeout=90)


def http(server: AssistdServer, key: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=60)


def ask(server: AssistdServer, key: str, **body: Any) -> httpx.Response:
    with http(server, key) as client:
        return client.post("/ask", json=body)


def ask_ok(server: AssistdServer, key: str, **body: Any) -> dict[str, Any]:
    response = ask(server, key, **body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert set(answer) == {"session_id", "response", "thread_id", "run_id"}
    assert answer["session_id"] == body["session_id"]
    return dict(answer)


def assistant(server: AssistdServer, key: str = ADMIN, **params: Any) -> str:
    with make_client(server, key) as client:
        return client.beta.assistants.create(model="fake-model", **params).id


def listed_assistants(server: AssistdServer, key: str) -> list[Assistant]:
    """The tenant's assistants as /v1 lists them, each checked against the SDK's type."""
    with http(server, key) as client:
        page = client.get("/v1/assistants", params={"limit": 100, "order": "asc"})
    assert page.status_code == 200, page.text
    return [check(Assistant, item, "AssistantObject") for item in page.json()["data"]]


def defaults_of(server: AssistdServer, key: str) -> list[Assistant]:
    return [a for a in listed_assistants(server, key) if a.metadata == DEFAULT_MARK]


def session_assistant(server: AssistdServer, key: str, sid: str) -> str:
    with http(server, key) as client:
        return str(client.get(f"/ask/sessions/{sid}").json()["assistant_id"])


def session_id() -> str:
    return f"session-{uuid.uuid4().hex[:8]}"


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    return dict(body["error"])


def test_welcome_names_the_version(acme: AssistdServer) -> None:
    response = httpx.get(acme.url + "/")
    assert response.status_code == 200
    assert response.json()["version"] == assistd.__version__
    assert "assistd" in response.json()["message"]


def test_second_turn_carries_the_first(acme: AssistdServer, fake: FakeUpstream) -> None:
    helper = assistant(acme, name="helper-two-turns", instructions="Be brief.")
    sid = session_id()
    fake.push(Text("Paris is the capital."), Text("About two million people."))
    first = ask_ok(
        acme, PUBLIC, session_id=sid, user_input="What is the capital of France?", assistant=helper
    )
    assert first["response"] == "Paris is the capital."
    # The session remembers its assistant: the second turn names none.
    second = ask_ok(acme, PUBLIC, session_id=sid, user_input="How many people live there?")
    assert second["response"] == "About two million people."
    assert second["thread_id"] == first["thread_id"] and second["run_id"] != first["run_id"]

    requests = fake.requests
    assert len(requests) == 2
    contents = [(m["role"], m["content"]) for m in requests[1]["messages"]]
    assert ("user", "What is the capital of France?") in contents
    assert ("assistant", "Paris is the capital.") in contents
    assert contents[-1] == ("user", "How many people live there?")
    assert requests[1]["messages"][0] == {"role": "system", "content": "Be brief."}


def test_sessions_are_isolated(acme: AssistdServer, fake: FakeUpstream) -> None:
    helper = assistant(acme, name="helper-isolated")
    one, two = session_id(), session_id()
    a = ask_ok(acme, ADMIN, session_id=one, user_input="secret alpha", assistant=helper)
    b = ask_ok(acme, ADMIN, session_id=two, user_input="secret beta", assistant=helper)
    assert a["thread_id"] != b["thread_id"]
    ask_ok(acme, ADMIN, session_id=one, user_input="and again", assistant=helper)
    last = json.dumps(fake.requests[-1]["messages"])
    assert "secret alpha" in last and "secret beta" not in last


def test_one_session_id_in_two_tenants_is_two_sessions(acme: AssistdServer, fake: FakeUpstream) -> None:
    ours, theirs = assistant(acme, name="helper-shared-id"), assistant(acme, OTHER, name="theirs")
    sid = session_id()
    a = ask_ok(acme, ADMIN, session_id=sid, user_input="acme's words", assistant=ours)
    b = ask_ok(acme, OTHER, session_id=sid, user_input="other words", assistant=theirs)
    assert a["thread_id"] != b["thread_id"]
    assert "acme's words" not in json.dumps(fake.requests[-1]["messages"])
    # The other tenant's session is not reachable from acme's keys, and the reverse.
    with http(acme, OTHER) as other:
        detail = other.get(f"/ask/sessions/{sid}").json()
    assert [m["content"] for m in detail["messages"]] == ["other words", "Hello from the fake upstream."]


def test_concurrent_turns_on_one_session_run_in_order(acme: AssistdServer, fake: FakeUpstream) -> None:
    helper = assistant(acme, name="helper-concurrent")
    sid = session_id()
    # Each answer takes a while, so the second request arrives while the first run is still active.
    fake.push(Echo(delay_s=0.6), Echo(delay_s=0.6))
    results: dict[str, httpx.Response] = {}

    def send(text: str) -> None:
        results[text] = ask(acme, PUBLIC, session_id=sid, user_input=text, assistant=helper)

    first = threading.Thread(target=send, args=("first question",))
    second = threading.Thread(target=send, args=("second question",))
    first.start()
    fake.wait_for_requests(1, timeout=10)
    second.start()
    first.join(30)
    second.join(30)

    assert results["first question"].status_code == 200, results["first question"].text
    assert results["second question"].status_code == 200, results["second question"].text
    one, two = results["first question"].json(), results["second question"].json()
    assert one["response"] == "echo: first question"
    assert two["response"] == "echo: second question"
    assert one["thread_id"] == two["thread_id"]
    # Served one after the other: the second run saw the whole first turn.
    requests = fake.requests
    assert len(requests) == 2
    contents = [(m["role"], m["content"]) for m in requests[1]["messages"]]
    assert ("assistant", "echo: first question") in contents
    assert contents[-1] == ("user", "second question")


def test_private_assistant_answers_only_allowed_keys(acme: AssistdServer, fake: FakeUpstream) -> None:
    private = assistant(
        acme, name="private-bob", metadata={"ask_allowed_keys": f"key_000000000000, {fingerprint(ADMIN)}"}
    )
    sid = session_id()
    for key, named in ((PUBLIC, "private-bob"), (PUBLIC, private), (OTHER, private)):
        error = error_of(ask(acme, key, session_id=sid, user_input="hi", assistant=named), 404)
        assert error["param"] == "assistant"
        assert "sk-" not in error["message"] and "key_" not in error["message"]
    # The refused key's session was never opened.
    with http(acme, PUBLIC) as public:
        assert public.get(f"/ask/sessions/{sid}").status_code == 404

    fake.push(Text("Private answer."))
    answer = ask_ok(acme, ADMIN, session_id=sid, user_input="hi", assistant="private-bob")
    assert answer["response"] == "Private answer."
    # The session keeps its private assistant, so another key of the tenant cannot continue it.
    error = error_of(ask(acme, PUBLIC, session_id=sid, user_input="me too"), 404)
    assert error["param"] == "assistant"
    assert len(fake.requests) == 1


def test_session_list_get_delete(acme: AssistdServer, fake: FakeUpstream) -> None:
    helper = assistant(acme, name="helper-sessions")
    sids = [session_id() for _ in range(3)]
    threads = {}
    for sid in sids:
        threads[sid] = ask_ok(acme, ADMIN, session_id=sid, user_input=f"hello from {sid}", assistant=helper)[
            "thread_id"
        ]
    ask_ok(acme, ADMIN, session_id=sids[0], user_input="second turn", assistant=helper)

    with http(acme, PUBLIC) as public:  # the same tenant through its other key
        page = public.get("/ask/sessions", params={"limit": 2}).json()
        assert page["object"] == "list" and page["has_more"] is True
        assert [s["id"] for s in page["data"]] == [sids[2], sids[1]]
        assert page["first_id"] == sids[2] and page["last_id"] == sids[1]
        rest = public.get("/ask/sessions", params={"limit": 2, "after": sids[1]}).json()
        assert rest["data"][0]["id"] == sids[0]
        back = public.get("/ask/sessions", params={"order": "asc", "before": sids[2], "limit": 1}).json()
        assert [s["id"] for s in back["data"]] == [sids[1]]
        bad = public.get("/ask/sessions", params={"after": "no-such-session"})
        assert error_of(bad, 400)["param"] == "after"

        detail = public.get(f"/ask/sessions/{sids[0]}").json()
        assert detail["object"] == "ask.session" and detail["thread_id"] == threads[sids[0]]
        assert detail["assistant_id"] == helper
        assert detail["updated_at"] >= detail["created_at"]
        assert [(m["role"], m["content"]) for m in detail["messages"]] == [
            ("user", f"hello from {sids[0]}"),
            ("assistant", "Hello from the fake upstream."),
            ("user", "second turn"),
            ("assistant", "Hello from the fake upstream."),
        ]

    with http(acme, OTHER) as other:
        assert error_of(other.get(f"/ask/sessions/{sids[0]}"), 404)["param"] == "session_id"
        assert error_of(other.delete(f"/ask/sessions/{sids[0]}"), 404)["param"] == "session_id"
        listed = other.get("/ask/sessions", params={"limit": 100}).json()
        assert not {s["id"] for s in listed["data"]} & set(sids)

    with http(acme, ADMIN) as admin:
        deleted = admin.delete(f"/ask/sessions/{sids[0]}")
        assert deleted.status_code == 200
        assert deleted.json() == {"id": sids[0], "object": "ask.session.deleted", "deleted": True}
        assert admin.get(f"/ask/sessions/{sids[0]}").status_code == 404
        assert admin.delete(f"/ask/sessions/{sids[0]}").status_code == 404
        assert admin.get(f"/v1/threads/{threads[sids[0]]}").status_code == 404
    # The id starts a fresh conversation afterwards.
    again = ask_ok(acme, ADMIN, session_id=sids[0], user_input="new start", assistant=helper)
    assert again["thread_id"] != threads[sids[0]]
    assert "hello from" not in json.dumps(fake.requests[-1]["messages"])


def test_session_whose_thread_was_deleted_starts_over(acme: AssistdServer, fake: FakeUpstream) -> None:
    helper = assistant(acme, name="helper-thread-gone")
    sid = session_id()
    first = ask_ok(acme, ADMIN, session_id=sid, user_input="remember me", assistant=helper)
    with http(acme, ADMIN) as admin:
        assert admin.delete(f"/v1/threads/{first['thread_id']}").status_code == 200
    second = ask_ok(acme, ADMIN, session_id=sid, user_input="anyone there?")
    assert second["thread_id"] != first["thread_id"]
    assert "remember me" not in json.dumps(fake.requests[-1]["messages"])


def test_bad_requests_name_their_parameter(acme: AssistdServer) -> None:
    helper = assistant(acme, name="helper-bad-requests")
    sid = session_id()
    assert error_of(ask(acme, ADMIN, session_id=sid), 400)["param"] == "user_input"
    assert error_of(ask(acme, ADMIN, user_input="hi"), 400)["param"] == "session_id"
    assert error_of(ask(acme, ADMIN, session_id="", user_input="hi"), 400)["param"] == "session_id"
    error = error_of(ask(acme, ADMIN, session_id=sid, user_input="hi", assistant="nobody"), 404)
    assert error["param"] == "assistant" and "nobody" in error["message"]
    error = error_of(ask(acme, ADMIN, session_id=sid, user_input="hi", assistant=helper, colour="red"), 400)
    assert error["param"] == "colour"
    with httpx.Client(base_url=acme.url, timeout=30) as anonymous:
        assert anonymous.post("/ask", json={"session_id": sid, "user_input": "hi"}).status_code == 401
        assert anonymous.get("/ask/sessions").status_code == 401


def test_stream_sends_deltas_then_the_answer(acme: AssistdServer, fake: FakeUpstream) -> None:
    helper = assistant(acme, name="helper-stream")
    sid = session_id()
    fake.push(Text("Streaming works fine.", chunks=["Stream", "ing works", " fine."]))
    frames = []
    with (
        http(acme, PUBLIC) as client,
        client.stream(
            "POST",
            "/ask",
            json={"session_id": sid, "user_input": "stream?", "assistant": helper, "stream": True},
        ) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data: "):
                frames.append(json.loads(line.removeprefix("data: ")))
    deltas, final = frames[:-1], frames[-1]
    assert deltas and all(set(frame) == {"delta"} for frame in deltas)
    assert "".join(frame["delta"] for frame in deltas) == "Streaming works fine."
    assert set(final) == {"session_id", "response", "thread_id", "run_id"}
    assert final["response"] == "Streaming works fine." and final["session_id"] == sid
    # The streamed turn is part of the session like any other.
    fake.push(Text("Second."))
    ask_ok(acme, PUBLIC, session_id=sid, user_input="and now?")
    assert "Streaming works fine." in json.dumps(fake.requests[-1]["messages"])


def stream_bytes(server: AssistdServer, key: str, **body: Any) -> bytes:
    """The whole body of a streamed /ask answer."""
    with (
        http(server, key) as client,
        client.stream("POST", "/ask", json={**body, "stream": True}) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        return b"".join(response.iter_bytes())


def data_frame(body: dict[str, Any], compact: bool = True) -> bytes:
    # Answers are written by pydantic (compact), errors by json.dumps (its default separators).
    separators = (",", ":") if compact else None
    return b"data: " + json.dumps(body, separators=separators).encode() + b"\n\n"


def last_run(server: AssistdServer, key: str, sid: str) -> Run:
    with http(server, key) as client:
        thread_id = client.get(f"/ask/sessions/{sid}").json()["thread_id"]
    with make_client(server, key) as client:
        return client.beta.threads.runs.list(thread_id=thread_id, limit=1).data[0]


def test_stream_frames_are_exactly_the_deltas_then_the_answer(
    acme: AssistdServer, fake: FakeUpstream
) -> None:
    helper = assistant(acme, name="helper-stream-bytes")
    sid = session_id()
    fake.push(Text("Exact bytes.", chunks=["Exact", " bytes", "."]))
    raw = stream_bytes(acme, PUBLIC, session_id=sid, user_input="bytes?", assistant=helper)
    run = last_run(acme, PUBLIC, sid)
    final = {"session_id": sid, "response": "Exact bytes.", "thread_id": run.thread_id, "run_id": run.id}
    deltas = [data_frame({"delta": piece}) for piece in ("Exact", " bytes", ".")]
    assert raw == b"".join([*deltas, data_frame(final)])


def test_a_failed_run_answers_502_with_its_reason(acme: AssistdServer, fake: FakeUpstream) -> None:
    helper = assistant(acme, name="helper-failing")
    sid = session_id()
    fake.push(Error(400, "This model does not support that."))
    response = ask(acme, ADMIN, session_id=sid, user_input="hi", assistant=helper)
    run = last_run(acme, ADMIN, sid)
    assert run.status == "failed" and run.last_error is not None
    assert "This model does not support that." in run.last_error.message
    expected = {
        "message": f"The run failed: {run.last_error.message}",
        "type": "server_error",
        "param": None,
        "code": run.last_error.code,
    }
    assert error_of(response, 502) == expected

    # Streamed, the same error is the one frame: the status line (200) was sent before the run failed.
    fake.push(Error(400, "This model does not support that."))
    raw = stream_bytes(acme, ADMIN, session_id=sid, user_input="again")
    run = last_run(acme, ADMIN, sid)
    assert run.status == "failed" and run.last_error is not None
    expected["message"], expected["code"] = f"The run failed: {run.last_error.message}", run.last_error.code
    assert raw == data_frame({"error": expected}, compact=False)


def test_a_function_call_is_refused_and_its_run_cancelled(acme: AssistdServer, fake: FakeUpstream) -> None:
    helper = assistant(acme, name="helper-functions", tools=[WEATHER_TOOL])
    sid = session_id()
    fake.push(ToolCalls([("get_weather", {"city": "Paris"})]))
    response = ask(acme, ADMIN, session_id=sid, user_input="Weather in Paris?", assistant=helper)
    assert error_of(response, 400) == {
        "message": "The assistant called a function, and /ask has no way to supply its output: the run was "
        "cancelled. Use an assistant without function tools, or the runs API.",
        "type": "invalid_request_error",
        "param": "assistant",
        "code": "requires_action",
    }
    assert last_run(acme, ADMIN, sid).status == "cancelled"
    # The thread was freed: the session goes on.
    fake.push(Text("Sunny, probably."))
    assert ask_ok(acme, ADMIN, session_id=sid, user_input="Never mind.")["response"] == "Sunny, probably."


def test_a_fresh_tenant_is_answered_by_its_default_assistant(acme: AssistdServer, fake: FakeUpstream) -> None:
    assert listed_assistants(acme, FRESH_SOLO) == []
    sid = session_id()
    fake.push(Text("Hello from the default."))
    first = ask_ok(acme, FRESH_SOLO, session_id=sid, user_input="Hi there")
    assert first["response"] == "Hello from the default."

    # Made on first use: a normal assistant of the tenant, marked, with the server's default model (the
    # upstream's first listed one: no ASSISTD_DEFAULT_MODEL here) and neutral instructions.
    (made,) = listed_assistants(acme, FRESH_SOLO)
    assert (made.name, made.model, made.instructions, made.metadata) == (
        "Default assistant",
        "fake-model",
        NEUTRAL,
        DEFAULT_MARK,
    )
    assert made.tools == []
    assert session_assistant(acme, FRESH_SOLO, sid) == made.id
    (request,) = fake.requests
    assert request["model"] == "fake-model"
    assert request["messages"] == [
        {"role": "system", "content": NEUTRAL},
        {"role": "user", "content": "Hi there"},
    ]

    # A second turn and a second session use it again: still exactly one.
    ask_ok(acme, FRESH_SOLO, session_id=sid, user_input="Again")
    other = session_id()
    ask_ok(acme, FRESH_SOLO, session_id=other, user_input="Someone else")
    assert [a.id for a in listed_assistants(acme, FRESH_SOLO)] == [made.id]
    assert session_assistant(acme, FRESH_SOLO, other) == made.id

    # Deleted by the tenant: the next call makes a new one (and the session moves to it).
    with make_client(acme, FRESH_SOLO) as client:
        assert client.beta.assistants.delete(made.id).deleted
    ask_ok(acme, FRESH_SOLO, session_id=sid, user_input="Still there?")
    (remade,) = listed_assistants(acme, FRESH_SOLO)
    assert remade.id != made.id and remade.metadata == DEFAULT_MARK and remade.model == "fake-model"
    assert session_assistant(acme, FRESH_SOLO, sid) == remade.id
    # Other tenants have their own, or none yet: the default is per tenant.
    assert not {a.id for a in listed_assistants(acme, OTHER)} & {made.id, remade.id}


def test_concurrent_first_calls_make_one_default(acme: AssistdServer) -> None:
    assert listed_assistants(acme, FRESH_RACE) == []
    sids = [session_id() for _ in range(6)]
    start = threading.Barrier(len(sids))
    results: dict[str, httpx.Response] = {}

    def send(sid: str) -> None:
        start.wait(timeout=30)
        results[sid] = ask(acme, FRESH_RACE, session_id=sid, user_input="first words")

    workers = [threading.Thread(target=send, args=(sid,)) for sid in sids]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert all(results[sid].status_code == 200 for sid in sids), [r.text for r in results.values()]
    (made,) = listed_assistants(acme, FRESH_RACE)
    assert made.metadata == DEFAULT_MARK
    assert {session_assistant(acme, FRESH_RACE, sid) for sid in sids} == {made.id}


def test_the_tenants_own_assistants_are_never_guessed(acme: AssistdServer, fake: FakeUpstream) -> None:
    alpha = assistant(acme, FRESH_MANY, name="alpha", instructions="You are Alpha.")
    # Even the tenant's only assistant is not taken for one nobody named.
    one = session_id()
    ask_ok(acme, FRESH_MANY, session_id=one, user_input="who answers?")
    beta = assistant(acme, FRESH_MANY, name="beta", instructions="You are Beta.")
    several = session_id()
    ask_ok(acme, FRESH_MANY, session_id=several, user_input="who answers now?")

    (made,) = defaults_of(acme, FRESH_MANY)
    assert made.id not in (alpha, beta)
    assert {a.id for a in listed_assistants(acme, FRESH_MANY)} == {alpha, beta, made.id}
    assert session_assistant(acme, FRESH_MANY, one) == session_assistant(acme, FRESH_MANY, several) == made.id
    assert [r["messages"][0] for r in fake.requests] == [{"role": "system", "content": NEUTRAL}] * 2
    # Named, the tenant's own answers, and the session keeps it.
    ask_ok(acme, FRESH_MANY, session_id=several, user_input="alpha?", assistant="alpha")
    ask_ok(acme, FRESH_MANY, session_id=several, user_input="still alpha?")
    assert [r["messages"][0]["content"] for r in fake.requests[2:]] == ["You are Alpha."] * 2


def test_default_assistant_rules(
    tmp_path_factory: pytest.TempPathFactory, databases: Databases, fake: FakeUpstream
) -> None:
    keys = "team:sk-def-a,team:sk-def-b"
    srv = own_server(
        tmp_path_factory,
        databases,
        fake,
        api_keys=keys,
        ask_default_assistant="helper",
        default_model="fake-model-large",
    )
    try:
        # The configured default does not exist in this tenant yet: the built-in one answers, with
        # ASSISTD_DEFAULT_MODEL's model.
        sid = session_id()
        ask_ok(srv, "sk-def-a", session_id=sid, user_input="hi")
        (built_in,) = defaults_of(srv, "sk-def-a")
        assert built_in.model == "fake-model-large"
        assert session_assistant(srv, "sk-def-b", sid) == built_in.id

        # Made private by the tenant, the built-in default refuses other keys like any private one.
        private_meta = DEFAULT_MARK | {"ask_allowed_keys": fingerprint("sk-def-a")}
        with make_client(srv, "sk-def-a") as a:
            a.beta.assistants.update(built_in.id, metadata=private_meta)
        error = error_of(ask(srv, "sk-def-b", session_id=session_id(), user_input="hi"), 404)
        assert error["param"] == "assistant" and "key_" not in error["message"]
        with make_client(srv, "sk-def-a") as a:
            a.beta.assistants.update(built_in.id, metadata=DEFAULT_MARK)

        solo = assistant(srv, "sk-def-a", name="solo")
        helper = assistant(srv, "sk-def-a", name="helper")
        # Once it exists, ASSISTD_ASK_DEFAULT_ASSISTANT wins over the built-in default for new sessions...
        fresh = session_id()
        ask_ok(srv, "sk-def-b", session_id=fresh, user_input="hi")
        assert session_assistant(srv, "sk-def-a", fresh) == helper
        assert fake.requests[-1]["model"] == "fake-model"
        # ...while a session keeps the assistant it has.
        ask_ok(srv, "sk-def-a", session_id=sid, user_input="hi again")
        assert session_assistant(srv, "sk-def-a", sid) == built_in.id
        # Naming another assistant switches the session to it.
        ask_ok(srv, "sk-def-a", session_id=sid, user_input="hi", assistant="solo")
        assert session_assistant(srv, "sk-def-a", sid) == solo
        assert [a.id for a in defaults_of(srv, "sk-def-b")] == [built_in.id]
    finally:
        srv.stop()


@pytest.mark.slow
def test_sessions_survive_a_restart(
    tmp_path_factory: pytest.TempPathFactory, databases: Databases, fake: FakeUpstream
) -> None:
    first = own_server(tmp_path_factory, databases, fake)
    try:
        helper = assistant(first, "sk-test-alpha", name="helper-restart")
        sid = session_id()
        fake.push(Text("Noted: the code word is heron."))
        before = ask_ok(
            first, "sk-test-alpha", session_id=sid, user_input="The code word is heron.", assistant=helper
        )
    finally:
        first.stop()
    second = AssistdServer(first.data_dir, first.database_url, first.extra_env).start(timeout=90)
    try:
        fake.push(Text("It is heron."))
        after = ask_ok(second, "sk-test-alpha", session_id=sid, user_input="What is the code word?")
        assert after["thread_id"] == before["thread_id"]
        contents = [(m["role"], m["content"]) for m in fake.requests[-1]["messages"]]
        assert ("user", "The code word is heron.") in contents
        assert ("assistant", "Noted: the code word is heron.") in contents
        with http(second, "sk-test-alpha") as client:
            assert [s["id"] for s in client.get("/ask/sessions").json()["data"]] == [sid]
    finally:
        second.stop()


def _keys_cli(*args: str, keys: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASSISTD_")}
    if keys is not None:
        env["ASSISTD_API_KEYS"] = keys
    return subprocess.run(
        [sys.executable, "-m", "assistd", "keys", *args], env=env, capture_output=True, text=True, timeout=60
    )


def test_keys_command_prints_fingerprints_and_tenants(tmp_path_factory: pytest.TempPathFactory) -> None:
    shown = _keys_cli(keys=KEYS_ENV)
    assert shown.returncode == 0, shown.stderr
    assert "sk-" not in shown.stdout
    rows = [line.split() for line in shown.stdout.splitlines()[1:]]
    assert [row[0] for row in rows] == [fingerprint(ADMIN), fingerprint(PUBLIC), fingerprint(OTHER)]
    assert rows[0][1] == rows[1][1] and rows[0][2] == rows[1][2] == "acme"
    # A plain key keeps the tenant it always had.
    assert rows[2][1] == "t_" + hashlib.sha256(OTHER.encode()).hexdigest()[:24] and rows[2][2] == "-"

    fresh = _keys_cli("new").stdout.strip()
    assert fresh.startswith("sk-") and len(fresh) >= 40 and "," not in fresh and ":" not in fresh

    clash = _keys_cli(keys="a:sk-same,b:sk-same")
    assert clash.returncode == 2 and fingerprint("sk-same") in clash.stderr and "sk-same" not in clash.stderr


def test_named_tenant_keys_share_objects(acme: AssistdServer) -> None:
    with (
        make_client(acme, ADMIN) as admin,
        make_client(acme, PUBLIC) as public,
        make_client(acme, OTHER) as other,
    ):
        made = admin.beta.assistants.create(model="fake-model", name="shared-in-acme")
        assert public.beta.assistants.retrieve(made.id).id == made.id
        assert made.id not in {a.id for a in other.beta.assistants.list(limit=100).data}
