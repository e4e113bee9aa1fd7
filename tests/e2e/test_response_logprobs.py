"""include=["message.output_text.logprobs"]: the upstream is asked for logprobs only then, and its token
logprobs are shown on the output_text part, in the stream's delta and done events, and when retrieved."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest
from openai import OpenAI
from pydantic import BaseModel

from fake_upstream import FakeUpstream, Text, fake_logprob
from responses_wire import EVENTS, raw_create, spec_check, stream_frames, strict, text_stream
from server import AssistdServer

INCLUDE = ["message.output_text.logprobs"]
PIECES = ["Hello", " there", " friend."]


def _part_logprobs(top: int) -> list[dict[str, Any]]:
    """The logprobs an output_text part shows for ``PIECES`` (one token each) with ``top`` alternatives."""
    return [
        {**fake_logprob(piece, at), "top_logprobs": [fake_logprob(piece, at, rank) for rank in range(top)]}
        for at, piece in enumerate(PIECES)
    ]


def _event_logprobs(part: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The same as the stream's events show them: no bytes."""
    return [
        {
            "token": token["token"],
            "logprob": token["logprob"],
            "top_logprobs": [{"token": t["token"], "logprob": t["logprob"]} for t in token["top_logprobs"]],
        }
        for token in part
    ]


def test_logprobs_asked_for_and_shown(client: OpenAI, fake: FakeUpstream) -> None:
    fake.push(Text("".join(PIECES), chunks=PIECES))
    response = raw_create(client, model="fake-model", input="Hi", include=INCLUDE, top_logprobs=2)
    sent = fake.requests[-1]
    assert (sent["logprobs"], sent["top_logprobs"]) == (True, 2)
    assert response.top_logprobs == 2
    (part,) = response.output[0].content  # type: ignore[union-attr]
    assert part.type == "output_text" and part.text == "".join(PIECES)
    assert [token.model_dump() for token in part.logprobs or []] == _part_logprobs(2)
    again = client.responses.with_raw_response.retrieve(response.id)
    assert strict(json.loads(again.http_response.text)) == response


def test_logprobs_without_top_logprobs(client: OpenAI, fake: FakeUpstream) -> None:
    fake.push(Text("".join(PIECES), chunks=PIECES))
    response = raw_create(client, model="fake-model", input="Hi", include=INCLUDE)
    sent = fake.requests[-1]
    assert (sent["logprobs"], sent["top_logprobs"]) == (True, 0)
    (part,) = response.output[0].content  # type: ignore[union-attr]
    assert [token.model_dump() for token in part.logprobs or []] == _part_logprobs(0)


def test_logprobs_not_asked_for_without_include(client: OpenAI, fake: FakeUpstream) -> None:
    fake.push(Text("".join(PIECES), chunks=PIECES))
    # top_logprobs alone does not include them, as on OpenAI.
    response = raw_create(client, model="fake-model", input="Hi", top_logprobs=3)
    sent = fake.requests[-1]
    assert "logprobs" not in sent and "top_logprobs" not in sent
    (part,) = response.output[0].content  # type: ignore[union-attr]
    assert part.logprobs == []


def test_logprobs_in_the_stream(server: AssistdServer, fake: FakeUpstream) -> None:
    fake.push(Text("".join(PIECES), chunks=PIECES))
    body = {"model": "fake-model", "input": "Hi", "stream": True, "include": INCLUDE, "top_logprobs": 1}
    frames = stream_frames(server, body)
    assert [name for name, _ in frames] == text_stream(len(PIECES))
    for name, data in frames:
        spec_check(data, "ResponseStreamEvent")
        event: BaseModel = EVENTS.validate_python(data)
        assert getattr(event, "type") == name  # noqa: B009
    expected = _part_logprobs(1)
    deltas = [data for name, data in frames if name == "response.output_text.delta"]
    assert [(data["delta"], data["logprobs"]) for data in deltas] == [
        (piece, _event_logprobs([token])) for piece, token in zip(PIECES, expected, strict=True)
    ]
    shown = dict(frames)
    assert shown["response.output_text.done"]["logprobs"] == _event_logprobs(expected)
    assert shown["response.content_part.done"]["part"]["logprobs"] == expected
    assert shown["response.output_item.done"]["item"]["content"][0]["logprobs"] == expected
    final = strict(shown["response.completed"]["response"])
    (part,) = final.output[0].content  # type: ignore[union-attr]
    assert [token.model_dump() for token in part.logprobs or []] == expected


@pytest.mark.parametrize("value", [-1, 21])
def test_top_logprobs_out_of_range(client: OpenAI, value: int) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="fake-model", input="Hi", include=INCLUDE, top_logprobs=value)
    assert caught.value.param == "top_logprobs"
