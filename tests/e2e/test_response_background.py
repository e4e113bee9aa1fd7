"""Background responses (``background: true``): answered at once, executed by a worker, polled, cancelled,
resumed as a stream from any event (``GET /v1/responses/{id}?stream=true&starting_after=N``) with the same
sequence numbers as the original stream, surviving a SIGKILL of the server, pruned after their retention."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from typing import Any

import asyncpg
import httpx
import openai
import pytest
from openai import OpenAI
from openai.types.responses import Response

from conftest import Databases, make_client
from fake_upstream import FakeUpstream, Hang, Stall, Text
from responses_wire import EVENTS, post, spec_check, sse_frames, stream_frames, strict, text_stream
from restarts import Servers, query
from server import KEYS, AssistdServer

Frame = tuple[str, dict[str, Any]]
_HEADERS = {"Authorization": f"Bearer {KEYS[0]}"}
_ENDED = {"completed", "failed", "cancelled", "incomplete"}
_DEADLINE_SECONDS = 30.0


def _create(client: OpenAI, **body: Any) -> Response:
    raw = client.responses.with_raw_response.create(**body)
    return strict(json.loads(raw.http_response.text))


def _retrieve(client: OpenAI, response_id: str) -> Response:
    raw = client.responses.with_raw_response.retrieve(response_id)
    return strict(json.loads(raw.http_response.text))


def _until_ended(client: OpenAI, server: AssistdServer, response_id: str) -> Response:
    """Poll the response, as a client of a background response does, until it has ended."""
    deadline = time.monotonic() + _DEADLINE_SECONDS
    while True:
        response = _retrieve(client, response_id)
        if response.status in _ENDED:
            return response
        assert time.monotonic() < deadline, f"{response_id} is still {response.status}\n{server.log()}"
        time.sleep(0.05)


def _resumed(server: AssistdServer, response_id: str, after: int | None = None) -> list[Frame]:
    """The raw frames of ``GET /v1/responses/{id}?stream=true`` (from the event after ``after``)."""
    params: dict[str, Any] = {"stream": "true"}
    if after is not None:
        params["starting_after"] = after
    with (
        httpx.Client(base_url=server.base_url, timeout=30, headers=_HEADERS) as http,
        http.stream("GET", f"/responses/{response_id}", params=params) as answer,
    ):
        assert answer.status_code == 200, answer.read()
        return sse_frames(answer)


def _checked(frames: list[Frame]) -> None:
    """Every frame a valid Responses stream event (the SDK's types, OpenAI's description), named as typed."""
    for name, data in frames:
        spec_check(data, "ResponseStreamEvent")
        assert getattr(EVENTS.validate_python(data), "type") == name  # noqa: B009


def _same_events(replayed: list[Frame], original: list[Frame]) -> None:
    """The same events with the same numbers; the opening events' response aside (read at the replay, it is
    shown as it stood before the run wrote anything: same id, no output)."""
    assert [(n, d["sequence_number"]) for n, d in replayed] == [
        (n, d["sequence_number"]) for n, d in original
    ]
    for (name, again), (_, first) in zip(replayed, original, strict=True):
        if name in ("response.created", "response.in_progress"):
            shown, was = again["response"], first["response"]
            assert (shown["id"], shown["output"], shown["background"]) == (was["id"], [], True)
            assert was["output"] == [] and was["status"] in ("queued", "in_progress")
        else:
            assert again == first, name


def test_background_response_is_answered_at_once_and_polled(
    server: AssistdServer, client: OpenAI, fake: FakeUpstream
) -> None:
    # The upstream holds the answer back: the create cannot have waited for it.
    fake.push(Hang(2, then=Text("Done in the background.", prompt_tokens=7, completion_tokens=4)))
    queued = _create(client, model="fake-model", input="Take your time", background=True)
    assert queued.status in ("queued", "in_progress")
    assert (queued.background, queued.store, queued.output, queued.usage) == (True, True, [], None)
    done = _until_ended(client, server, queued.id)
    assert (done.status, done.background, done.output_text) == ("completed", True, "Done in the background.")
    assert done.usage is not None and (done.usage.input_tokens, done.usage.output_tokens) == (7, 4)
    # An ordinary stored response from then on: a chain goes on from it.
    fake.push("Next.")
    after = _create(client, model="fake-model", input="And?", previous_response_id=queued.id)
    assert (after.status, after.background, after.output_text) == ("completed", False, "Next.")


def test_background_must_be_stored(server: AssistdServer) -> None:
    answer = post(
        server, "/responses", {"model": "fake-model", "input": "Hi", "background": True, "store": False}
    )
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert (error["param"], error["type"]) == ("store", "invalid_request_error")


def test_resume_gives_the_original_stream_from_any_event(
    server: AssistdServer, client: OpenAI, fake: FakeUpstream
) -> None:
    chunks = ["One ", "two ", "three ", "four."]
    fake.push(Text("".join(chunks), chunks=chunks))
    body = {"model": "fake-model", "input": "Count", "stream": True, "background": True}
    original = stream_frames(server, body)
    assert [name for name, _ in original] == text_stream(len(chunks))
    assert [data["sequence_number"] for _, data in original] == list(range(len(original)))
    response_id = original[0][1]["response"]["id"]
    assert original[-1][1]["response"]["background"] is True
    whole = _resumed(server, response_id)
    _checked(whole)
    _same_events(whole, original)
    for after in (0, 1, 4, len(original) - 2, len(original) - 1):
        resumed = _resumed(server, response_id, after)
        _checked(resumed)
        _same_events(resumed, original[after + 1 :])
    # The SDK's call: retrieve(id, stream=True, starting_after=N), events parsed by its types.
    with client.responses.retrieve(response_id, stream=True, starting_after=3) as events:
        through_sdk = [(event.type, event.sequence_number) for event in events]
    assert through_sdk == [(name, data["sequence_number"]) for name, data in original[4:]]
    # include_obfuscation is accepted (assistd's deltas have no padding to leave out).
    plain = client.responses.retrieve(response_id, stream=True, starting_after=5, include_obfuscation=False)
    assert [event.sequence_number for event in plain] == list(range(6, len(original)))


def test_resume_follows_a_running_response_live(
    server: AssistdServer, client: OpenAI, fake: FakeUpstream
) -> None:
    fake.push(Stall(1.5, text="Half way ", rest="and done."))
    queued = _create(client, model="fake-model", input="Go", background=True)
    with client.responses.retrieve(queued.id, stream=True) as events:
        live = [event.model_dump(mode="json", exclude_unset=True) for event in events]
    assert live[-1]["type"] == "response.completed"
    assert [event["sequence_number"] for event in live] == list(range(len(live)))
    assert (
        "".join(e["delta"] for e in live if e["type"] == "response.output_text.delta") == "Half way and done."
    )
    # Once it has ended, the replay from the middle is the live stream's tail, numbers and all.
    middle = next(n for n, e in enumerate(live) if e["type"] == "response.output_text.delta")
    tail = _resumed(server, queued.id, middle)
    _checked(tail)
    assert [data for _, data in tail] == live[middle + 1 :]
    assert _until_ended(client, server, queued.id).output_text == "Half way and done."


def test_a_background_stream_left_by_its_client_goes_on(
    server: AssistdServer, client: OpenAI, fake: FakeUpstream
) -> None:
    fake.push(Hang(1, then=Text("Finished without you.")))
    with (
        httpx.Client(base_url=server.base_url, timeout=30, headers=_HEADERS) as http,
        http.stream(
            "POST",
            "/responses",
            json={"model": "fake-model", "input": "Hi", "stream": True, "background": True},
        ) as answer,
    ):
        first = json.loads(next(line for line in answer.iter_lines() if line.startswith("data: "))[6:])
    # The connection is closed: the response goes on all the same.
    assert first["type"] == "response.created" and first["response"]["background"] is True
    done = _until_ended(client, server, first["response"]["id"])
    assert (done.status, done.output_text) == ("completed", "Finished without you.")


def test_cancel_a_background_response(server: AssistdServer, client: OpenAI, fake: FakeUpstream) -> None:
    fake.push(Hang(30, then=Text("Too late.")))
    queued = _create(client, model="fake-model", input="Slow", background=True)
    fake.wait_for_requests(1, timeout=10)
    raw = client.responses.with_raw_response.cancel(queued.id)
    cancelled = strict(json.loads(raw.http_response.text))
    assert (cancelled.status, cancelled.background) == ("cancelled", True), server.log()[-6000:]
    assert _retrieve(client, queued.id).status == "cancelled"
    # Its stream ends as a cancelled response's does: response.failed carrying the cancelled response.
    frames = _resumed(server, queued.id)
    _checked(frames)
    assert [name for name, _ in frames] == ["response.created", "response.in_progress", "response.failed"]
    assert frames[-1][1]["response"]["status"] == "cancelled"
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.cancel(queued.id)
    assert isinstance(caught.value.body, dict) and caught.value.body["param"] == "response_id"


def test_only_a_background_response_is_streamed_again(
    server: AssistdServer, client: OpenAI, fake: FakeUpstream
) -> None:
    fake.push("In the foreground.")
    response = client.responses.create(model="fake-model", input="Hi")
    with httpx.Client(base_url=server.base_url, timeout=30, headers=_HEADERS) as http:
        refused = http.get(f"/responses/{response.id}", params={"stream": "true"})
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"]["param"] == "stream"
        unknown = http.get("/responses/resp_nope", params={"stream": "true"})
        assert unknown.status_code == 404, unknown.text
        negative = http.get(f"/responses/{response.id}", params={"stream": "true", "starting_after": -1})
        assert negative.status_code == 400 and negative.json()["error"]["param"] == "starting_after"
        # Without stream, starting_after changes nothing: the response.
        plain = http.get(f"/responses/{response.id}", params={"starting_after": 3})
        assert strict(plain.json()).output_text == "In the foreground."


# Restarts ----------------------------------------------------------------------------------------


def _logged_deltas(url: str, run_id: str) -> int:
    rows = query(
        url, "SELECT count(*) FROM run_events WHERE run_id = ? AND event = 'thread.message.delta'", run_id
    )
    return int(rows[0][0])


@pytest.mark.slow
def test_a_background_response_survives_a_sigkill(
    tmp_path_factory: pytest.TempPathFactory, databases: Databases, fake: FakeUpstream
) -> None:
    servers = Servers(tmp_path_factory, databases, fake)
    try:
        server = servers.start()
        fake.push(Stall(30, text="Interrupted "), Text("After the restart."))
        with make_client(server) as client:
            queued = _create(client, model="fake-model", input="Survive", background=True)
            fake.wait_for_requests(1, timeout=10)
            run_id = query(server.database_url, "SELECT run_id FROM responses WHERE id = ?", queued.id)[0][0]
            postgres = not server.database_url.startswith("sqlite")
            deadline = time.monotonic() + _DEADLINE_SECONDS
            # On PostgreSQL the run's log is in the database: the killed attempt's text is in it first.
            while postgres and not _logged_deltas(server.database_url, run_id):
                assert time.monotonic() < deadline, server.log()
                time.sleep(0.05)
        server = servers.restart(kill=True)
        with make_client(server) as client:
            done = _until_ended(client, server, queued.id)
            assert (done.status, done.background) == ("completed", True)
            assert done.output_text.endswith("After the restart.")
            with client.responses.retrieve(queued.id, stream=True) as events:
                again = [event.model_dump(mode="json", exclude_unset=True) for event in events]
        for event in again:
            EVENTS.validate_python(event)
        assert again[-1]["type"] == "response.completed"
        assert again[-1]["response"]["status"] == "completed"
        numbers = [event["sequence_number"] for event in again]
        assert numbers == list(range(len(again)))
        if postgres:
            # The whole stream, across the crash: the killed attempt's message, closed, then the new one.
            deltas = [e["delta"] for e in again if e["type"] == "response.output_text.delta"]
            assert deltas[0] == "Interrupted " and "".join(deltas).endswith("After the restart.")
            items = [e["item"]["status"] for e in again if e["type"] == "response.output_item.done"]
            assert items == ["incomplete", "completed"]
        else:
            # One process on SQLite keeps a run's log in memory: the restart lost the start of it, so the
            # stream cannot be numbered as the original was, and is the response's last event.
            assert [e["type"] for e in again] == ["response.created", "response.completed"]
    finally:
        servers.close()


# Retention ---------------------------------------------------------------------------------------


def _execute(url: str, sql: str, *params: object) -> None:
    """A write straight to the server's database: the test moves a response back in time."""
    if url.startswith("sqlite"):
        with contextlib.closing(sqlite3.connect(url.split("///", 1)[1], timeout=30)) as connection:
            connection.execute(sql, params)
            connection.commit()
        return
    numbered = sql.replace("?", "$1", 1).replace("?", "$2", 1)

    async def write() -> None:
        connection = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            await connection.execute(numbered, *params)
        finally:
            await connection.close()

    asyncio.run(write())


