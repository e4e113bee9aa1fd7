"""Requests that would store what a response cannot show, or what the database cannot hold, are refused
with 400 naming the parameter, before anything is written; never a 500.

Two classes of request: ``tool_resources.file_search`` naming vector stores both ways (ids and the
``vector_stores`` helper: two stores where OpenAI allows one), and integers out of their range (past
OpenAI's documented bounds, or past 64 bits, which no database column holds). The integer fields tried are
read from OpenAI's OpenAPI description, so a field it adds is tried without a change here.
"""

from __future__ import annotations

import copy
import io
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

import httpx
import openai
import pytest
from openai import OpenAI
from openai.types import FileObject, VectorStore
from openai.types.beta import Assistant, Thread
from openai.types.beta.threads import Run
from openai.types.vector_stores import VectorStoreFile, VectorStoreFileBatch
from pydantic import BaseModel

from server import KEYS, AssistdServer
from wire import api_error, check, check_schema, raw

_HERE = Path(__file__).resolve()
SPEC_CANDIDATES = [
    parent / "shared" / "openapi" / "assistants-v2.json" for parent in (_HERE.parents[2], _HERE.parents[3])
]

TERMINAL = {"completed", "failed", "cancelled", "expired", "incomplete", "requires_action"}


# The spec's integer fields ----------------------------------------------------------------------

Where = Literal["query", "json", "multipart"]
Name = tuple[str | int, ...]


@dataclass(frozen=True)
class IntField:
    """One integer parameter of one operation: where it goes and its documented bounds."""

    method: str
    path: str
    where: Where
    name: Name
    minimum: int | None
    maximum: int | None

    @property
    def param(self) -> str:
        """As OpenAI names a parameter: ``tools[0].file_search.max_num_results``."""
        text = ""
        for part in self.name:
            text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else part
        return text

    def __str__(self) -> str:
        return f"{self.method} {self.path} {self.param}"


@cache
def _spec() -> dict[str, Any]:
    for path in SPEC_CANDIDATES:
        if path.exists():
            return json.loads(path.read_text())  # type: ignore[no-any-return]
    raise AssertionError(f"OpenAI's OpenAPI description is needed and not found at {SPEC_CANDIDATES}")


def _deref(node: Any) -> Any:
    while isinstance(node, dict) and "$ref" in node:
        target: Any = _spec()
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def _integers(node: Any, name: Name, seen: frozenset[str] = frozenset()) -> Iterator[tuple[Name, Any]]:
    """Every integer schema in ``node``, through refs, variants, properties and array items."""
    if isinstance(node, dict) and "$ref" in node:
        if node["$ref"] in seen:
            return
        seen = seen | {node["$ref"]}
        node = _deref(node)
    if not isinstance(node, dict):
        return
    kinds = node.get("type")
    if kinds == "integer" or (isinstance(kinds, list) and "integer" in kinds):
        yield name, node
    for key in ("anyOf", "oneOf", "allOf"):
        for variant in node.get(key, []):
            yield from _integers(variant, name, seen)
    for prop, sub in (node.get("properties") or {}).items():
        yield from _integers(sub, (*name, prop), seen)
    if "items" in node:
        yield from _integers(node["items"], (*name, 0), seen)
    if isinstance(node.get("additionalProperties"), dict):
        # A map of integers has no fixed name to try; a base body could not hold it, so it fails below.
        yield from _integers(node["additionalProperties"], (*name, "<any key>"), seen)


def spec_integer_fields() -> list[IntField]:
    found: dict[tuple[str, str, Where, Name], IntField] = {}
    for path, operations in _spec()["paths"].items():
        for method, operation in operations.items():
            if not isinstance(operation, dict) or "operationId" not in operation:
                continue
            sources: list[tuple[Where, Any, Name]] = []
            for parameter in map(_deref, operation.get("parameters", [])):
                if parameter["in"] == "query":
                    sources.append(("query", parameter.get("schema", {}), (parameter["name"],)))
            content = _deref(operation.get("requestBody", {})).get("content", {})
            if "application/json" in content:
                sources.append(("json", content["application/json"].get("schema", {}), ()))
            if "multipart/form-data" in content:
                sources.append(("multipart", content["multipart/form-data"].get("schema", {}), ()))
            for where, schema, prefix in sources:
                for name, node in _integers(schema, prefix):
                    key = (method.upper(), path, where, name)
                    field = IntField(
                        method.upper(), path, where, name, node.get("minimum"), node.get("maximum")
                    )
                    # One name reached through several variants: the tightest documented bounds.
                    if key in found:
                        old = found[key]
                        field = IntField(
                            *key,
                            old.minimum if field.minimum is None else field.minimum,
                            old.maximum if field.maximum is None else field.maximum,
                        )
                    found[key] = field
    return sorted(found.values(), key=str)


