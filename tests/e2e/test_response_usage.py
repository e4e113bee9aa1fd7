"""A response's usage details: the prompt tokens the model read from its cache and the completion tokens it
spent reasoning, as the upstream reports them, carried through the response's run."""

from __future__ import annotations

import json

from openai import OpenAI

from fake_upstream import FakeUpstream, Text
from responses_wire import raw_create, stream_frames, strict
from server import AssistdServer


def _details(prompt: int, cached: int, completion: int, reasoning: int) -> dict[str, object]:
    return {
        "input_tokens": prompt,
        # cache_write_tokens: the SDK's type has it; assistd has no figure for it (0).
        "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": prompt + completion,
    }


def test_response_usage_details_from_the_model(client: OpenAI, fake: FakeUpstream) -> None:
    fake.push(Text("Cached.", prompt_tokens=40, completion_tokens=12, cached_tokens=32, reasoning_tokens=7))
    response = raw_create(client, model="fake-model", input="What is cached?")
    assert response.usage is not None
    assert response.usage.model_dump(exclude_none=True) == _details(40, 32, 12, 7)
    again = client.responses.with_raw_response.retrieve(response.id)
    assert strict(json.loads(again.http_response.text)).usage == response.usage


def test_response_usage_details_in_the_completed_event(server: AssistdServer, fake: FakeUpstream) -> None:
    fake.push(Text("Streamed.", prompt_tokens=25, completion_tokens=4, cached_tokens=16, reasoning_tokens=2))
    frames = stream_frames(server, {"model": "fake-model", "input": "Hi", "stream": True})
    name, data = frames[-1]
    assert name == "response.completed"
    final = strict(data["response"])
    assert final.usage is not None
    assert final.usage.model_dump(exclude_none=True) == _details(25, 16, 4, 2)
    # The events before the end carry no usage yet.
    assert all("usage" not in body.get("response", {}) for _, body in frames[:-1])


def test_response_usage_details_absent_are_zero(client: OpenAI, fake: FakeUpstream) -> None:
    fake.push(Text("Plain.", prompt_tokens=9, completion_tokens=2))
    response = raw_create(client, model="fake-model", input="Hi")
    assert response.usage is not None
    assert response.usage.model_dump(exclude_none=True) == _details(9, 0, 2, 0)


def test_run_usage_keeps_the_assistants_shape(
    client: OpenAI, server: AssistdServer, fake: FakeUpstream
) -> None:
    # A response on a conversation: its run is listed by the Assistants API, whose Usage has the three
    # counts only; the details stay the response's.
    conversation = client.conversations.create()
    fake.push(Text("Shown.", prompt_tokens=30, completion_tokens=5, cached_tokens=20, reasoning_tokens=3))
    response = client.responses.create(model="fake-model", input="Hi", conversation=conversation.id)
    assert response.usage is not None and response.usage.input_tokens_details.cached_tokens == 20
    runs = client.beta.threads.runs.with_raw_response.list(conversation.id)
    (run,) = json.loads(runs.http_response.text)["data"]
    assert run["usage"] == {"prompt_tokens": 30, "completion_tokens": 5, "total_tokens": 35}
    steps = client.beta.threads.runs.steps.with_raw_response.list(run["id"], thread_id=conversation.id)
    (step,) = json.loads(steps.http_response.text)["data"]
    assert step["usage"] == {"prompt_tokens": 30, "completion_tokens": 5, "total_tokens": 35}
