"""Checks that what assistd sends is what OpenAI's wire contract says.

Two references: the official SDK's pydantic types (validated strictly, not the SDK's lenient
``construct``), and OpenAI's OpenAPI description in ``../shared/openapi`` when it is present.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

import jsonschema
from pydantic import BaseModel
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

M = TypeVar("M", bound=BaseModel)

_SPEC_CANDIDATES = [
    Path(__file__).resolve().parents[1] / "shared" / "openapi" / "assistants-v2.json",
    Path(__file__).resolve().parents[2] / "shared" / "openapi" / "assistants-v2.json",
]


def _nullable_to_anyof(node: Any) -> Any:
    # The description mixes OpenAPI 3.0's ``nullable: true`` into 3.1 schemas; jsonschema needs anyOf.
    if isinstance(node, dict):
        node = {k: _nullable_to_anyof(v) for k, v in node.items()}
        if node.pop("nullable", False):
            return {"anyOf": [node, {"type": "null"}]}
        return node
    if isinstance(node, list):
        return [_nullable_to_anyof(v) for v in node]
    return node


@cache
def _spec() -> dict[str, Any] | None:
    for path in _SPEC_CANDIDATES:
        if path.exists():
            return _nullable_to_anyof(json.loads(path.read_text()))  # type: ignore[no-any-return]
    return None


def spec_available() -> bool:
    return _spec() is not None


@cache
def _validator(schema_name: str) -> jsonschema.Draft202012Validator | None:
    spec = _spec()
    if spec is None:
        return None
    registry = Registry().with_resource(
        "urn:openai", Resource.from_contents(spec, default_specification=DRAFT202012)
    )
    return jsonschema.Draft202012Validator(
        {"$ref": f"urn:openai#/components/schemas/{schema_name}"}, registry=registry
    )


def check_schema(data: Any, schema_name: str) -> None:
    """Validate ``data`` against ``#/components/schemas/<schema_name>`` of OpenAI's description."""
    validator = _validator(schema_name)
    if validator is None:
        return
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.path))
    if errors:
        details = "\n".join(f"{list(e.path)}: {e.message}" for e in errors[:5])
        raise AssertionError(f"{schema_name} does not match OpenAI's schema:\n{details}")


def check(model: type[M], data: Any, schema_name: str | None = None) -> M:
    """Parse ``data`` (raw JSON or an SDK object) strictly as the SDK type ``model``; check the schema too."""
    if isinstance(data, BaseModel):
        data = data.model_dump(mode="json", exclude_unset=True)
    parsed = model.model_validate(data)
    if schema_name is not None:
        check_schema(data, schema_name)
    return parsed


def raw(response: Any) -> Any:
    """The JSON body of an SDK ``with_raw_response`` call."""
    return json.loads(response.http_response.content)


def api_error(exc: Any, status: int, param: str | None) -> dict[str, Any]:
    """Assert an SDK ``APIStatusError`` carries OpenAI's invalid-request body; return its error object."""
    assert exc.status_code == status
    body = exc.response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    return dict(error)