# Valid requests to put the out-of-range values in ------------------------------------------------


@dataclass
class World:
    assistant_id: str
    thread_id: str
    run_id: str
    file_id: str
    vector_store_id: str
    batch_id: str

    def path(self, template: str) -> str:
        return template.format(**vars(self))


STATIC_CHUNKING: dict[str, Any] = {
    "type": "static",
    "static": {"max_chunk_size_tokens": 800, "chunk_overlap_tokens": 0},
}
SEARCH_TOOL: dict[str, Any] = {"type": "file_search", "file_search": {"max_num_results": 5}}
RUN_OPTIONS: dict[str, Any] = {
    "tools": [SEARCH_TOOL],
    "max_prompt_tokens": 4000,
    "max_completion_tokens": 1000,
    "truncation_strategy": {"type": "last_messages", "last_messages": 10},
}


def base_bodies(world: World) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Valid bodies per operation, written by hand; together they hold every container the spec's integer
    fields are in (a field that none holds fails the test)."""
    helper = {"vector_stores": [{"file_ids": [world.file_id], "chunking_strategy": STATIC_CHUNKING}]}
    return {
        ("POST", "/assistants"): [
            {"model": "fake-model", "tools": [SEARCH_TOOL], "tool_resources": {"file_search": helper}}
        ],
        ("POST", "/assistants/{assistant_id}"): [{"tools": [SEARCH_TOOL]}],
        ("POST", "/files"): [
            {"purpose": "assistants", "expires_after": {"anchor": "created_at", "seconds": 3600}}
        ],
        ("POST", "/threads"): [{"tool_resources": {"file_search": helper}}],
        ("POST", "/threads/runs"): [
            {
                "assistant_id": world.assistant_id,
                "thread": {"tool_resources": {"file_search": helper}},
                **RUN_OPTIONS,
            }
        ],
        ("POST", "/threads/{thread_id}/runs"): [{"assistant_id": world.assistant_id, **RUN_OPTIONS}],
        ("POST", "/vector_stores"): [
            {
                "file_ids": [world.file_id],
                "expires_after": {"anchor": "last_active_at", "days": 7},
                "chunking_strategy": STATIC_CHUNKING,
            }
        ],
        ("POST", "/vector_stores/{vector_store_id}"): [
            {"expires_after": {"anchor": "last_active_at", "days": 7}}
        ],
        ("POST", "/vector_stores/{vector_store_id}/file_batches"): [
            {"file_ids": [world.file_id], "chunking_strategy": STATIC_CHUNKING},
            {"files": [{"file_id": world.file_id, "chunking_strategy": STATIC_CHUNKING}]},
        ],
        ("POST", "/vector_stores/{vector_store_id}/files"): [
            {"file_id": world.file_id, "chunking_strategy": STATIC_CHUNKING}
        ],
        ("POST", "/vector_stores/{vector_store_id}/search"): [{"query": "notes", "max_num_results": 5}],
    }


def _holds_parent(body: Any, name: Name) -> bool:
    for part in name[:-1]:
        if isinstance(part, int):
            if not (isinstance(body, list) and part < len(body)):
                return False
        elif not (isinstance(body, dict) and part in body):
            return False
        body = body[part]
    return isinstance(body, dict)


def _with_value(body: dict[str, Any], name: Name, value: int) -> dict[str, Any]:
    changed = copy.deepcopy(body)
    target: Any = changed
    for part in name[:-1]:
        target = target[part]
    target[name[-1]] = value
    return changed


# Sending --------------------------------------------------------------------------------------

SDK_TYPES: dict[str, tuple[type[BaseModel], str]] = {
    "assistant": (Assistant, "AssistantObject"),
    "thread": (Thread, "ThreadObject"),
    "thread.run": (Run, "RunObject"),
    "file": (FileObject, "OpenAIFile"),
    "vector_store": (VectorStore, "VectorStoreObject"),
    "vector_store.file": (VectorStoreFile, "VectorStoreFileObject"),
    "vector_store.files_batch": (VectorStoreFileBatch, "VectorStoreFileBatchObject"),
}


def send(
    client: OpenAI, world: World, field: IntField, body: dict[str, Any] | None, value: int | None
) -> Any:
    """``field`` set to ``value`` (left as ``body`` has it when None) in a request through the SDK."""
    path = world.path(field.path)
    if field.where == "query":
        params = {} if value is None else {field.name[0]: value}
        return client.get(path, options={"params": params}, cast_to=httpx.Response).json()
    assert body is not None
    payload = body if value is None else _with_value(body, field.name, value)
    if field.where == "multipart":
        assert path == "/files", f"no way to send a multipart body to {path}"
        return check(FileObject, client.files.create(file=("bounds.txt", io.BytesIO(b"bounds")), **payload))
    return client.post(path, body=payload, cast_to=httpx.Response).json()


def accepted(client: OpenAI, data: Any) -> None:
    """A successful answer is the SDK's type; a run it started is waited for, so the thread is free."""
    if isinstance(data, BaseModel):
        return
    kind = data.get("object")
    if kind == "list":
        return
    if kind == "vector_store.search_results.page":
        check_schema(data, "VectorStoreSearchResultsPage")
        return
    model, schema = SDK_TYPES[kind]
    check(model, data, schema)
    if kind == "thread.run":
        deadline = time.monotonic() + 30
        run = client.beta.threads.runs.retrieve(data["id"], thread_id=data["thread_id"])
        while run.status not in TERMINAL:
            assert time.monotonic() < deadline, f"run {run.id} still {run.status}"
            time.sleep(0.05)
            run = client.beta.threads.runs.retrieve(data["id"], thread_id=data["thread_id"])
        if run.status == "requires_action":
            client.beta.threads.runs.cancel(run.id, thread_id=run.thread_id)