def _age(server: AssistdServer, response_id: str, days: int) -> None:
    _execute(
        server.database_url,
        "UPDATE responses SET created_at = ? WHERE id = ?",
        int(time.time()) - days * 86_400,
        response_id,
    )


def _until_gone(client: OpenAI, server: AssistdServer, response_id: str) -> None:
    """Until the workers' maintenance has pruned the response (it runs every tenth of a second here)."""
    deadline = time.monotonic() + _DEADLINE_SECONDS
    while True:
        try:
            client.responses.retrieve(response_id)
        except openai.NotFoundError:
            return
        assert time.monotonic() < deadline, f"{response_id} was not pruned\n{server.log()}"
        time.sleep(0.05)


def test_responses_past_their_retention_are_pruned(
    tmp_path_factory: pytest.TempPathFactory, databases: Databases, fake: FakeUpstream
) -> None:
    servers = Servers(tmp_path_factory, databases, fake)
    # The run event log's retention sets how often the workers prune: every tenth of it.
    server = servers.start(response_retention_days="30", run_events_retention_seconds="1")
    try:
        with make_client(server) as client:
            fake.push("First.", "Second.", "On the conversation.", "Recent.")
            first = client.responses.create(model="fake-model", input="One", background=True)
            _until_ended(client, server, first.id)
            second = client.responses.create(model="fake-model", input="Two", previous_response_id=first.id)
            conversation = client.conversations.create()
            talk = client.responses.create(model="fake-model", input="Three", conversation=conversation.id)
            recent = client.responses.create(model="fake-model", input="Four")
            chain_thread = query(
                server.database_url, "SELECT thread_id FROM responses WHERE id = ?", second.id
            )
            assert chain_thread == query(
                server.database_url, "SELECT thread_id FROM responses WHERE id = ?", first.id
            )
            thread_id = str(chain_thread[0][0])
            for old in (first, talk):
                _age(server, old.id, 31)
            _age(server, recent.id, 29)
            _until_gone(client, server, first.id)
            _until_gone(client, server, talk.id)
            # The chain's thread is kept for the response still on it; a conversation is never pruned.
            assert client.conversations.retrieve(thread_id).id == thread_id
            assert client.responses.retrieve(second.id).output_text == "Second."
            assert client.conversations.retrieve(conversation.id).id == conversation.id
            assert len(client.conversations.items.list(conversation.id).data) == 2
            _age(server, second.id, 31)
            _until_gone(client, server, second.id)
            # The last response of the chain gone, the thread of its own goes with it.
            with pytest.raises(openai.NotFoundError):
                client.conversations.retrieve(thread_id)
            assert client.responses.retrieve(recent.id).output_text == "Recent."
    finally:
        servers.close()


