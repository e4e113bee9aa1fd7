"""Request limits (docs/reliability.md, "Limits"): every one is refused in OpenAI's error body, naming the
parameter where there is one, before anything is written; a body too large or too slow is cut off while it
arrives (413, 408) and holds nothing meanwhile, so slow clients do not keep others waiting.

Field limits are tried on the shared server (default settings); body limits on a server of its own with
small ones, reached by raw sockets and httpx streams where the SDK could not send what they need.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI

from conftest import Databases, make_client, start_server
from fake_upstream import FakeUpstream
from server import KEYS, AssistdServer
from wire import api_error

AUTH = {"Authorization": f"Bearer {KEYS[0]}"}

# OpenAI's bounds, as its API reference states them (the OpenAPI description in shared/openapi), or, where
# it states none, assistd's own (docs/reliability.md says which).
METADATA_PAIRS, METADATA_KEY, METADATA_VALUE = 16, 64, 512
MAX_TOOLS = 128
MAX_MESSAGE_TEXT = 256_000
MAX_CONTENT_PARTS = 32
MAX_ATTACHMENTS = 10
MAX_SCHEMA_BYTES = 64 * 1024
MAX_SCHEMA_DEPTH = 32
MAX_NEW_STORE_FILES = 500
MAX_BATCH_FILES = 2_000

# The body limits of the limited server.
JSON_LIMIT = 64 * 1024
UPLOAD_LIMIT = 4096
BODY_TIMEOUT = 20.0
# A body that never ends is given up by the client after this much: reaching it means it was not cut.
ENDLESS = 256 * 1024 * 1024


def refused(call: Callable[[], object], param: str | None, status: int = 400) -> dict[str, Any]:
    with pytest.raises(openai.APIStatusError) as info:
        call()
    return api_error(info.value, status, param)


# Metadata on every object that has it ------------------------------------------------------------


BAD_METADATA: list[tuple[str, dict[str, str]]] = [
    ("too many pairs", {f"k{i}": "v" for i in range(METADATA_PAIRS + 1)}),
    ("key too long", {"k" * (METADATA_KEY + 1): "v"}),
    ("value too long", {"k": "v" * (METADATA_VALUE + 1)}),
]
AT_LIMIT = {f"{i:0{METADATA_KEY}d}": "v" * METADATA_VALUE for i in range(METADATA_PAIRS)}


@pytest.fixture
def assistant_id(client: OpenAI) -> str:
    return client.beta.assistants.create(model="fake-model").id


@pytest.fixture
def thread_id(client: OpenAI) -> str:
    return client.beta.threads.create().id


@pytest.mark.parametrize(("case", "metadata"), BAD_METADATA, ids=[case for case, _ in BAD_METADATA])
def test_metadata_of_every_object(
    client: OpenAI, assistant_id: str, thread_id: str, case: str, metadata: dict[str, str]
) -> None:
    beta = client.beta
    message = beta.threads.messages.create(thread_id, role="user", content="hi")
    store = client.vector_stores.create(name="s")
    user = {"role": "user", "content": "hi"}
    tries: list[tuple[str, Callable[[], object], str]] = [
        (
            "assistant create",
            lambda: beta.assistants.create(model="fake-model", metadata=metadata),
            "metadata",
        ),
        ("assistant update", lambda: beta.assistants.update(assistant_id, metadata=metadata), "metadata"),
        ("thread create", lambda: beta.threads.create(metadata=metadata), "metadata"),
        ("thread update", lambda: beta.threads.update(thread_id, metadata=metadata), "metadata"),
        (
            "thread's message",
            lambda: beta.threads.create(messages=[{**user, "metadata": metadata}]),  # type: ignore[list-item]
            "messages[0].metadata",
        ),
        (
            "message create",
            lambda: beta.threads.messages.create(thread_id, role="user", content="x", metadata=metadata),
            "metadata",
        ),
        (
            "message update",
            lambda: beta.threads.messages.update(message.id, thread_id=thread_id, metadata=metadata),
            "metadata",
        ),
        (
            "run create",
            lambda: beta.threads.runs.create(thread_id, assistant_id=assistant_id, metadata=metadata),
            "metadata",
        ),
        (
            "run's additional message",
            lambda: beta.threads.runs.create(
                thread_id,
                assistant_id=assistant_id,
                additional_messages=[{**user, "metadata": metadata}],  # type: ignore[list-item]
            ),
            "additional_messages[0].metadata",
        ),
        (
            "thread-and-run",
            lambda: beta.threads.create_and_run(assistant_id=assistant_id, metadata=metadata),
            "metadata",
        ),
        (
            "thread-and-run's thread",
            lambda: beta.threads.create_and_run(assistant_id=assistant_id, thread={"metadata": metadata}),
            "thread.metadata",
        ),
        ("vector store create", lambda: client.vector_stores.create(metadata=metadata), "metadata"),
        ("vector store update", lambda: client.vector_stores.update(store.id, metadata=metadata), "metadata"),
        (
            "vector_stores helper",
            lambda: beta.threads.create(
                tool_resources={"file_search": {"vector_stores": [{"metadata": metadata}]}}
            ),
            "tool_resources.file_search.vector_stores[0].metadata",
        ),
    ]
    assistants = len(beta.assistants.list(limit=100).data)
    stores = len(client.vector_stores.list(limit=100).data)
    for name, call, param in tries:
        error = refused(call, param)
        assert "metadata" in error["message"], (name, error)
    # Nothing of them was written.
    assert len(beta.assistants.list(limit=100).data) == assistants
    assert len(client.vector_stores.list(limit=100).data) == stores
    assert [m.id for m in beta.threads.messages.list(thread_id).data] == [message.id]
    assert beta.threads.runs.list(thread_id).data == []
    assert beta.threads.retrieve(thread_id).metadata == {}
    assert beta.assistants.retrieve(assistant_id).metadata == {}
    assert client.vector_stores.retrieve(store.id).metadata == {}


def test_metadata_at_the_limit_is_kept(client: OpenAI, thread_id: str) -> None:
    assert client.beta.threads.update(thread_id, metadata=AT_LIMIT).metadata == AT_LIMIT
    message = client.beta.threads.messages.create(thread_id, role="user", content="x", metadata=AT_LIMIT)
    assert client.beta.threads.messages.retrieve(message.id, thread_id=thread_id).metadata == AT_LIMIT
    assert client.vector_stores.create(metadata=AT_LIMIT).metadata == AT_LIMIT


# Tools ------------------------------------------------------------------------------------------


def _functions(count: int) -> list[Any]:
    return [{"type": "function", "function": {"name": f"f{i}"}} for i in range(count)]


def test_tools_per_assistant_and_run(client: OpenAI, assistant_id: str, thread_id: str) -> None:
    beta = client.beta
    too_many = _functions(MAX_TOOLS + 1)
    before = len(beta.assistants.list(limit=100).data)
    for call, param in [
        (lambda: beta.assistants.create(model="fake-model", tools=too_many), "tools"),
        (lambda: beta.assistants.update(assistant_id, tools=too_many), "tools"),
        (lambda: beta.threads.runs.create(thread_id, assistant_id=assistant_id, tools=too_many), "tools"),
        (lambda: beta.threads.create_and_run(assistant_id=assistant_id, tools=too_many), "tools"),
    ]:
        error = refused(call, param)
        assert str(MAX_TOOLS) in error["message"]
    assert len(beta.assistants.list(limit=100).data) == before
    assert beta.threads.runs.list(thread_id).data == []
    assert beta.assistants.retrieve(assistant_id).tools == []
    at_limit = beta.assistants.create(model="fake-model", tools=_functions(MAX_TOOLS))
    assert len(at_limit.tools) == MAX_TOOLS


def _nested(depth: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(depth - 1):
        schema = {"type": "array", "items": schema}
    return schema


def test_function_schema_size_and_depth(client: OpenAI, assistant_id: str, thread_id: str) -> None:
    beta = client.beta
    # Compact JSON of exactly the limit, then one byte over it.
    padding = MAX_SCHEMA_BYTES - len(json.dumps({"type": "object", "description": ""}, separators=(",", ":")))
    fits = {"type": "object", "description": "d" * padding}
    over = {"type": "object", "description": "d" * (padding + 1)}
    for schema in (over, _nested(MAX_SCHEMA_DEPTH + 1)):
        tool: Any = {"type": "function", "function": {"name": "f", "parameters": schema}}
        refused(
            lambda tool=tool: beta.assistants.create(model="fake-model", tools=[tool]),
            "tools[0].function.parameters",
        )
        refused(
            lambda tool=tool: beta.assistants.update(assistant_id, tools=[*_functions(3), tool]),
            "tools[3].function.parameters",
        )
        refused(
            lambda tool=tool: beta.threads.runs.create(thread_id, assistant_id=assistant_id, tools=[tool]),
            "tools[0].function.parameters",
        )
        refused(
            lambda schema=schema: beta.assistants.create(
                model="fake-model",
                response_format={"type": "json_schema", "json_schema": {"name": "n", "schema": schema}},
            ),
            "response_format.json_schema.schema",
        )
    assert beta.threads.runs.list(thread_id).data == []
    for schema in (fits, {"type": "object", "properties": {"x": _nested(MAX_SCHEMA_DEPTH - 2)}}):
        tool = {"type": "function", "function": {"name": "f", "parameters": schema}}
        created = beta.assistants.create(model="fake-model", tools=[tool])
        function = created.tools[0].function  # type: ignore[union-attr]
        assert function.parameters == schema


# Messages ---------------------------------------------------------------------------------------


def test_message_text_parts_and_attachments(client: OpenAI, thread_id: str) -> None:
    messages = client.beta.threads.messages
    half = "a" * (MAX_MESSAGE_TEXT // 2)
    text: Any = {"type": "text", "text": "x"}
    attachment: Any = {"file_id": "file-none", "tools": [{"type": "file_search"}]}
    cases: list[tuple[Any, dict[str, Any], str]] = [
        ("a" * (MAX_MESSAGE_TEXT + 1), {}, "content"),
        ([{"type": "text", "text": "a" * (MAX_MESSAGE_TEXT + 1)}], {}, "content[0].text"),
        # Each part within the bound, the message's text in all over it.
        ([{"type": "text", "text": half}, text, {"type": "text", "text": half}], {}, "content"),
        ([text] * (MAX_CONTENT_PARTS + 1), {}, "content"),
        ("x", {"attachments": [attachment] * (MAX_ATTACHMENTS + 1)}, "attachments"),
    ]
    for content, extra, param in cases:
        refused(
            lambda content=content, extra=extra: messages.create(
                thread_id, role="user", content=content, **extra
            ),
            param,
        )
        refused(
            lambda content=content, extra=extra: client.beta.threads.create(
                messages=[{"role": "user", "content": content, **extra}]
            ),
            f"messages[0].{param}",
        )
    assert messages.list(thread_id).data == []
    # At each bound: kept whole.
    whole = messages.create(thread_id, role="user", content="b" * MAX_MESSAGE_TEXT)
    assert whole.content[0].text.value == "b" * MAX_MESSAGE_TEXT  # type: ignore[union-attr]
    parts = messages.create(thread_id, role="user", content=[text] * MAX_CONTENT_PARTS)
    assert len(parts.content) == MAX_CONTENT_PARTS


def test_message_attachments_at_the_limit(client: OpenAI, thread_id: str) -> None:
    ids = [
        client.files.create(file=(f"a{i}.txt", b"attached"), purpose="assistants").id
        for i in range(MAX_ATTACHMENTS)
    ]
    attachments: Any = [{"file_id": file_id, "tools": [{"type": "code_interpreter"}]} for file_id in ids]
    message = client.beta.threads.messages.create(
        thread_id, role="user", content="x", attachments=attachments
    )
    assert [a.file_id for a in message.attachments or []] == ids


# Vector store file ids --------------------------------------------------------------------------


def test_vector_store_file_ids(client: OpenAI) -> None:
    stores = client.vector_stores
    before = len(stores.list(limit=100).data)
    many = [f"file-{i}" for i in range(MAX_NEW_STORE_FILES + 1)]
    refused(lambda: stores.create(file_ids=many), "file_ids")
    refused(
        lambda: client.beta.assistants.create(
            model="fake-model", tool_resources={"file_search": {"vector_stores": [{"file_ids": many}]}}
        ),
        "tool_resources.file_search.vector_stores[0].file_ids",
    )
    assert len(stores.list(limit=100).data) == before
    store = stores.create(name="batch")
    batch = [f"file-{i}" for i in range(MAX_BATCH_FILES + 1)]
    refused(lambda: stores.file_batches.create(store.id, file_ids=batch), "file_ids")
    refused(lambda: stores.file_batches.create(store.id, files=[{"file_id": f} for f in batch]), "files")
    assert stores.files.list(store.id).data == []


# Bodies: size and time --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def limited(
    tmp_path_factory: pytest.TempPathFactory, databases: Databases, fake: FakeUpstream
) -> Iterator[AssistdServer]:
    srv = start_server(
        tmp_path_factory,
        databases,
        fake,
        max_json_body_bytes=str(JSON_LIMIT),
        max_upload_bytes=str(UPLOAD_LIMIT),
        body_timeout_seconds=str(BODY_TIMEOUT),
        # Two pooled connections (PostgreSQL): slow bodies holding one each would stall the rest.
        database_pool_size="2",
    )
    yield srv
    srv.stop()


@pytest.fixture
def limited_client(limited: AssistdServer) -> Iterator[OpenAI]:
    with make_client(limited) as c:
        yield c


def _error_body(response: httpx.Response, status: int, param: str | None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error" and error["param"] == param
    return dict(error)


def test_json_body_size(limited: AssistdServer, limited_client: OpenAI) -> None:
    beta = limited_client.beta
    before = len(beta.assistants.list().data)
    error = refused(
        lambda: beta.assistants.create(model="fake-model", instructions="i" * JSON_LIMIT), None, 413
    )
    assert error["code"] == "request_too_large" and str(JSON_LIMIT) in error["message"]
    refused(lambda: beta.threads.create(messages=[{"role": "user", "content": "m" * JSON_LIMIT}]), None, 413)
    status, headers, answer = _declared_only(limited, "/v1/assistants", "application/json")
    assert (status, headers["connection"], answer["error"]["code"]) == (413, "close", "request_too_large")
    assert len(beta.assistants.list().data) == before
    # Just within it: the body is read and the request served.
    fits = beta.assistants.create(model="fake-model", instructions="i" * (JSON_LIMIT - 1024))
    assert fits.instructions == "i" * (JSON_LIMIT - 1024)


class Counted:
    """A body that never ends, counting what the client managed to send of it."""

    def __init__(self, head: bytes, filler: bytes = b"x") -> None:
        self.head, self.filler, self.sent = head, filler * 65536, 0

    def __iter__(self) -> Iterator[bytes]:
        yield self.head
        self.sent = len(self.head)
        while self.sent < ENDLESS:
            yield self.filler
            self.sent += len(self.filler)


def test_endless_chunked_json_is_cut_at_the_limit(limited: AssistdServer) -> None:
    body = Counted(b'{"model": "fake-model", "instructions": "', b"i")
    with httpx.Client(base_url=limited.base_url, headers=AUTH, timeout=60) as http:
        response = http.post("/assistants", content=body, headers={"content-type": "application/json"})
        error = _error_body(response, 413, None)
        assert error["code"] == "request_too_large"
        assert response.headers["connection"] == "close"
        # Cut near the limit (what the sockets' buffers held besides), not read to the end.
        assert body.sent < ENDLESS
        assert http.get("/assistants").status_code == 200
    assert "Traceback" not in limited.log()


def _form(purpose: str = "assistants", filename: str = "big.txt") -> bytes:
    return (
        b'--bnd\r\nContent-Disposition: form-data; name="purpose"\r\n\r\n' + purpose.encode() + b"\r\n"
        b'--bnd\r\nContent-Disposition: form-data; name="file"; filename="' + filename.encode() + b'"\r\n'
        b"Content-Type: text/plain\r\n\r\n"
    )


def test_upload_size(limited: AssistdServer, limited_client: OpenAI) -> None:
    files = limited_client.files
    before = {f.id for f in files.list()}
    error = refused(
        lambda: files.create(file=("big.txt", b"x" * (UPLOAD_LIMIT + 1)), purpose="assistants"), "file"
    )
    assert error["code"] == "file_too_large"
    # A body that never ends: the server stops reading at the limit (plus the form around the file).
    body = Counted(_form())
    with httpx.Client(base_url=limited.base_url, headers=AUTH, timeout=60) as http:
        response = http.post(
            "/files", content=body, headers={"content-type": "multipart/form-data; boundary=bnd"}
        )
    error = _error_body(response, 400, "file")
    assert error["code"] == "file_too_large" and str(UPLOAD_LIMIT) in error["message"]
    assert response.headers["connection"] == "close"
    assert body.sent < ENDLESS
    # A body declared past the limit is refused before any of it is sent.
    status, headers, answer = _declared_only(limited, "/v1/files", "multipart/form-data; boundary=bnd")
    assert (status, headers["connection"], answer["error"]["code"]) == (400, "close", "file_too_large")
    assert {f.id for f in files.list()} == before
    # At the limit: stored whole.
    kept = files.create(file=("fits.txt", b"y" * UPLOAD_LIMIT), purpose="assistants")
    assert kept.bytes == UPLOAD_LIMIT
    assert files.content(kept.id).read() == b"y" * UPLOAD_LIMIT


def _slow_request(server: AssistdServer, path: str, content_type: str, first: bytes) -> socket.socket:
    """A request whose body is declared and then never sent but for its first bytes."""
    host, port = server.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=60)
    sock.sendall(
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {KEYS[0]}\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: 10000\r\n\r\n".encode()
        + first
    )
    return sock


def _declared_only(server: AssistdServer, path: str, content_type: str) -> tuple[int, dict[str, str], Any]:
    """The answer to a request that declares a terabyte of body and sends none of it."""
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=60) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {KEYS[0]}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {10**12}\r\n\r\n".encode()
        )
        answer = b""
        while chunk := sock.recv(65536):  # the server closes the connection after its answer
            answer += chunk
    return _parse(answer)


def _trickle_until_answered(socks: list[socket.socket], answers: dict[int, bytes]) -> None:
    """Send a byte on each connection now and then, until each has its answer and is closed."""
    deadline = time.monotonic() + BODY_TIMEOUT + 90
    for sock in socks:
        sock.setblocking(False)
    while len(answers) < len(socks) and time.monotonic() < deadline:
        for index, sock in enumerate(socks):
            if index in answers:
                continue
            with contextlib.suppress(OSError):  # BlockingIOError too: a full buffer waits for the next turn
                sock.send(b" ")
            data = b""
            try:
                while chunk := sock.recv(65536):
                    data += chunk
                answers[index] = data  # closed by the server after its answer
            except BlockingIOError:
                if data:
                    answers[index] = data  # answered; the close is on its way
            except OSError:
                answers[index] = data
        time.sleep(0.5)


def _parse(answer: bytes) -> tuple[int, dict[str, str], dict[str, Any]]:
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, json.loads(body)


def test_slow_bodies_are_cut_and_block_nothing(limited: AssistdServer, limited_client: OpenAI) -> None:
    assistants = len(limited_client.beta.assistants.list(limit=100).data)
    # More slow clients than the server has database connections, on endpoints that write.
    socks = [
        _slow_request(limited, "/v1/assistants", "application/json", b'{"model": "fake-model"')
        for _ in range(4)
    ] + [_slow_request(limited, "/v1/files", "multipart/form-data; boundary=bnd", _form()) for _ in range(2)]
    try:
        # Meanwhile, others are served, reading and writing (no slow one has been answered yet).
        created = limited_client.beta.assistants.create(model="fake-model", name="meanwhile")
        uploaded = limited_client.files.create(file=("quick.txt", b"quick"), purpose="assistants")
        assert limited_client.beta.assistants.retrieve(created.id).name == "meanwhile"
        assert limited_client.files.retrieve(uploaded.id).bytes == 5
        for sock in socks:
            sock.setblocking(False)
            with pytest.raises(BlockingIOError):
                sock.recv(1)  # still waiting for its body: the requests above did not wait for these
        answers: dict[int, bytes] = {}
        _trickle_until_answered(socks, answers)
    finally:
        for sock in socks:
            sock.close()
    assert len(answers) == len(socks)
    for index, answer in answers.items():
        status, headers, body = _parse(answer)
        assert status == 408, answer
        assert headers["connection"] == "close"
        error = body["error"]
        assert error["code"] == "request_timeout" and error["type"] == "invalid_request_error", index
    # Nothing of theirs was written: the one assistant more is the one created meanwhile.
    assert len(limited_client.beta.assistants.list(limit=100).data) == assistants + 1
    assert [f.filename for f in limited_client.files.list()].count("big.txt") == 0
    # The endpoints saw their bodies end early and answered nothing more: no error of theirs was logged.
    assert "Traceback" not in limited.log()


def _paced(head: bytes, tail: bytes, size: int, step: int, pause: float) -> Iterator[bytes]:
    yield head
    for _ in range(size // step):
        time.sleep(pause)
        yield b"i" * step
    yield tail


def test_the_deadline_grows_with_what_arrives(
    tmp_path_factory: pytest.TempPathFactory, databases: Databases, fake: FakeUpstream
) -> None:
    # Two seconds, and one more for every KiB sent: a body at twice that pace arrives whole whatever its
    # length; one at a fiftieth of it is cut.
    server = start_server(
        tmp_path_factory, databases, fake, body_timeout_seconds="2", body_min_bytes_per_second="1024"
    )
    head, tail = b'{"model": "fake-model", "instructions": "', b'"}'
    try:
        with httpx.Client(base_url=server.base_url, headers=AUTH, timeout=60) as http:
            json_type = {"content-type": "application/json"}
            steady = http.post("/assistants", content=_paced(head, tail, 8192, 512, 0.25), headers=json_type)
            assert steady.status_code == 200, steady.text
            assert steady.json()["instructions"] == "i" * 8192
            trickle = http.post("/assistants", content=_paced(head, tail, 400, 5, 0.25), headers=json_type)
            error = _error_body(trickle, 408, None)
            assert error["code"] == "request_timeout"
            assert len(http.get("/assistants").json()["data"]) == 1
        assert "Traceback" not in server.log()
    finally:
        server.stop()