def refused(
    client: OpenAI, world: World, field: IntField, body: dict[str, Any] | None, value: int
) -> dict[str, Any]:
    with pytest.raises(openai.BadRequestError) as info:
        send(client, world, field, body, value)
    return api_error(info.value, 400, field.param)


# Fixtures -------------------------------------------------------------------------------------


def _upload(client: OpenAI, name: str = "notes.txt") -> str:
    return client.files.create(file=(name, io.BytesIO(b"field notes about herons")), purpose="assistants").id


@pytest.fixture
def world(client: OpenAI) -> World:
    file_id = _upload(client)
    store = client.vector_stores.create(name="bounds", file_ids=[file_id])
    batch = client.vector_stores.file_batches.create(store.id, file_ids=[_upload(client)])
    assistant = client.beta.assistants.create(model="fake-model")
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "hello"}])
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, poll_interval_ms=50
    )
    assert run.status == "completed"
    return World(assistant.id, thread.id, run.id, file_id, store.id, batch.id)


def _store_ids(client: OpenAI) -> set[str]:
    return {store.id for store in client.vector_stores.list(limit=100)}


def _thread_ids(client: OpenAI) -> set[str]:
    # Listing threads is an assistd extension, so the SDK has no method for it.
    ids: set[str] = set()
    after: str | None = None
    while True:
        query = {"limit": 100, **({"after": after} if after else {})}
        page = client.get("/threads", options={"params": query}, cast_to=httpx.Response).json()
        ids |= {thread["id"] for thread in page["data"]}
        if not page["has_more"]:
            return ids
        after = page["last_id"]


# Vector stores named both ways --------------------------------------------------------------------


def both_ways(world: World) -> dict[str, Any]:
    return {
        "file_search": {
            "vector_store_ids": [world.vector_store_id],
            "vector_stores": [{"file_ids": [world.file_id]}],
        }
    }


