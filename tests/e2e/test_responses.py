"""/v1/responses: a response is a run on a thread; text answers, chains, conversations, streams."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI
from openai.types.beta.threads import Message as ThreadMessage
from openai.types.beta.threads import Run
from openai.types.responses import Response, ResponseInputItem
from pydantic import BaseModel, TypeAdapter

from conftest import Databases, make_client, start_server
from fake_upstream import Echo, Error, FakeUpstream, Hang, Text
from responses_wire import EVENTS, post, raw_create, spec_check, stream_frames, strict, text_stream
from server import KEYS, AssistdServer


def _last_user_texts(request: dict[str, Any]) -> list[tuple[str, str]]:
    return [(m["role"], m["content"]) for m in request["messages"]]


def test_create_with_string_input(client: OpenAI, fake: FakeUpstream) -> None:
    fake.push(Text("Paris is the capital.", prompt_tokens=12, completion_tokens=5))
    response = raw_create(
        client,
        model="fake-model",
        input="What is the capital of France?",
        instructions="Answer in one sentence.",
        metadata={"case": "one"},
        temperature=0.5,
        user="user-1",
    )
    assert response.status == "completed"
    assert response.object == "response"
    assert response.id.startswith("resp_")
    assert response.output_text == "Paris is the capital."
    assert len(response.output) == 1
    item = response.output[0]
    assert item.type == "message" and item.role == "assistant" and item.status == "completed"
    assert [part.model_dump() for part in item.content] == [
        {"type": "output_text", "text": "Paris is the capital.", "annotations": [], "logprobs": []}
    ]
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens, response.usage.total_tokens) == (
        12,
        5,
        17,
    )
    assert response.usage.input_tokens_details.cached_tokens == 0
    assert response.usage.output_tokens_details.reasoning_tokens == 0
    assert response.instructions == "Answer in one sentence."
    assert response.metadata == {"case": "one"}
    assert response.temperature == 0.5
    assert response.user == "user-1"
    assert response.store is True
    assert response.previous_response_id is None and response.conversation is None
    assert response.text is not None and response.text.format.type == "text"
    assert response.error is None and response.incomplete_details is None
    # The instructions reach the model as its system message, before the input.
    sent = fake.requests[-1]
    assert sent["model"] == "fake-model"
    assert sent["temperature"] == 0.5
    assert _last_user_texts(sent) == [
        ("system", "Answer in one sentence."),
        ("user", "What is the capital of France?"),
    ]
    # Retrieved later, the same response.
    again = client.responses.with_raw_response.retrieve(response.id)
    assert strict(json.loads(again.http_response.text)) == response


def test_create_with_message_items(client: OpenAI, fake: FakeUpstream) -> None:
    fake.push("Blue.")
    response = raw_create(
        client,
        model="fake-model",
        input=[
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "content": "Name a colour."},
            {"role": "assistant", "content": "Red."},
            {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "Another one?"}],
            },
        ],
    )
    assert response.output_text == "Blue."
    assert _last_user_texts(fake.requests[-1]) == [
        ("system", "Be brief."),
        ("user", "Name a colour."),
        ("assistant", "Red."),
        ("user", "Another one?"),
    ]
    # The input items are the three messages, as items (the developer message is the instructions).
    items = client.responses.input_items.list(response.id, order="asc")
    assert [(i.type, i.role) for i in items.data] == [  # type: ignore[union-attr]
        ("message", "user"),
        ("message", "assistant"),
        ("message", "user"),
    ]
    for item in items.data:
        TypeAdapter(ResponseInputItem).validate_python(item.model_dump(exclude_none=True))


def test_previous_response_chain_and_fork(client: OpenAI, fake: FakeUpstream) -> None:
    fake.push("First answer.", "Second answer.", "Forked answer.")
    first = client.responses.create(model="fake-model", input="First question", instructions="Old rules.")
    second = raw_create(client, model="fake-model", input="Second question", previous_response_id=first.id)
    assert second.previous_response_id == first.id
    assert second.output_text == "Second answer."
    # The second response sees the first's exchange; the first's instructions are not carried over.
    assert _last_user_texts(fake.requests[1]) == [
        ("user", "First question"),
        ("assistant", "First answer."),
        ("user", "Second question"),
    ]
    # A fork from the first: its context is the first's exchange only, not the second's.
    forked = client.responses.create(model="fake-model", input="Fork question", previous_response_id=first.id)
    assert forked.output_text == "Forked answer."
    assert _last_user_texts(fake.requests[2]) == [
        ("user", "First question"),
        ("assistant", "First answer."),
        ("user", "Fork question"),
    ]
    # The chain's later responses still read back whole.
    assert client.responses.retrieve(second.id).output_text == "Second answer."


def test_concurrent_forks(client: OpenAI, fake: FakeUpstream) -> None:
    fake.push("Root answer.")
    root = client.responses.create(model="fake-model", input="Root question")
    fake.push(Echo(), Echo(), Echo(), Echo())
    asks = [f"Branch {n}" for n in range(4)]
    with ThreadPoolExecutor(len(asks)) as pool:
        answers = list(
            pool.map(
                lambda text: client.responses.create(
                    model="fake-model", input=text, previous_response_id=root.id
                ),
                asks,
            )
        )
    assert [answer.output_text for answer in answers] == [f"echo: {text}" for text in asks]
    # Each branch saw the root's exchange and its own question, none another branch's.
    contexts = sorted(_last_user_texts(request) for request in fake.requests[-len(asks) :])
    assert contexts == [
        [("user", "Root question"), ("assistant", "Root answer."), ("user", text)] for text in asks
    ]


def test_unknown_previous_response(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="fake-model", input="Hi", previous_response_id="resp_missing")
    error = caught.value.body
    assert isinstance(error, dict)
    assert error["param"] == "previous_response_id"
    assert error["code"] == "previous_response_not_found"


def test_conversation_is_a_thread(client: OpenAI, fake: FakeUpstream) -> None:
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "Remember 42."}])
    fake.push("Noted.", "It was 42.")
    first = client.responses.create(model="fake-model", input="Got it?", conversation=thread.id)
    assert first.conversation is not None and first.conversation.id == thread.id
    second = raw_create(client, model="fake-model", input="What number?", conversation={"id": thread.id})
    assert second.output_text == "It was 42."
    assert _last_user_texts(fake.requests[-1]) == [
        ("user", "Remember 42."),
        ("user", "Got it?"),
        ("assistant", "Noted."),
        ("user", "What number?"),
    ]
    # The exchange is the thread's: the Assistants API shows it.
    listed = client.beta.threads.messages.list(thread.id, order="asc")
    shown = [(m.role, m.content[0].text.value) for m in listed.data]  # type: ignore[union-attr]
    assert shown == [
        ("user", "Remember 42."),
        ("user", "Got it?"),
        ("assistant", "Noted."),
        ("user", "What number?"),
        ("assistant", "It was 42."),
    ]
    for message in listed.data:
        ThreadMessage.model_validate(message.model_dump())
    # Runs of responses have no assistant: the Assistants API shows an empty assistant_id.
    runs = client.beta.threads.runs.list(thread.id)
    assert len(runs.data) == 2
    for run in runs.data:
        assert Run.model_validate(run.model_dump()).assistant_id == ""
    assert listed.data[-1].assistant_id is None


def test_conversation_of_the_conversations_api(client: OpenAI, fake: FakeUpstream) -> None:
    conversation = client.conversations.create(items=[{"role": "user", "content": "My name is Ada."}])
    fake.push("Hello Ada.")
    response = client.responses.create(model="fake-model", input="Who am I?", conversation=conversation.id)
    assert response.conversation is not None and response.conversation.id == conversation.id
    assert _last_user_texts(fake.requests[-1]) == [("user", "My name is Ada."), ("user", "Who am I?")]
    items = client.conversations.items.list(conversation.id, order="asc")
    assert [(item.type, item.role) for item in items.data] == [  # type: ignore[union-attr]
        ("message", "user"),
        ("message", "user"),
        ("message", "assistant"),
    ]
    # The response's output item is the conversation's item: one object, one id.
    assert items.data[-1].id == response.output[0].id
    # Its input item too.
    inputs = client.responses.input_items.list(response.id)
    assert [item.id for item in inputs.data] == [items.data[1].id]


def test_previous_response_on_a_conversation(client: OpenAI, fake: FakeUpstream) -> None:
    conversation = client.conversations.create(items=[{"role": "user", "content": "Context."}])
    fake.push("On the conversation.", "Off it.")
    first = client.responses.create(model="fake-model", input="Q1", conversation=conversation.id)
    second = client.responses.create(model="fake-model", input="Q2", previous_response_id=first.id)
    assert second.conversation is None and second.output_text == "Off it."
    assert _last_user_texts(fake.requests[-1]) == [
        ("user", "Context."),
        ("user", "Q1"),
        ("assistant", "On the conversation."),
        ("user", "Q2"),
    ]
    # The follow-up ran on a copy: the conversation holds only its own exchange.
    items = client.conversations.items.list(conversation.id, order="asc")
    assert [item.id for item in items.data][-1] == first.output[0].id
    assert len(items.data) == 3
    # Deleting the conversation deletes the response that ran on it, not the one on a copy.
    client.conversations.delete(conversation.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(first.id)
    assert client.responses.retrieve(second.id).output_text == "Off it."


def test_busy_conversation_is_refused(client: OpenAI, fake: FakeUpstream, server: AssistdServer) -> None:
    thread = client.beta.threads.create()
    fake.push(Hang(1.5, then=Text("Slow.")))
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        headers = {"Authorization": f"Bearer {KEYS[0]}"}
        body = {"model": "fake-model", "input": "One", "conversation": thread.id, "stream": True}
        with http.stream("POST", "/responses", json=body, headers=headers) as streaming:
            assert streaming.status_code == 200
            busy = http.post(
                "/responses",
                json={"model": "fake-model", "input": "Two", "conversation": thread.id},
                headers=headers,
            )
            streaming.read()
    assert busy.status_code == 400, busy.text
    assert busy.json()["error"]["param"] == "conversation"


def test_unknown_conversation(client: OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.responses.create(model="fake-model", input="Hi", conversation="thread_missing")
    assert isinstance(caught.value.body, dict) and caught.value.body["param"] == "conversation"


def _newest_thread(server: AssistdServer) -> str:
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        answer = http.get("/threads", params={"limit": 1}, headers={"Authorization": f"Bearer {KEYS[0]}"})
    assert answer.status_code == 200, answer.text
    return str(answer.json()["data"][0]["id"])


def test_store_false_is_not_retrievable(client: OpenAI, fake: FakeUpstream, server: AssistdServer) -> None:
    client.beta.threads.create()
    newest = _newest_thread(server)
    fake.push("Unstored.")
    response = raw_create(client, model="fake-model", input="Hi", store=False)
    # Its thread of its own went with its run's end: nothing of it is left.
    assert _newest_thread(server) == newest
    assert response.store is False
    assert response.output_text == "Unstored."
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response.id)
    with pytest.raises(openai.BadRequestError):
        client.responses.create(model="fake-model", input="Again", previous_response_id=response.id)


def test_delete(client: OpenAI, fake: FakeUpstream) -> None:
    fake.push("To delete.")
    response = client.responses.create(model="fake-model", input="Hi")
    raw = client.responses.with_raw_response.delete(response.id)
    assert json.loads(raw.http_response.text) == {
        "id": response.id,
        "object": "response.deleted",
        "deleted": True,
    }
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.delete(response.id)


def test_input_items_pagination(client: OpenAI, fake: FakeUpstream) -> None:
    fake.push("Ok.")
    texts = [f"line {n}" for n in range(5)]
    response = client.responses.create(
        model="fake-model", input=[{"role": "user", "content": text} for text in texts]
    )
    page = client.responses.input_items.list(response.id, limit=2, order="asc")
    assert page.has_more is True
    seen = [item.content[0].text for item in page.data]  # type: ignore[union-attr]
    after = page.data[-1].id
    while True:
        page = client.responses.input_items.list(response.id, limit=2, order="asc", after=after)
        seen += [item.content[0].text for item in page.data]  # type: ignore[union-attr]
        if not page.has_more:
            break
        after = page.data[-1].id
    assert seen == texts
    newest_first = client.responses.input_items.list(response.id)
    assert [item.content[0].text for item in newest_first.data] == texts[::-1]  # type: ignore[union-attr]
    raw = json.loads(client.responses.input_items.with_raw_response.list(response.id).http_response.text)
    assert raw["object"] == "list" and raw["first_id"] == newest_first.data[0].id
    spec_check(raw, "ResponseItemList")
    with pytest.raises(openai.NotFoundError):
        client.responses.input_items.list("resp_missing")


def test_cancel_finished_response(client: OpenAI, fake: FakeUpstream) -> None:
    fake.push("Done.")
    response = client.responses.create(model="fake-model", input="Hi")
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.cancel(response.id)
    assert isinstance(caught.value.body, dict) and caught.value.body["param"] == "response_id"


def test_cancel_running_response(client: OpenAI, fake: FakeUpstream, server: AssistdServer) -> None:
    fake.push(Hang(20, then=Text("Too late.")))
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        headers = {"Authorization": f"Bearer {KEYS[0]}"}
        body = {"model": "fake-model", "input": "Slow", "stream": True}
        with http.stream("POST", "/responses", json=body, headers=headers) as streaming:
            lines = streaming.iter_lines()
            created: dict[str, Any] = {}
            for line in lines:
                if line.startswith("data: "):
                    created = json.loads(line.removeprefix("data: "))
                    break
            response_id = created["response"]["id"]
            fake.wait_for_requests(1, timeout=10)
            # Retrieved while its run waits for the model: in progress, nothing written yet.
            running = client.responses.with_raw_response.retrieve(response_id)
            shown = strict(json.loads(running.http_response.text))
            assert (shown.status, shown.output, shown.usage) == ("in_progress", [], None)
            # A response cannot follow one whose run has not ended.
            with pytest.raises(openai.BadRequestError) as caught:
                client.responses.create(model="fake-model", input="Next", previous_response_id=response_id)
            assert isinstance(caught.value.body, dict)
            assert caught.value.body["param"] == "previous_response_id"
            cancelled = client.responses.cancel(response_id)
            assert cancelled.status == "cancelled"
            rest = [json.loads(line.removeprefix("data: ")) for line in lines if line.startswith("data: ")]
    assert rest[-1]["type"] == "response.failed"
    assert rest[-1]["response"]["status"] == "cancelled"
    assert client.responses.retrieve(response_id).status == "cancelled"


def test_max_output_tokens_is_incomplete(client: OpenAI, fake: FakeUpstream) -> None:
    fake.push(Text("Cut sh", finish_reason="length"))
    response = raw_create(client, model="fake-model", input="Write a lot", max_output_tokens=16)
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.max_output_tokens == 16
    assert response.output_text == "Cut sh"
    assert fake.requests[-1]["max_completion_tokens"] == 16


def test_parameter_errors(server: AssistdServer) -> None:
    cases = [
        (
            {"model": "fake-model", "input": "Hi", "previous_response_id": "resp_x", "conversation": "t"},
            "previous_response_id",
        ),
        ({"model": "fake-model", "input": "Hi", "tools": [{"type": "web_search"}]}, "tools[0].type"),
        # A function tool is served (tests/e2e/test_response_functions.py); one without a name is not.
        ({"model": "fake-model", "input": "Hi", "tools": [{"type": "function"}]}, "tools[0].name"),
        ({"model": "fake-model", "input": "Hi", "background": True, "store": False}, "store"),
        ({"model": "fake-model", "input": "Hi", "include": ["everything"]}, "include[0]"),
        ({"model": "fake-model", "input": "Hi", "conversation": {"id": ""}}, "conversation"),
        ({"model": "fake-model", "input": "Hi", "conversation": {}}, "conversation.id"),
        ({"model": "fake-model", "input": "Hi", "conversation": {"id": "c", "x": 1}}, "conversation.x"),
        ({"model": "fake-model", "input": "Hi", "temperature": 3}, "temperature"),
        ({"model": "fake-model", "input": "Hi", "service_tier": "flex"}, "service_tier"),
        ({"model": "fake-model", "input": [{"role": "tool", "content": "x"}]}, "input[0].role"),
        (
            {"model": "fake-model", "input": [{"role": "user", "content": [{"type": "audio"}]}]},
            "input[0].content[0].type",
        ),
        ({"model": "fake-model"}, "input"),
        ({"input": "Hi"}, "model"),
        ({"model": "fake-model", "input": "Hi", "max_output_tokens": 3}, "max_output_tokens"),
    ]
    for body, param in cases:
        answer = post(server, "/responses", body)
        assert answer.status_code == 400, (body, answer.text)
        error = answer.json()["error"]
        assert error["param"] == param, (body, error)
        assert error["type"] == "invalid_request_error"


def test_text_format_json_schema(client: OpenAI, fake: FakeUpstream) -> None:
    fake.push('{"city": "Paris"}')
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    text = {"format": {"type": "json_schema", "name": "place", "schema": schema, "strict": True}}
    response = raw_create(client, model="fake-model", input="Where?", text=text)
    assert response.text is not None and response.text.format.type == "json_schema"
    assert fake.requests[-1]["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "place", "schema": schema, "strict": True},
    }
    assert json.loads(response.output_text) == {"city": "Paris"}


def test_stream_event_order(server: AssistdServer, fake: FakeUpstream) -> None:
    chunks = ["Stream", "ing ", "works."]
    fake.push(Text("".join(chunks), chunks=chunks))
    frames = stream_frames(server, {"model": "fake-model", "input": "Hi", "stream": True})
    names = [name for name, _ in frames]
    assert names == text_stream(len(chunks))
    assert [data["sequence_number"] for _, data in frames] == list(range(len(frames)))
    for name, data in frames:
        spec_check(data, "ResponseStreamEvent")
        event: BaseModel = EVENTS.validate_python(data)
        assert getattr(event, "type") == name  # noqa: B009
    assert [data["delta"] for name, data in frames if name == "response.output_text.delta"] == chunks
    done = dict(frames)["response.output_text.done"]
    assert done["text"] == "".join(chunks)
    final = strict(frames[-1][1]["response"])
    assert final.status == "completed" and final.output_text == "".join(chunks)
    assert frames[0][1]["response"]["status"] in ("queued", "in_progress")
    item_ids = {data["item_id"] for name, data in frames if "item_id" in data}
    assert item_ids == {final.output[0].id}


def test_stream_with_the_sdk(client: OpenAI, fake: FakeUpstream) -> None:
    fake.push(Text("Hello there friend.", chunks=["Hello ", "there ", "friend."]))
    with client.responses.stream(model="fake-model", input="Hi") as stream:
        deltas = [event.delta for event in stream if event.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert deltas == ["Hello ", "there ", "friend."]
    assert final.output_text == "Hello there friend."
    assert client.responses.retrieve(final.id).output_text == "Hello there friend."
    fake.push("Second.")
    events = list(client.responses.create(model="fake-model", input="Again", stream=True))
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    for event in events:
        EVENTS.validate_python(event.model_dump(exclude_unset=True))


def test_stream_incomplete(server: AssistdServer, fake: FakeUpstream) -> None:
    fake.push(Text("Cut", finish_reason="length"))
    body = {"model": "fake-model", "input": "Hi", "stream": True, "max_output_tokens": 20}
    frames = stream_frames(server, body)
    assert frames[-1][0] == "response.incomplete"
    final = strict(frames[-1][1]["response"])
    assert final.incomplete_details is not None and final.incomplete_details.reason == "max_output_tokens"
    assert dict(frames)["response.output_item.done"]["item"]["status"] == "incomplete"


def test_stream_of_a_failed_run(server: AssistdServer, fake: FakeUpstream) -> None:
    fake.push(Error(400, "Bad prompt."))
    frames = stream_frames(server, {"model": "fake-model", "input": "Hi", "stream": True})
    assert [name for name, _ in frames] == ["response.created", "response.in_progress", "response.failed"]
    final = strict(frames[-1][1]["response"])
    assert final.status == "failed" and final.error is not None


@pytest.mark.postgres_only
def test_responses_through_an_api_replica(
    tmp_path_factory: pytest.TempPathFactory, databases: Databases, fake: FakeUpstream
) -> None:
    """An API-only process answers, a worker process executes: the response's run events reach the API
    process through the database's event log, read back as JSON."""
    url = databases.new()
    env = {"ASSISTD_UPSTREAM_BASE_URL": fake.base_url, "ASSISTD_UPSTREAM_API_KEY": "sk-upstream"}
    api = AssistdServer(tmp_path_factory.mktemp("api"), url, env, args=("--workers", "0"))
    worker = AssistdServer(tmp_path_factory.mktemp("worker"), url, env, worker=True)
    try:
        api.start(timeout=60)
        worker.start(timeout=60)
        fake.push(Text("From the worker.", chunks=["From ", "the ", "worker."]), "Waited for.")
        frames = stream_frames(api, {"model": "fake-model", "input": "Hi", "stream": True})
        assert [name for name, _ in frames] == text_stream(3)
        for _, data in frames:
            EVENTS.validate_python(data)
        assert strict(frames[-1][1]["response"]).output_text == "From the worker."
        with make_client(api) as client:
            waited = raw_create(
                client,
                model="fake-model",
                input="Again",
                previous_response_id=frames[-1][1]["response"]["id"],
            )
        assert waited.status == "completed" and waited.output_text == "Waited for."
    finally:
        worker.stop()
        api.stop()


