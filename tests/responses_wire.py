"""Checks of the Responses API's wire shapes, shared by the Responses e2e tests: bodies validated by the SDK's
types (strictly, not its lenient ``construct``) and by OpenAI's OpenAPI description, and raw SSE frames."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import jsonschema
from openai import OpenAI
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from server import KEYS, AssistdServer
from wire import _nullable_to_anyof

EVENTS = TypeAdapter(ResponseStreamEvent)
# OpenAI's description, in the checkout's shared/ or beside it (as tests/wire.py looks for it).
_SPEC = next(
    (
        path
        for path in (
            Path(__file__).resolve().parents[n] / "shared" / "openapi" / "responses.json" for n in (1, 2)
        )
        if path.exists()
    ),
    Path("/nonexistent"),
)


@cache
def _validator(schema_name: str) -> jsonschema.Draft202012Validator:
    spec = _nullable_to_anyof(json.loads(_SPEC.read_text()))
    registry = Registry().with_resource(
        "urn:openai", Resource.from_contents(spec, default_specification=DRAFT202012)
    )
    ref = {"$ref": f"urn:openai#/components/schemas/{schema_name}"}
    return jsonschema.Draft202012Validator(ref, registry=registry)


def spec_check(data: Any, schema_name: str) -> None:
    """``data`` against OpenAI's OpenAPI description of the Responses API, where the checkout has it."""
    if not _SPEC.exists():
        return
    errors = [f"{list(e.path)}: {e.message[:300]}" for e in _validator(schema_name).iter_errors(data)]
    assert not errors, errors


def strict(data: dict[str, Any]) -> Response:
    """The raw JSON of a response, validated by the SDK's type (not its lenient ``construct``) and by
    OpenAI's description."""
    spec_check(data, "Response")
    return Response.model_validate(data)


def raw_create(client: OpenAI, **body: Any) -> Response:
    raw = client.responses.with_raw_response.create(**body)
    return strict(json.loads(raw.http_response.text))


def post(server: AssistdServer, path: str, body: dict[str, Any]) -> httpx.Response:
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        return http.post(path, json=body, headers={"Authorization": f"Bearer {KEYS[0]}"})


def stream_frames(server: AssistdServer, body: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    with (
        httpx.Client(base_url=server.base_url, timeout=30) as http,
        http.stream(
            "POST", "/responses", json=body, headers={"Authorization": f"Bearer {KEYS[0]}"}
        ) as answer,
    ):
        assert answer.status_code == 200
        return sse_frames(answer)


def sse_frames(answer: httpx.Response) -> list[tuple[str, dict[str, Any]]]:
    """The (event name, data) frames of a streamed answer, read to its end."""
    frames = []
    name = ""
    for line in answer.iter_lines():
        if line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("data: "):
            frames.append((name, json.loads(line.removeprefix("data: "))))
    return frames


# A file_search call's events in a response stream, from its item's opening, in OpenAI's order.
FILE_SEARCH_CALL_EVENTS = [
    "response.output_item.added",
    "response.file_search_call.in_progress",
    "response.file_search_call.searching",
    "response.file_search_call.completed",
]


def message_item(deltas: int = 1) -> list[str]:
    """The events of one output message answered with text in ``deltas`` pieces, in OpenAI's order."""
    return [
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * deltas,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
    ]


def text_stream(deltas: int) -> list[str]:
    """The events of a streamed response that answers with text in ``deltas`` pieces, in OpenAI's order."""
    return ["response.created", "response.in_progress", *message_item(deltas), "response.completed"]


def squeeze(names: list[str]) -> list[str]:
    """Event names with each run of one name written once: deltas come in as many pieces as were written."""
    return [name for number, name in enumerate(names) if number == 0 or name != names[number - 1]]