def test_vector_stores_named_both_ways_are_refused_before_anything_is_written(
    client: OpenAI, world: World
) -> None:
    stores, threads = _store_ids(client), _thread_ids(client)
    assistants = {assistant.id for assistant in client.beta.assistants.list(limit=100)}
    resources = both_ways(world)
    attempts: list[tuple[Callable[[], Any], str]] = [
        (
            lambda: client.beta.assistants.create(model="fake-model", tool_resources=resources),  # type: ignore[arg-type]
            "tool_resources.file_search",
        ),
        (
            lambda: client.beta.assistants.update(world.assistant_id, tool_resources=resources),  # type: ignore[arg-type]
            "tool_resources.file_search",
        ),
        (lambda: client.beta.threads.create(tool_resources=resources), "tool_resources.file_search"),  # type: ignore[arg-type]
        (
            lambda: client.beta.threads.update(world.thread_id, tool_resources=resources),  # type: ignore[arg-type]
            "tool_resources.file_search",
        ),
        (
            lambda: client.beta.threads.create_and_run(
                assistant_id=world.assistant_id,
                thread={"messages": [{"role": "user", "content": "hi"}], "tool_resources": resources},  # type: ignore[typeddict-item]
            ),
            "thread.tool_resources.file_search",
        ),
        (
            lambda: client.beta.threads.create_and_run(
                assistant_id=world.assistant_id,
                tool_resources=resources,  # type: ignore[arg-type]
            ),
            "tool_resources.file_search",
        ),
    ]
    for attempt, param in attempts:
        with pytest.raises(openai.BadRequestError) as info:
            attempt()
        error = api_error(info.value, 400, param)
        assert "vector store" in error["message"]
    # Nothing was written: no store made by the helper, no assistant, and the modified objects unchanged.
    assert _store_ids(client) == stores
    assert {assistant.id for assistant in client.beta.assistants.list(limit=100)} == assistants
    assistant = check(
        Assistant,
        raw(client.beta.assistants.with_raw_response.retrieve(world.assistant_id)),
        "AssistantObject",
    )
    thread = check(
        Thread, raw(client.beta.threads.with_raw_response.retrieve(world.thread_id)), "ThreadObject"
    )
    for resources_now in (assistant.tool_resources, thread.tool_resources):
        assert resources_now is None or resources_now.file_search is None
    assert _thread_ids(client) == threads


def test_each_way_alone_attaches_one_store(client: OpenAI, world: World) -> None:
    """The refusal is of the pair: either way alone is accepted, and the response shows the one store."""
    by_id = {"file_search": {"vector_store_ids": [world.vector_store_id]}}
    by_helper = {
        "file_search": {
            "vector_stores": [{"file_ids": [world.file_id], "chunking_strategy": STATIC_CHUNKING}]
        }
    }
    for resources in (by_id, by_helper):
        made = client.beta.assistants.with_raw_response.create(model="fake-model", tool_resources=resources)  # type: ignore[arg-type]
        assistant = check(Assistant, raw(made), "AssistantObject")
        assert assistant.tool_resources is not None and assistant.tool_resources.file_search is not None
        assert len(assistant.tool_resources.file_search.vector_store_ids or []) == 1
        thread = check(
            Thread,
            raw(client.beta.threads.with_raw_response.update(world.thread_id, tool_resources=resources)),
            "ThreadObject",
        )  # type: ignore[arg-type]
        assert thread.tool_resources is not None and thread.tool_resources.file_search is not None
        assert len(thread.tool_resources.file_search.vector_store_ids or []) == 1
    # Two of either kind are refused by their own list's limit.
    two_ids = {"file_search": {"vector_store_ids": [world.vector_store_id, world.vector_store_id]}}
    two_helpers = {
        "file_search": {"vector_stores": [{"file_ids": [world.file_id]}, {"file_ids": [world.file_id]}]}
    }
    stores = _store_ids(client)
    for resources, param in (
        (two_ids, "tool_resources.file_search.vector_store_ids"),
        (two_helpers, "tool_resources.file_search.vector_stores"),
    ):
        with pytest.raises(openai.BadRequestError) as info:
            client.beta.threads.create(tool_resources=resources)  # type: ignore[arg-type]
        api_error(info.value, 400, param)
    assert _store_ids(client) == stores


