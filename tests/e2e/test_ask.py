"""The /ask session service: sessions as threads kept per tenant, turns in order, private assistants,
named tenants of several keys, streaming; and ``assistd keys``."""

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

import assistd
from conftest import Databases, make_client
from fake_upstream import Echo, FakeUpstream, Text
from server import AssistdServer

ADMIN, PUBLIC, OTHER = "sk-ask-admin", "sk-ask-public", "sk-other"
KEYS_ENV = f"acme:{ADMIN},acme:{PUBLIC},{OTHER}"


def fingerprint(key: str) -> str:
    return "key_" + hashlib.sha256(key.encode()).hexdigest()[:12]


@pytest.fixture(scope="module")
def acme(
    tmp_path_factory: pytest.TempPathFactory, databases: Databases, fake: FakeUpstream
) -> Iterator[AssistdServer]:
    srv = own_server(tmp_path_factory, databases, fake, api_keys=KEYS_ENV)
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
    assistant(acme, name="helper-bad-requests-too")
    sid = session_id()
    assert error_of(ask(acme, ADMIN, session_id=sid), 400)["param"] == "user_input"
    assert error_of(ask(acme, ADMIN, user_input="hi"), 400)["param"] == "session_id"
    assert error_of(ask(acme, ADMIN, session_id="", user_input="hi"), 400)["param"] == "session_id"
    error = error_of(ask(acme, ADMIN, session_id=sid, user_input="hi", assistant="nobody"), 404)
    assert error["param"] == "assistant" and "nobody" in error["message"]
    error = error_of(ask(acme, ADMIN, session_id=sid, user_input="hi", assistant=helper, colour="red"), 400)
    assert error["param"] == "colour"
    # Several assistants and none named: the caller must choose.
    assert error_of(ask(acme, ADMIN, session_id=sid, user_input="hi"), 400)["param"] == "assistant"
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


def test_default_assistant_rules(
    tmp_path_factory: pytest.TempPathFactory, databases: Databases, fake: FakeUpstream
) -> None:
    keys = "team:sk-def-a,team:sk-def-b"
    srv = own_server(tmp_path_factory, databases, fake, api_keys=keys, ask_default_assistant="helper")
    try:
        sid = session_id()
        assert error_of(ask(srv, "sk-def-a", session_id=sid, user_input="hi"), 400)["param"] == "assistant"
        assistant(srv, "sk-def-a", name="private", metadata={"ask_allowed_keys": fingerprint("sk-def-a")})
        solo = assistant(srv, "sk-def-a", name="solo")
        # Key b may use only "solo": it is the one; key a may use two, and neither is the default.
        assert ask_ok(srv, "sk-def-b", session_id=session_id(), user_input="hi")["response"]
        with http(srv, "sk-def-b") as b:  # the refused call opened no session
            assert b.get(f"/ask/sessions/{sid}").status_code == 404
        error = error_of(ask(srv, "sk-def-a", session_id=sid, user_input="hi"), 400)
        assert error["param"] == "assistant"
        helper = assistant(srv, "sk-def-a", name="helper")
        answered = ask_ok(srv, "sk-def-a", session_id=sid, user_input="hi")
        with http(srv, "sk-def-b") as b:
            assert b.get(f"/ask/sessions/{sid}").json()["assistant_id"] == helper
            listed = b.get("/ask/sessions").json()["data"]
        assert sid in {s["id"] for s in listed}
        assert answered["thread_id"]
        # Naming another assistant switches the session to it.
        ask_ok(srv, "sk-def-a", session_id=sid, user_input="hi", assistant="solo")
        with http(srv, "sk-def-a") as a:
            assert a.get(f"/ask/sessions/{sid}").json()["assistant_id"] == solo
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