def test_a_response_past_its_wait(
    tmp_path_factory: pytest.TempPathFactory, databases: Databases, fake: FakeUpstream
) -> None:
    """``ASSISTD_RESPONSE_WAIT_SECONDS``: a stream that followed a response that long ends with an ``error``
    event (code ``timeout``), a non-streamed create answers it as it stands (in progress); either way the
    response goes on and is retrieved once done."""
    server = start_server(tmp_path_factory, databases, fake, response_wait_seconds="1")
    try:
        client = make_client(server)
        fake.push(Hang(3, then=Text("Streamed late.")))
        frames = stream_frames(server, {"model": "fake-model", "input": "Slow", "stream": True})
        names = [name for name, _ in frames]
        assert names == ["response.created", "response.in_progress", "error"]
        for _, data in frames:
            EVENTS.validate_python(data)
            spec_check(data, "ResponseStreamEvent")
        error = frames[-1][1]
        assert (error["code"], error["param"], error["sequence_number"]) == ("timeout", None, 2)
        response_id = frames[0][1]["response"]["id"]
        assert _until_done(client, response_id).output_text == "Streamed late."

        fake.push(Hang(3, then=Text("Answered late.")))
        waiting = raw_create(client, model="fake-model", input="Slow too")
        assert (waiting.status, waiting.output) == ("in_progress", [])
        assert _until_done(client, waiting.id).output_text == "Answered late."
    finally:
        server.stop()


def _until_done(client: OpenAI, response_id: str) -> Response:
    deadline = time.monotonic() + 30
    while (response := client.responses.retrieve(response_id)).status != "completed":
        assert time.monotonic() < deadline, response.status
        time.sleep(0.1)
    return response