def test_a_bad_helper_store_is_refused_with_its_field_named(client: OpenAI, world: World) -> None:
    """The helper's stores are validated with the request, not when they are made after other writes."""
    stores = _store_ids(client)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"file_ids": "file-x"}, "file_ids"),
        ({"file_ids": [world.file_id], "colour": "red"}, "colour"),
        ({"file_ids": [world.file_id], "metadata": {"k": "v" * 513}}, "metadata"),
        (
            {
                "file_ids": [world.file_id],
                "chunking_strategy": {
                    "type": "static",
                    "static": {"max_chunk_size_tokens": 800, "chunk_overlap_tokens": 401},
                },
            },
            "chunking_strategy.static.chunk_overlap_tokens",
        ),
    ]
    for spec, field in cases:
        resources = {"file_search": {"vector_stores": [spec]}}
        with pytest.raises(openai.BadRequestError) as info:
            client.beta.assistants.create(model="fake-model", tool_resources=resources)  # type: ignore[arg-type]
        api_error(info.value, 400, f"tool_resources.file_search.vector_stores[0].{field}")
    assert _store_ids(client) == stores


# Integers out of range ----------------------------------------------------------------------------


def out_of_range(field: IntField) -> list[int]:
    values = [2**64, -(2**64)]
    if field.maximum is not None:
        values.append(field.maximum + 1)
    if field.minimum is not None:
        values.append(field.minimum - 1)
    return values


def test_the_spec_has_the_integer_fields_this_test_expects() -> None:
    """The walk of the description finds what is known to be there (so an empty walk cannot pass)."""
    fields = {str(field): field for field in spec_integer_fields()}
    runs = fields["POST /threads/{thread_id}/runs max_prompt_tokens"]
    assert (runs.minimum, runs.maximum) == (256, None)
    search = fields["POST /vector_stores/{vector_store_id}/search max_num_results"]
    assert (search.minimum, search.maximum) == (1, 50)
    assert "GET /assistants limit" in fields
    assert "POST /files expires_after.seconds" in fields
    helper = "thread.tool_resources.file_search.vector_stores[0].chunking_strategy.static"
    assert f"POST /threads/runs {helper}.max_chunk_size_tokens" in fields


def test_every_integer_of_the_spec_out_of_range_is_a_400_naming_it(
    client: OpenAI, world: World, server: AssistdServer
) -> None:
    log_start = len(server.log())
    bodies = base_bodies(world)
    fields = spec_integer_fields()
    without_base = [
        str(field)
        for field in fields
        if field.where != "query"
        and not any(_holds_parent(body, field.name) for body in bodies.get((field.method, field.path), []))
    ]
    assert not without_base, f"integer fields of the spec with no base body to try them in: {without_base}"
    tried_bases: set[tuple[str, str, int]] = set()
    for field in fields:
        candidates = bodies.get((field.method, field.path), [])
        index, body = next(
            ((i, b) for i, b in enumerate(candidates) if _holds_parent(b, field.name)), (-1, None)
        )
        # The request is valid as it stands, so the refusals below are the value's doing.
        if (field.method, field.path, index) not in tried_bases:
            tried_bases.add((field.method, field.path, index))
            accepted(client, send(client, world, field, body, None))
        for value in out_of_range(field):
            error = refused(client, world, field, body, value)
            assert field.param.rsplit(".", 1)[-1] in error["message"], error
        # The documented bounds themselves are accepted.
        for value in (field.minimum, field.maximum):
            if value is not None:
                accepted(client, send(client, world, field, body, value))
    assert "Traceback" not in server.log()[log_start:]


