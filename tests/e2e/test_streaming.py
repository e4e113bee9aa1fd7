"""Run streams: the exact event sequence, the raw SSE frames, and every event against the SDK types."""

from __future__ import annotations

import json
from typing import Any, get_args

import httpx
from openai import AssistantEventHandler, OpenAI
from openai.types.beta import AssistantStreamEvent
from openai.types.beta.threads import Message, Run
from pydantic import BaseModel
from typing_extensions import override

from fake_upstream import FakeUpstream, Text
from server import KEYS, AssistdServer
from sse import frames_of
from wire import check, check_schema

CHUNKS = ["Stream", "ing ", "is ", "fun", " and ", "fast."]
TEXT = "".join(CHUNKS)


def _text_events(deltas: int) -> list[str]:
    return [
        "thread.run.created",
        "thread.run.queued",
        "thread.run.in_progress",
        "thread.run.step.created",
        "thread.run.step.in_progress",
        "thread.message.created",
        "thread.message.in_progress",
        *["thread.message.delta"] * deltas,
        "thread.message.completed",
        "thread.run.step.completed",
        "thread.run.completed",
    ]


# The SDK's event classes by event name, and the OpenAPI schema of each event's data.
_EVENT_TYPES: dict[str, type[BaseModel]] = {
    get_args(cls.model_fields["event"].annotation)[0]: cls
    for cls in get_args(get_args(AssistantStreamEvent)[0])
}
_SCHEMAS = {
    "thread.created": "ThreadObject",
    "thread.run.step.delta": None,
    "thread.message.delta": None,
    "error": None,
}


def _schema_for(event: str) -> str | None:
    if event in _SCHEMAS:
        return _SCHEMAS[event]
    if event.startswith("thread.run.step."):
        return "RunStepObject"
    if event.startswith("thread.run."):
        return "RunObject"
    return "MessageObject"


def validate_event(event: str, data: Any) -> BaseModel:
    """Strictly parse one event as the SDK's variant for its name, and its data against OpenAI's schema."""
    assert event in _EVENT_TYPES, f"unknown event {event}"
    parsed = check(_EVENT_TYPES[event], {"event": event, "data": data})
    schema = _schema_for(event)
    if schema is not None:
        check_schema(data, schema)
    return parsed


def sse_frames(body: bytes) -> list[tuple[str, str]]:
    """``(event, data)`` of each frame of a complete SSE body. The run's own events carry ``id``s, their
    seqs in the run's stream, numbered 1, 2, 3, ... (what a reconnecting client resumes after); the
    stream's other frames (thread.created, done, error) have none."""
    frames = frames_of(body.decode())
    ids = [int(frame.pop("id")) for frame in frames if "id" in frame]
    for frame in frames:
        assert set(frame) == {"event", "data"}, frame
    assert len(frames) - len(ids) == sum(f["event"] in ("thread.created", "done", "error") for f in frames)
    assert ids == list(range(ids[0], ids[0] + len(ids))) if ids else True, ids
    return [(frame["event"], frame["data"]) for frame in frames]


def post_stream(server: AssistdServer, path: str, body: dict[str, Any]) -> tuple[httpx.Response, bytes]:
    with (
        httpx.Client(base_url=server.base_url, timeout=30) as http,
        http.stream("POST", path, json=body, headers={"Authorization": f"Bearer {KEYS[0]}"}) as response,
    ):
        return response, response.read()


class Recorder(AssistantEventHandler):
    def __init__(self) -> None:
        super().__init__()
        self.events: list[AssistantStreamEvent] = []
        self.text: list[str] = []

    @override
    def on_event(self, event: AssistantStreamEvent) -> None:
        self.events.append(event)

    @override
    def on_text_delta(self, delta: Any, snapshot: Any) -> None:
        self.text.append(delta.value or "")

    @property
    def names(self) -> list[str]:
        return [e.event for e in self.events]


