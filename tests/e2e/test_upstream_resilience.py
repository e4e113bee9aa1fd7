"""The upstream fails: retries (429, 5xx, timeouts, dropped connections), exhaustion, and no leaked key."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from openai import OpenAI
from openai.types.beta.threads import Message, Run
from openai.types.beta.threads.runs import RunStep

from conftest import Databases, make_client, start_server
from fake_upstream import Drop, Error, FakeUpstream, Hang, StreamError, Text
from server import KEYS, AssistdServer
from sse import frames_of
from wire import check, raw

SECRET = "sk-upstream-secret"


@pytest.fixture(scope="module")
def fragile(
    tmp_path_factory: pytest.TempPathFactory, databases: Databases, fake: FakeUpstream
) -> Iterator[AssistdServer]:
    """One retry only, and a short upstream timeout."""
    srv = start_server(
        tmp_path_factory, databases, fake, upstream_max_retries="1", upstream_timeout_seconds="0.5"
    )
    yield srv
    srv.stop()


@pytest.fixture
def fragile_client(fragile: AssistdServer) -> Iterator[OpenAI]:
    with make_client(fragile) as c:
        yield c


def _run_once(client: OpenAI, text: str = "hello") -> tuple[Run, dict[str, Any]]:
    """Create and poll a run; returns it and the raw JSON of its final retrieve."""
    assistant = client.beta.assistants.create(model="fake-model")
    thread = client.beta.threads.create(messages=[{"role": "user", "content": text}])
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    data = raw(client.beta.threads.runs.with_raw_response.retrieve(run_id=run.id, thread_id=thread.id))
    return check(Run, data, "RunObject"), data


def _reply(client: OpenAI, run: Run) -> Message:
    message = client.beta.threads.messages.list(thread_id=run.thread_id).data[0]
    assert message.role == "assistant" and message.run_id == run.id
    return message


def _text(message: Message) -> str:
    block = message.content[0]
    assert block.type == "text"
    return block.text.value


def _no_secret(*texts: str) -> None:
    for text in texts:
        assert SECRET not in text


# --------------------------------------------------------------------------------------------------


def test_rate_limit_then_server_error_then_success(client: OpenAI, fake: FakeUpstream) -> None:
    fake.push(Error(429, retry_after=0.1), Error(500), Text("Recovered after two failures."))
    run, _ = _run_once(client)
    assert run.status == "completed"
    assert run.last_error is None
    assert len(fake.requests) == 3
    assert fake.requests[0] == fake.requests[1] == fake.requests[2]  # the same request, retried
    assert _text(_reply(client, run)) == "Recovered after two failures."
    # The key reached the upstream, so a leak below would have been possible.
    assert fake.request_headers[0]["authorization"] == f"Bearer {SECRET}"


def test_upstream_timeout_is_retried(fragile_client: OpenAI, fake: FakeUpstream) -> None:
    fake.push(Hang(5), Text("After the hang."))
    run, _ = _run_once(fragile_client)
    assert run.status == "completed"
    assert len(fake.requests) == 2
    assert _text(_reply(fragile_client, run)) == "After the hang."


def test_dropped_connection_before_any_text_is_retried(client: OpenAI, fake: FakeUpstream) -> None:
    fake.push(Drop(text=""), Text("Second time lucky."))
    run, _ = _run_once(client)
    assert run.status == "completed"
    assert len(fake.requests) == 2
    message = _reply(client, run)
    assert _text(message) == "Second time lucky."
    assert len(client.beta.threads.messages.list(thread_id=run.thread_id).data) == 2  # no half message


def test_dropped_connection_after_text_fails_the_run(client: OpenAI, fake: FakeUpstream) -> None:
    # Text already streamed to clients cannot be taken back: a retry would repeat it, so the run fails.
    fake.push(Drop(text="Half an ans"), Text("never used"))
    run, data = _run_once(client)
    assert run.status == "failed"
    assert run.last_error is not None and run.last_error.code == "server_error"
    assert run.failed_at is not None
    assert len(fake.requests) == 1
    message = _reply(client, run)
    assert message.status == "incomplete"
    assert message.incomplete_details is not None and message.incomplete_details.reason == "run_failed"
    assert _text(message) == "Half an ans"  # what the run's streams showed before the failure
    steps = client.beta.threads.runs.steps.list(run_id=run.id, thread_id=run.thread_id).data
    (step,) = [check(RunStep, s, "RunStepObject") for s in steps]
    assert step.status == "failed" and step.last_error is not None
    _no_secret(json.dumps(data))


def test_exhausted_retries_fail_the_run(
    fragile: AssistdServer, fragile_client: OpenAI, fake: FakeUpstream
) -> None:
    fake.push(Error(500), Error(500), Error(500))
    run, data = _run_once(fragile_client)
    assert run.status == "failed"
    assert len(fake.requests) == 2  # the first attempt and the one retry allowed
    assert run.last_error is not None
    assert run.last_error.code == "server_error"
    assert "retries" in run.last_error.message and "500" in run.last_error.message
    assert run.failed_at is not None and run.completed_at is None
    assert data["last_error"] == {"code": "server_error", "message": run.last_error.message}
    # The thread is free again.
    fragile_client.beta.threads.messages.create(thread_id=run.thread_id, role="user", content="again")
    again = fragile_client.beta.threads.runs.create_and_poll(
        thread_id=run.thread_id, assistant_id=run.assistant_id
    )
    assert again.status == "completed"


def test_exhausted_rate_limits_fail_with_rate_limit_code(fragile_client: OpenAI, fake: FakeUpstream) -> None:
    fake.push(Error(429, retry_after=0.05), Error(429, retry_after=0.05))
    run, _ = _run_once(fragile_client)
    assert run.status == "failed"
    assert run.last_error is not None
    assert run.last_error.code == "rate_limit_exceeded"
    assert "429" in run.last_error.message
    assert len(fake.requests) == 2


def test_non_retryable_error_fails_at_once(client: OpenAI, fake: FakeUpstream) -> None:
    fake.push(Error(400, "This model does not support that."), Text("never used"))
    run, _ = _run_once(client)
    assert run.status == "failed"
    assert run.last_error is not None and run.last_error.code == "server_error"
    assert len(fake.requests) == 1


def test_error_inside_the_stream_fails_the_run_and_keeps_the_text(client: OpenAI, fake: FakeUpstream) -> None:
    fake.push(StreamError("The model overloaded mid-answer.", text="Partial"), Text("never used"))
    run, _ = _run_once(client)
    assert run.status == "failed"
    assert run.last_error is not None and run.last_error.code == "server_error"
    assert "The model overloaded mid-answer." in run.last_error.message
    message = _reply(client, run)
    assert message.status == "incomplete" and _text(message) == "Partial"
    assert len(fake.requests) == 1


def test_failed_run_stream_ends_with_run_failed(
    fragile: AssistdServer, fragile_client: OpenAI, fake: FakeUpstream
) -> None:
    fake.push(Error(503), Error(503))
    assistant = fragile_client.beta.assistants.create(model="fake-model")
    thread = fragile_client.beta.threads.create(messages=[{"role": "user", "content": "hi"}])
    with (
        httpx.Client(base_url=fragile.base_url, timeout=30) as http,
        http.stream(
            "POST",
            f"/threads/{thread.id}/runs",
            json={"assistant_id": assistant.id, "stream": True},
            headers={"Authorization": f"Bearer {KEYS[0]}"},
        ) as response,
    ):
        body = response.read().decode()
    assert body.endswith("event: done\ndata: [DONE]\n\n")
    frames = frames_of(body)
    names = [frame["event"] for frame in frames]
    assert names == [
        "thread.run.created",
        "thread.run.queued",
        "thread.run.in_progress",
        "thread.run.failed",
        "done",
    ]
    failed = check(Run, json.loads(frames[-2]["data"]), "RunObject")
    assert failed.status == "failed"
    assert failed.last_error is not None and failed.last_error.code == "server_error"
    _no_secret(body)


def test_upstream_key_never_leaks(
    server: AssistdServer, fragile: AssistdServer, client: OpenAI, fragile_client: OpenAI, fake: FakeUpstream
) -> None:
    # An upstream that echoes the key back in its error (as some providers do).
    leak = f"Incorrect API key provided: {SECRET}. You can find your API key in your account."
    fake.push(Error(500, leak), Error(500, leak), Error(401, leak))
    exhausted, exhausted_data = _run_once(fragile_client)
    assert exhausted.status == "failed"
    assert fake.request_headers[0]["authorization"] == f"Bearer {SECRET}"
    rejected, rejected_data = _run_once(fragile_client)
    assert rejected.status == "failed"
    assert len(fake.requests) == 3
    for run, data in ((exhausted, exhausted_data), (rejected, rejected_data)):
        assert run.last_error is not None
        assert "Incorrect API key provided" in run.last_error.message  # the upstream's message is kept...
        _no_secret(run.last_error.message, json.dumps(data))  # ...without the key
        bodies = [
            raw(fragile_client.beta.threads.runs.with_raw_response.list(thread_id=run.thread_id)),
            raw(
                fragile_client.beta.threads.runs.steps.with_raw_response.list(
                    run_id=run.id, thread_id=run.thread_id
                )
            ),
            raw(fragile_client.beta.threads.messages.with_raw_response.list(thread_id=run.thread_id)),
        ]
        _no_secret(*(json.dumps(b) for b in bodies))

    # The same through the session server's longer retry chain.
    fake.push(Error(500, leak), Text("fine"))
    recovered, recovered_data = _run_once(client)
    assert recovered.status == "completed"
    _no_secret(json.dumps(recovered_data))
    with httpx.Client(base_url=server.url) as http:
        _no_secret(
            http.get("/healthz").text,
            http.get("/v1/models", headers={"Authorization": f"Bearer {KEYS[0]}"}).text,
        )
    _no_secret(server.log(), fragile.log())
    assert "retrying" in fragile.log() or "retrying" in server.log()  # the logs did record the failures