def test_unbounded_integers_stop_where_their_column_does(client: OpenAI, world: World) -> None:
    """Fields OpenAI gives no maximum are bounded by what the database holds (32-bit on PostgreSQL); the
    largest such value is stored and shown back, one more is refused."""
    largest = 2**31 - 1
    run = client.beta.threads.runs.with_raw_response.create(
        world.thread_id,
        assistant_id=world.assistant_id,
        max_prompt_tokens=largest,
        max_completion_tokens=largest,
        truncation_strategy={"type": "last_messages", "last_messages": largest},
    )
    created = check(Run, raw(run), "RunObject")
    accepted(client, raw(run))
    shown = client.beta.threads.runs.retrieve(created.id, thread_id=world.thread_id)
    assert (shown.max_prompt_tokens, shown.max_completion_tokens) == (largest, largest)
    assert shown.truncation_strategy.last_messages == largest
    for name in ("max_prompt_tokens", "max_completion_tokens"):
        with pytest.raises(openai.BadRequestError) as info:
            client.beta.threads.runs.create(
                world.thread_id, assistant_id=world.assistant_id, **{name: largest + 1}
            )
        api_error(info.value, 400, name)
    # The numbers of the report that found the defect, on create_and_run.
    for name, value in (
        ("max_prompt_tokens", 17080207201048156160),
        ("max_completion_tokens", 99999999999999999999),
    ):
        with pytest.raises(openai.BadRequestError) as info:
            client.beta.threads.create_and_run(assistant_id=world.assistant_id, **{name: value})
        error = api_error(info.value, 400, name)
        assert error["code"] == "invalid_value"


def _raw_post(client: OpenAI, path: str, body: bytes) -> httpx.Response:
    # Bodies the SDK cannot send: it refuses NaN, and fails to encode a lone surrogate as UTF-8.
    headers = {"Authorization": f"Bearer {client.api_key}", "Content-Type": "application/json"}
    with httpx.Client(base_url=str(client.base_url), headers=headers, timeout=30) as http:
        return http.post(path, content=body)


def _error(response: httpx.Response, param: str) -> dict[str, Any]:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param, error
    return dict(error)


def test_non_finite_attribute_values_are_refused(client: OpenAI, world: World) -> None:
    """NaN and Infinity parse from JSON, but PostgreSQL's json cannot store them: refused on every backend."""
    file_id = _upload(client, "scored.txt")
    path = f"/vector_stores/{world.vector_store_id}/files"
    for literal in (b"NaN", b"Infinity", b"-Infinity", b"1e400", b"1" + b"0" * 400):
        body = b'{"file_id": "%s", "attributes": {"score": %s}}' % (file_id.encode(), literal)
        _error(_raw_post(client, path, body), "attributes.score")
    assert file_id not in {file.id for file in client.vector_stores.files.list(world.vector_store_id)}


def test_lone_surrogates_are_refused(client: OpenAI, world: World) -> None:
    """A lone UTF-16 surrogate cannot be stored as UTF-8: refused with the field named, never a 500."""
    for escaped in (b"\\ud800", b"a\\udfffb"):
        _error(_raw_post(client, "/assistants", b'{"model": "fake-model", "name": "%s"}' % escaped), "name")
        body = b'{"role": "user", "content": "%s"}' % escaped
        _error(_raw_post(client, f"/threads/{world.thread_id}/messages", body), "content")


def test_the_actions_facade_refuses_huge_numbers_and_lone_surrogates(
    server: AssistdServer, world: World
) -> None:
    """/actions reads its own parameters, outside the request models: the same values are refused there."""
    huge = "1" + "0" * 400  # a JSON integer past float's range
    run = f'"threadId": "{world.thread_id}", "assistantId": "{world.assistant_id}"'
    cases = [
        (f'{{"action": "list-assistants", "limit": {huge}}}', "limit"),
        (f'{{"action": "list-assistants", "limit": {2**64}}}', "limit"),
        (f'{{"action": "run-assistant", {run}, "timeout": {huge}}}', "timeout"),
        (f'{{"action": "run-assistant", {run}, "timeout": -{huge}}}', "timeout"),
        ('{"action": "get-assistant", "assistantId": "\\ud800"}', "assistantId"),
        ('{"action": "create-assistant", "name": "a\\udfffb"}', "name"),
    ]
    headers = {"Authorization": f"Bearer {KEYS[0]}", "Content-Type": "application/json"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=30) as http:
        for body, param in cases:
            response = http.post("/actions", content=body)
            assert response.status_code == 400, (body, response.text)
            answer = response.json()
            assert answer["success"] is False and f"'{param}'" in answer["error"], answer
