"""``POST /v1/responses/input_tokens``: the count is of the prompt the same create would send (checked
against what the model then gets), nothing of the request is kept, and bad requests are refused as a
create's are."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest
from openai import OpenAI
from openai.types.responses.input_token_count_response import InputTokenCountResponse

from assistd.engine.context import estimate_tokens
from fake_upstream import FakeUpstream
from responses_wire import post, spec_check
from server import AssistdServer


def _count(client: OpenAI, **body: Any) -> int:
    raw = client.responses.input_tokens.with_raw_response.count(**body)
    data = json.loads(raw.http_response.text)
    spec_check(data, "TokenCountsResource")
    counted = InputTokenCountResponse.model_validate(data)
    assert counted.object == "response.input_tokens"
    return counted.input_tokens


def _sent_tokens(fake: FakeUpstream) -> int:
    """The tokens of the prompt the model got, as assistd counts a prompt for a model with no tokenizer of
    its own (an upstream's)."""
    return estimate_tokens(fake.requests[-1]["messages"])


def test_count_is_what_the_create_sends(client: OpenAI, fake: FakeUpstream) -> None:
    body: dict[str, Any] = {
        "model": "fake-model",
        "instructions": "Answer in one word.",
        "input": [
            {"role": "developer", "content": "Be kind."},
            {"role": "user", "content": "What colour is the sky on a clear day at noon?"},
        ],
    }
    counted = _count(client, **body)
    assert fake.requests == []  # counting calls no model
    fake.push("Blue.")
    client.responses.create(**body)
    assert counted == _sent_tokens(fake) > 10


def test_count_on_a_conversation_keeps_nothing(client: OpenAI, fake: FakeUpstream) -> None:
    conversation = client.conversations.create(
        items=[{"role": "user", "content": "My name is Ada and I like long walks by the sea."}]
    )
    before = [item.id for item in client.conversations.items.list(conversation.id)]
    counted = _count(client, model="fake-model", input="Who am I?", conversation=conversation.id)
    # The input was added, and the run prepared, in a transaction that was rolled back.
    assert [item.id for item in client.conversations.items.list(conversation.id)] == before
    assert client.beta.threads.runs.list(conversation.id).data == []
    fake.push("Ada.")
    client.responses.create(model="fake-model", input="Who am I?", conversation=conversation.id)
    assert counted == _sent_tokens(fake)
    assert len(fake.requests[-1]["messages"]) == 2


def test_count_after_a_previous_response(client: OpenAI, fake: FakeUpstream) -> None:
    fake.push("The first answer, somewhat long so that it counts.")
    first = client.responses.create(model="fake-model", input="First question", instructions="Old.")
    counted = _count(client, model="fake-model", input="Second question", previous_response_id=first.id)
    fake.push("Second.")
    # The count did not take the chain's thread: the next response still goes on in it.
    second = client.responses.create(
        model="fake-model", input="Second question", previous_response_id=first.id
    )
    assert counted == _sent_tokens(fake)
    assert [m["role"] for m in fake.requests[-1]["messages"]] == ["user", "assistant", "user"]
    assert second.output_text == "Second."


def test_count_without_a_model(client: OpenAI) -> None:
    # OpenAI's body has no required field: without a model there is no tokenizer to ask, and the count is
    # the estimate a run's prompt gets for a model with none.
    counted = _count(client, input="Tell me a joke.")
    assert counted == estimate_tokens([{"role": "user", "content": "Tell me a joke."}])


def test_count_refusals_are_a_creates(server: AssistdServer, client: OpenAI, other_client: OpenAI) -> None:
    theirs = other_client.conversations.create()
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"model": "fake-model", "input": "Hi", "tools": [{"type": "web_search"}]}, 400, "tools[0].type"),
        (
            {"input": "Hi", "previous_response_id": "resp_x", "conversation": "conv_x"},
            400,
            "previous_response_id",
        ),
        ({"input": [{"role": "tool", "content": "x"}]}, 400, "input[0].role"),
        ({"input": "Hi", "temperature": 3}, 400, "temperature"),
        ({"model": "fake-model"}, 400, "input"),
        # What does not reach the model is no parameter of a count.
        ({"input": "Hi", "store": False}, 400, "store"),
        ({"input": "Hi", "stream": True}, 400, "stream"),
        ({"input": "Hi", "prompt": {"id": "asst_x"}}, 400, "prompt"),
        ({"input": "Hi", "personality": "friendly"}, 400, "personality"),
        ({"input": "Hi", "previous_response_id": "resp_missing"}, 400, "previous_response_id"),
        ({"input": "Hi", "conversation": "conv_missing"}, 404, "conversation"),
        # Another key's conversation is not found.
        ({"input": "Hi", "conversation": theirs.id}, 404, "conversation"),
    ]
    for body, status, param in cases:
        answer = post(server, "/responses/input_tokens", body)
        assert answer.status_code == status, (body, answer.text)
        error = answer.json()["error"]
        assert error["param"] == param, (body, error)
        assert error["type"] == "invalid_request_error"
    with pytest.raises(openai.NotFoundError) as caught:
        client.responses.input_tokens.count(input="Hi", conversation=theirs.id)
    assert isinstance(caught.value.body, dict) and caught.value.body["param"] == "conversation"