def _setup(client: OpenAI, text: str = "Tell me something.") -> tuple[str, str]:
    assistant = client.beta.assistants.create(model="fake-model", instructions="Stream it.")
    thread = client.beta.threads.create(messages=[{"role": "user", "content": text}])
    return assistant.id, thread.id


def _stored_reply(client: OpenAI, thread_id: str) -> Message:
    reply = client.beta.threads.messages.list(thread_id=thread_id).data[0]
    assert reply.role == "assistant" and reply.status == "completed"
    return reply


def _reply_text(message: Message) -> str:
    block = message.content[0]
    assert block.type == "text"
    return block.text.value


# --------------------------------------------------------------------------------------------------


def test_stream_with_event_handler(client: OpenAI, fake: FakeUpstream) -> None:
    fake.push(Text(TEXT, chunks=CHUNKS))
    assistant_id, thread_id = _setup(client)
    handler = Recorder()
    with client.beta.threads.runs.stream(
        thread_id=thread_id, assistant_id=assistant_id, event_handler=handler
    ) as stream:
        stream.until_done()
        final_run = stream.get_final_run()
        final_messages = stream.get_final_messages()

    assert handler.names == _text_events(len(CHUNKS))
    for event in handler.events:
        validate_event(event.event, event.data.model_dump(mode="json", exclude_unset=True))
    run_ids = {
        e.data.id for e in handler.events if e.event.startswith("thread.run.") and "step" not in e.event
    }
    assert run_ids == {final_run.id}
    assert final_run.status == "completed"

    deltas = [e for e in handler.events if e.event == "thread.message.delta"]
    pieces = []
    for delta in deltas:
        assert delta.event == "thread.message.delta"
        content = delta.data.delta.content
        assert content is not None and content[0].type == "text" and content[0].text is not None
        pieces.append(content[0].text.value or "")
    assert pieces == CHUNKS
    assert "".join(handler.text) == TEXT

    stored = _stored_reply(client, thread_id)
    assert _reply_text(stored) == TEXT
    assert {d.data.id for d in deltas} == {stored.id}
    assert [m.id for m in final_messages] == [stored.id]
    step_created = handler.events[3]
    assert step_created.event == "thread.run.step.created"
    assert step_created.data.step_details.type == "message_creation"
    assert step_created.data.step_details.message_creation.message_id == stored.id
    completed = handler.events[-1]
    assert completed.event == "thread.run.completed"
    assert completed.data.usage is not None and completed.data.usage.total_tokens > 0


