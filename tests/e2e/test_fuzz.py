"""Fuzzing with schemathesis, against a real server: requests generated from OpenAI's OpenAPI description of
the Assistants API (``shared/openapi/assistants-v2.json``) and from assistd's own (``/openapi.json``), valid
and invalid ones, with real ids in part of them (``fuzz.RealIds``).

For every response: never a 5xx; a 4xx carries OpenAI's error body; a success matches the response schema
of the spec it was generated from. Budget, seed and the example database: see ``fuzz.py``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import response_schema_conformance

from assistd.app import create_app
from assistd.config import Settings
from conftest import Databases, make_client, start_server
from fake_upstream import FakeUpstream
from fuzz import REPLAY, Calls, RealIds, announce, configure, install_hooks, openai_error_body
from server import KEYS, AssistdServer

OFFICIAL = [
    parent / "shared" / "openapi" / "assistants-v2.json"
    for parent in (Path(__file__).resolve().parents[2], Path(__file__).resolve().parents[3])
]

calls = Calls()


def _official_spec() -> dict[str, Any]:
    for path in OFFICIAL:
        if path.exists():
            spec: dict[str, Any] = json.loads(path.read_text())
            _mend(spec["components"]["schemas"])
            return spec
    raise AssertionError(f"OpenAI's OpenAPI description is needed and not found at {OFFICIAL}")


def _mend(schemas: dict[str, Any]) -> None:
    """Where the description is wrong, not the server (each one also in docs/reliability.md)."""
    # CreateFileRequest accepts the purpose `evals` that the OpenAIFile it answers cannot hold; OpenAI's
    # server answers the purpose as given.
    schemas["OpenAIFile"]["properties"]["purpose"]["enum"].append("evals")
    # An empty list has no first or last object: OpenAI answers `first_id` and `last_id` null (its SDKs
    # type them optional), where the description says a string.
    for name, schema in schemas.items():
        if name.startswith("List") and name.endswith("Response"):
            for end in ("first_id", "last_id"):
                if schema.get("properties", {}).get(end, {}).get("type") == "string":
                    schema["properties"][end]["type"] = ["string", "null"]


def _own_spec() -> dict[str, Any]:
    # What the server serves at /openapi.json (test_served_spec_is_the_fuzzed_one); built here, before any
    # server runs, since the tests are generated from it at collection.
    return create_app(Settings(api_keys=KEYS[0])).openapi()


# The schemas are loaded at collection; what needs the server (its URL, the real ids) is given per test.
official = schemathesis.openapi.from_dict(_official_spec())
own = schemathesis.openapi.from_dict(_own_spec())
real_ids = RealIds()
for _schema in (official, own):
    configure(_schema)
    install_hooks(_schema)


@pytest.fixture(scope="module")
def fuzz_server(
    tmp_path_factory: pytest.TempPathFactory, databases: Databases, fake: FakeUpstream
) -> Iterator[AssistdServer]:
    # A server of its own: what the fuzzing writes stays out of the other tests' tenant.
    announce()
    server = start_server(tmp_path_factory, databases, fake, upstream_timeout_seconds="3")
    with make_client(server) as client:
        real_ids.bind(client, fake)
        yield server
    server.stop()
    print(calls.summary())


def _exercise(case: schemathesis.Case, base_url: str) -> None:
    case.path_parameters = real_ids.resolve(case.path_parameters)
    if isinstance(case.body, dict):
        case.body = real_ids.resolve(case.body)
    response = case.call(base_url=base_url, headers={"Authorization": f"Bearer {KEYS[0]}"}, timeout=60)
    calls.count(case.operation.label, response.status_code)
    real_ids.after(case.method, case.operation.path, dict(case.path_parameters or {}), response.status_code)
    try:
        case.validate_response(
            response, checks=[not_a_server_error, response_schema_conformance, openai_error_body]
        )
    except (AssertionError, FailureGroup):
        # Into the failing test's captured output, which pytest shows with the failure.
        print(f"assistd fuzz: {REPLAY}", file=sys.stderr)
        raise


def test_served_spec_is_the_fuzzed_one(fuzz_server: AssistdServer) -> None:
    assert httpx.get(f"{fuzz_server.url}/openapi.json", timeout=30).json() == _own_spec()


@official.parametrize()
def test_fuzz_official_spec(case: schemathesis.Case, fuzz_server: AssistdServer) -> None:
    _exercise(case, fuzz_server.base_url)


@own.parametrize()
def test_fuzz_own_spec(case: schemathesis.Case, fuzz_server: AssistdServer) -> None:
    _exercise(case, fuzz_server.url)