# Replicas ----------------------------------------------------------------------------------------


@pytest.mark.postgres_only
def test_background_responses_across_replicas(
    tmp_path_factory: pytest.TempPathFactory, databases: Databases, fake: FakeUpstream
) -> None:
    """An API-only replica takes the response, a worker process executes it, a second API-only replica
    streams it again and cancels another: all through the database."""
    url = databases.new()
    env = {"ASSISTD_UPSTREAM_BASE_URL": fake.base_url, "ASSISTD_UPSTREAM_API_KEY": "sk-upstream"}
    front = AssistdServer(tmp_path_factory.mktemp("front"), url, env, args=("--workers", "0"))
    other = AssistdServer(tmp_path_factory.mktemp("other"), url, env, args=("--workers", "0"))
    worker = AssistdServer(tmp_path_factory.mktemp("worker"), url, env, worker=True)
    try:
        front.start(timeout=60)
        other.start(timeout=60)
        worker.start(timeout=60)
        fake.push(Stall(1.5, text="From the ", rest="worker."), Hang(30, then=Text("Never.")))
        with make_client(front) as client, make_client(other) as elsewhere:
            queued = _create(client, model="fake-model", input="Hi", background=True)
            with elsewhere.responses.retrieve(queued.id, stream=True) as events:
                live = [event.model_dump(mode="json", exclude_unset=True) for event in events]
            deltas = [e["delta"] for e in live if e["type"] == "response.output_text.delta"]
            assert [e["type"] for e in live] == text_stream(len(deltas))
            assert "".join(deltas) == "From the worker."
            assert [e["sequence_number"] for e in live] == list(range(len(live)))
            assert strict(live[-1]["response"]).output_text == "From the worker."
            for after in (2, 4):
                assert [data for _, data in _resumed(front, queued.id, after)] == live[after + 1 :]
            slow = _create(client, model="fake-model", input="Slow", background=True)
            fake.wait_for_requests(2, timeout=10)
            raw = elsewhere.responses.with_raw_response.cancel(slow.id)
            assert strict(json.loads(raw.http_response.text)).status == "cancelled"
            try:
                after_cancel = _retrieve(client, slow.id)
            except openai.InternalServerError:
                # Seen once under heavy load and not reproduced since: the replica's log says why.
                pytest.fail(f"retrieve after a cancel failed\n{front.log()[-8000:]}")
            assert after_cancel.status == "cancelled"
    finally:
        worker.stop()
        other.stop()
        front.stop()