def test_raw_sse_frames_and_the_done_terminator(
    client: OpenAI, server: AssistdServer, fake: FakeUpstream
) -> None:
    fake.push(Text(TEXT, chunks=CHUNKS))
    assistant_id, thread_id = _setup(client)
    response, body = post_stream(
        server, f"/threads/{thread_id}/runs", {"assistant_id": assistant_id, "stream": True}
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert body.endswith(b"event: done\ndata: [DONE]\n\n")
    frames = sse_frames(body)
    assert frames[-1] == ("done", "[DONE]")
    names = [name for name, _ in frames[:-1]]
    assert names == _text_events(len(CHUNKS))

    payloads = [json.loads(data) for _, data in frames[:-1]]
    for name, data in zip(names, payloads, strict=True):
        validate_event(name, data)
    assert [p["status"] for p in payloads[:3]] == ["queued", "queued", "in_progress"]
    assert payloads[-1]["status"] == "completed"
    deltas = [
        p["delta"]["content"][0]["text"]["value"]
        for n, p in zip(names, payloads, strict=True)
        if n.endswith("delta")
    ]
    stored = _stored_reply(client, thread_id)
    assert "".join(deltas) == _reply_text(stored) == TEXT
    completed_message = payloads[names.index("thread.message.completed")]
    assert check(Message, completed_message, "MessageObject").content[0].type == "text"
    assert completed_message["content"][0]["text"]["value"] == TEXT


def test_sdk_create_with_stream_true(client: OpenAI, fake: FakeUpstream) -> None:
    fake.push(Text(TEXT, chunks=CHUNKS))
    assistant_id, thread_id = _setup(client)
    events = list(
        client.beta.threads.runs.create(thread_id=thread_id, assistant_id=assistant_id, stream=True)
    )
    assert [e.event for e in events] == _text_events(len(CHUNKS))
    for event in events:
        validate_event(event.event, event.data.model_dump(mode="json", exclude_unset=True))
    text = "".join(
        e.data.delta.content[0].text.value or ""
        for e in events
        if e.event == "thread.message.delta"
        and e.data.delta.content
        and e.data.delta.content[0].type == "text"
        and e.data.delta.content[0].text is not None
    )
    assert text == _reply_text(_stored_reply(client, thread_id)) == TEXT
    last = events[-1]
    assert last.event == "thread.run.completed"
    run = client.beta.threads.runs.retrieve(run_id=last.data.id, thread_id=thread_id)
    assert run.status == "completed"


def test_create_thread_and_run_stream_starts_with_thread_created(
    client: OpenAI, server: AssistdServer, fake: FakeUpstream
) -> None:
    fake.push(Text("New thread, streamed.", chunks=["New ", "thread, ", "streamed."]))
    assistant = client.beta.assistants.create(model="fake-model")
    response, body = post_stream(
        server,
        "/threads/runs",
        {
            "assistant_id": assistant.id,
            "stream": True,
            "thread": {"messages": [{"role": "user", "content": "hi"}], "metadata": {"via": "stream"}},
        },
    )
    assert response.status_code == 200
    assert body.endswith(b"event: done\ndata: [DONE]\n\n")
    frames = sse_frames(body)[:-1]
    names = [name for name, _ in frames]
    assert names == ["thread.created", *_text_events(3)]
    payloads = [json.loads(data) for _, data in frames]
    for name, data in zip(names, payloads, strict=True):
        validate_event(name, data)
    thread = payloads[0]
    assert thread["object"] == "thread" and thread["metadata"] == {"via": "stream"}
    assert {p["thread_id"] for p in payloads[1:] if p.get("object") == "thread.run"} == {thread["id"]}
    assert _reply_text(_stored_reply(client, thread["id"])) == "New thread, streamed."


def test_create_and_run_stream_with_sdk_handler(client: OpenAI, fake: FakeUpstream) -> None:
    fake.push(Text("Handled.", chunks=["Hand", "led."]))
    assistant = client.beta.assistants.create(model="fake-model")
    handler = Recorder()
    with client.beta.threads.create_and_run_stream(
        assistant_id=assistant.id,
        thread={"messages": [{"role": "user", "content": "go"}]},
        event_handler=handler,
    ) as stream:
        stream.until_done()
    assert handler.names == ["thread.created", *_text_events(2)]
    for event in handler.events:
        validate_event(event.event, event.data.model_dump(mode="json", exclude_unset=True))
    assert "".join(handler.text) == "Handled."
    created = handler.events[0]
    assert created.event == "thread.created"
    run = handler.events[-1]
    assert run.event == "thread.run.completed"
    assert isinstance(run.data, Run) and run.data.thread_id == created.data.id


def test_stream_of_an_incomplete_run(client: OpenAI, server: AssistdServer, fake: FakeUpstream) -> None:
    fake.push(Text("cut short", chunks=["cut ", "short"], finish_reason="length"))
    assistant_id, thread_id = _setup(client)
    _, body = post_stream(
        server,
        f"/threads/{thread_id}/runs",
        {"assistant_id": assistant_id, "stream": True, "max_completion_tokens": 256},
    )
    frames = sse_frames(body)
    assert frames[-1] == ("done", "[DONE]")
    names = [name for name, _ in frames[:-1]]
    assert names[-3:] == ["thread.message.incomplete", "thread.run.step.completed", "thread.run.incomplete"]
    for name, data in frames[:-1]:
        validate_event(name, json.loads(data))
    run = json.loads(frames[-2][1])
    assert run["incomplete_details"] == {"reason": "max_completion_tokens"}
