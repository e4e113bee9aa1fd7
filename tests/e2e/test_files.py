"""Files over the wire: upload, list, retrieve, download, delete, with the official SDK.

Uploads are checked byte for byte on the way back, against the SDK's types and OpenAI's schema, and on the
server's disk: a refused or deleted upload leaves no bytes behind.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, get_args
from urllib.parse import quote

import asyncpg
import httpx
import openai
import pytest
from openai import OpenAI
from openai.pagination import SyncCursorPage
from openai.types import FileDeleted, FileObject, FilePurpose

from conftest import Databases, make_client, start_server
from fake_upstream import FakeUpstream
from server import KEYS, AssistdServer
from wire import api_error, check, raw

AUTH = {"Authorization": f"Bearer {KEYS[0]}"}
ALL_BYTES = bytes(range(256)) * 64 + bytes(reversed(range(256))) * 64
BOUNDARY = "assistd-test-boundary-7c1f"


@pytest.fixture
def http(server: AssistdServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, headers=AUTH, timeout=60) as c:
        yield c


def form(*parts: tuple[str, str | None, bytes]) -> dict[str, Any]:
    """httpx arguments for a multipart body of exactly these (name, filename, value) parts, in order."""
    body = b""
    for name, filename, value in parts:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        body += f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + value + b"\r\n"
    body += f"--{BOUNDARY}--\r\n".encode()
    return {"content": body, "headers": {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}}


def _stored_keys(server: AssistdServer, complete: bool) -> set[str]:
    """On PostgreSQL the bytes are rows of the server's database (``blobs``): their keys."""

    async def read() -> set[str]:
        connection = await asyncpg.connect(server.database_url)
        try:
            rows = await connection.fetch("SELECT key FROM blobs WHERE complete = $1", complete)
            return {str(row["key"]) for row in rows}
        finally:
            await connection.close()

    return asyncio.run(read())


def blobs(server: AssistdServer) -> set[str]:
    """The stored files' bytes: files on the server's disk (SQLite), outside its temporary directory, or
    complete blobs in its database (PostgreSQL)."""
    if server.database_url.startswith("postgresql"):
        return _stored_keys(server, complete=True)
    root = server.data_dir / "files"
    return (
        {str(p) for p in root.rglob("*") if p.is_file() and p.parent != root / "tmp"}
        if root.exists()
        else set()
    )


def temporaries(server: AssistdServer) -> list[str]:
    """Uploads begun and not finished: temporary files, or incomplete blobs."""
    if server.database_url.startswith("postgresql"):
        return sorted(_stored_keys(server, complete=False))
    tmp = server.data_dir / "files" / "tmp"
    return [str(p) for p in tmp.iterdir()] if tmp.exists() else []


def upload(client: OpenAI, data: bytes, filename: str = "notes.txt", **params: Any) -> dict[str, Any]:
    """Upload through the SDK; the raw JSON answer, checked against the SDK type and OpenAI's schema."""
    params.setdefault("purpose", "assistants")
    body: dict[str, Any] = raw(client.files.with_raw_response.create(file=(filename, data), **params))
    if body["purpose"] != "evals":  # see list_files
        check(FileObject, body, "OpenAIFile")
    return body


def content_of(client: OpenAI, file_id: str) -> bytes:
    return client.files.content(file_id).content


def list_files(client: OpenAI, **params: Any) -> dict[str, Any]:
    body: dict[str, Any] = raw(client.files.with_raw_response.list(**params))
    # Files of purpose evals are valid uploads that the SDK's FileObject and the schema do not list.
    checkable = {**body, "data": [item for item in body["data"] if item["purpose"] != "evals"]}
    check(SyncCursorPage[FileObject], checkable)
    if body["data"]:
        check(SyncCursorPage[FileObject], checkable, "ListFilesResponse")
        assert body["first_id"] == body["data"][0]["id"] and body["last_id"] == body["data"][-1]["id"]
    else:
        assert body["first_id"] is None and body["last_id"] is None and body["has_more"] is False
    for item in checkable["data"]:
        check(FileObject, item, "OpenAIFile")
    return body


def ids(body: dict[str, Any]) -> list[str]:
    return [item["id"] for item in body["data"]]


def bad_request(call: Any, param: str | None) -> dict[str, Any]:
    with pytest.raises(openai.BadRequestError) as info:
        call()
    return api_error(info.value, 400, param)


def not_found(call: Any, param: str = "file_id") -> None:
    with pytest.raises(openai.NotFoundError) as info:
        call()
    api_error(info.value, 404, param)


# Round trips ------------------------------------------------------------------------------------


def test_upload_retrieve_download(client: OpenAI, server: AssistdServer) -> None:
    before = blobs(server)
    started = int(time.time())
    body = upload(client, b"hello, files\n", "notes.txt")
    assert body["id"].startswith("file-") and len(body["id"]) > len("file-")
    assert body["object"] == "file"
    assert body["bytes"] == 13
    assert body["filename"] == "notes.txt"
    assert body["purpose"] == "assistants"
    assert body["status"] == "processed"
    assert started <= body["created_at"] <= int(time.time())
    # Optional fields without a value are left out, as OpenAI's schema has them (never null).
    assert "expires_at" not in body and "status_details" not in body

    assert raw(client.files.with_raw_response.retrieve(body["id"])) == body
    response = client.files.with_raw_response.content(body["id"])
    assert response.http_response.content == b"hello, files\n"
    assert response.headers["content-type"].startswith("text/plain")
    assert response.headers["content-length"] == "13"
    assert response.headers["content-disposition"].startswith("attachment;")
    assert 'filename="notes.txt"' in response.headers["content-disposition"]
    assert len(blobs(server) - before) == 1


def test_binary_file_with_every_byte_value_round_trips_exactly(client: OpenAI) -> None:
    body = upload(client, ALL_BYTES, "bytes.bin")
    assert body["bytes"] == len(ALL_BYTES)
    assert content_of(client, body["id"]) == ALL_BYTES
    with client.files.with_streaming_response.content(body["id"]) as response:
        assert response.headers["content-type"] == "application/octet-stream"
        assert b"".join(response.iter_bytes()) == ALL_BYTES


def test_multi_megabyte_file_streams_both_ways(client: OpenAI, tmp_path: Path) -> None:
    data = os.urandom(9 * 1024 * 1024 + 17)
    path = tmp_path / "big.dat"
    path.write_bytes(data)
    with path.open("rb") as handle:
        created = client.files.create(file=handle, purpose="user_data")
    assert created.filename == "big.dat" and created.bytes == len(data)
    digest = hashlib.sha256()
    with client.files.with_streaming_response.content(created.id) as response:
        assert response.headers["content-length"] == str(len(data))
        received = 0
        for chunk in response.iter_bytes():
            digest.update(chunk)
            received += len(chunk)
    assert received == len(data)
    assert digest.hexdigest() == hashlib.sha256(data).hexdigest()


def test_empty_file(client: OpenAI) -> None:
    body = upload(client, b"", "empty.txt")
    assert body["bytes"] == 0
    assert content_of(client, body["id"]) == b""


def test_unicode_filename_is_kept_and_offered_for_download(client: OpenAI) -> None:
    name = "résumé 2026 ✓.md"
    body = upload(client, b"# CV\n", name)
    assert body["filename"] == name
    disposition = client.files.with_raw_response.content(body["id"]).headers["content-disposition"]
    assert f"filename*=UTF-8''{quote(name, safe='')}" in disposition
    # The plain-ASCII fallback keeps the header valid for clients that ignore filename*.
    assert disposition.isascii()


def test_concurrent_uploads_keep_their_own_bytes(client: OpenAI) -> None:
    payloads = [os.urandom(700_000 + i) for i in range(6)]
    with ThreadPoolExecutor(max_workers=6) as pool:
        created = list(
            pool.map(lambda d: client.files.create(file=("c.bin", d), purpose="assistants"), payloads)
        )
    assert len({f.id for f in created}) == len(payloads)
    for file, data in zip(created, payloads, strict=True):
        assert file.bytes == len(data)
        assert content_of(client, file.id) == data


# Purposes and options ---------------------------------------------------------------------------


def test_every_purpose_of_the_sdk_is_accepted(client: OpenAI) -> None:
    for purpose in get_args(FilePurpose):
        body = upload(client, b"{}\n", "data.jsonl", purpose=purpose)
        assert body["purpose"] == purpose
        assert raw(client.files.with_raw_response.retrieve(body["id"]))["purpose"] == purpose
        if purpose == "batch":
            # OpenAI's default: batch input files expire after 30 days.
            assert body["expires_at"] == body["created_at"] + 30 * 24 * 3600
        else:
            assert "expires_at" not in body


def test_expires_after_sets_expires_at(client: OpenAI) -> None:
    body = upload(client, b"x", expires_after={"anchor": "created_at", "seconds": 3600})
    assert body["expires_at"] == body["created_at"] + 3600
    assert raw(client.files.with_raw_response.retrieve(body["id"]))["expires_at"] == body["expires_at"]
    for seconds in (3599, 2_592_001):
        bad_request(
            lambda s=seconds: client.files.create(
                file=("x.txt", b"x"),
                purpose="assistants",
                expires_after={"anchor": "created_at", "seconds": s},
            ),
            "expires_after.seconds",
        )
    bad_request(
        lambda: client.files.create(
            file=("x.txt", b"x"),
            purpose="assistants",
            expires_after={"anchor": "last_active_at", "seconds": 3600},  # type: ignore[typeddict-item]
        ),
        "expires_after.anchor",
    )


# Refusals ---------------------------------------------------------------------------------------


def test_bad_or_missing_purpose_is_refused_and_nothing_is_kept(
    client: OpenAI, http: httpx.Client, server: AssistdServer
) -> None:
    before, listed = blobs(server), ids(list_files(client))
    error = bad_request(lambda: client.files.create(file=("a.txt", b"abc"), purpose="homework"), "purpose")  # type: ignore[arg-type]
    assert "purpose" in error["message"]
    bad_request(lambda: client.files.create(file=("a.txt", b"abc"), purpose=""), "purpose")  # type: ignore[arg-type]
    # curl's order: the file first, the purpose after it, so the file was stored before the refusal.
    response = http.post("/files", **form(("file", "a.txt", b"abc" * 1000), ("purpose", None, b"homework")))
    assert response.status_code == 400 and response.json()["error"]["param"] == "purpose"
    response = http.post("/files", **form(("file", "a.txt", b"abc")))
    assert response.status_code == 400
    assert response.json()["error"] == {
        "message": "Missing required parameter: 'purpose'.",
        "type": "invalid_request_error",
        "param": "purpose",
        "code": None,
    }
    assert blobs(server) == before
    assert temporaries(server) == []
    assert ids(list_files(client)) == listed


def test_missing_file_is_refused_naming_file(http: httpx.Client, server: AssistdServer) -> None:
    before = blobs(server)
    cases: list[dict[str, Any]] = [
        form(("purpose", None, b"assistants")),
        form(),
        # A value named file, not a file: it has no filename.
        form(("purpose", None, b"assistants"), ("file", None, b"just text")),
        form(("purpose", None, b"assistants"), ("file", "", b"no name")),
        {"json": {"purpose": "assistants", "file": "abc"}},
        {"data": {"purpose": "assistants"}},
        {},
    ]
    for case in cases:
        response = http.post("/files", **case)
        assert response.status_code == 400, (case, response.text)
        error = response.json()["error"]
        assert error["param"] == "file", (case, error)
        assert error["type"] == "invalid_request_error"
    assert blobs(server) == before


def test_unknown_duplicate_and_odd_fields_are_refused(
    client: OpenAI, http: httpx.Client, server: AssistdServer
) -> None:
    before = blobs(server)
    error = bad_request(
        lambda: client.files.create(file=("a.txt", b"a"), purpose="assistants", extra_body={"colour": "red"}),
        "colour",
    )
    assert error["message"] == "Unrecognized request argument supplied: colour"
    cases: list[tuple[tuple[tuple[str, str | None, bytes], ...], str]] = [
        ((("purpose", None, b"assistants"), ("purpose", None, b"batch"), ("file", "a.txt", b"a")), "purpose"),
        ((("purpose", None, b"assistants"), ("file", "a.txt", b"a"), ("file", "b.txt", b"b")), "file"),
        ((("purpose", None, b"assistants"), ("file", "a\x00b.txt", b"a")), "file"),
        ((("purpose", None, b"assistants"), ("file", "n" * 513, b"a")), "file"),
        ((("purpose", None, b"assist\xffants"), ("file", "a.txt", b"a")), "purpose"),
        ((("purpose", None, b"assistants\x00"), ("file", "a.txt", b"a")), "purpose"),
        ((("purpose", None, b"a" * 70_000), ("file", "a.txt", b"a")), "purpose"),
        (
            (("purpose", None, b"assistants"), ("expires_after", None, b"3600"), ("file", "a.txt", b"a")),
            "expires_after",
        ),
        (
            (
                ("purpose", None, b"assistants"),
                ("expires_after[anchor]", None, b"created_at"),
                ("file", "a.txt", b"a"),
            ),
            "expires_after.seconds",
        ),
    ]
    for parts, param in cases:
        response = http.post("/files", **form(*parts))
        assert response.status_code == 400, (parts, response.text)
        assert response.json()["error"]["param"] == param, (parts, response.json())
    assert blobs(server) == before
    assert temporaries(server) == []


def test_malformed_bodies_get_400_never_500(http: httpx.Client, server: AssistdServer) -> None:
    multipart = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    good = form(("purpose", None, b"assistants"), ("file", "a.txt", b"abc"))["content"]
    bodies = [
        b"",
        b"garbage",
        good[: len(good) // 2],  # cut off mid-part: no closing boundary
        good.replace(b"\r\n\r\n", b"\r\n", 1),  # headers never end
        good.replace(f"--{BOUNDARY}--".encode(), b""),
        b"--" + BOUNDARY.encode() + b"\r\n" + b"X" * 100_000,
        b"\x00" * 1000,
    ]
    for body in bodies:
        response = http.post("/files", content=body, headers=multipart)
        assert response.status_code == 400, (body[:80], response.text)
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    odd_types = [
        "multipart/form-data",  # no boundary
        "multipart/mixed; boundary=x",
        "text/plain",
        "application/octet-stream",
    ]
    for content_type in odd_types:
        response = http.post("/files", content=good, headers={"Content-Type": content_type})
        assert response.status_code == 400, (content_type, response.text)
        assert response.json()["error"]["param"] == "file"
    response = http.post(
        "/files", content=good, headers={"Content-Type": f"multipart/form-data; boundary={'b' * 300}"}
    )
    assert response.status_code == 400 and "boundary" in response.json()["error"]["message"]
    assert temporaries(server) == []
    assert "Traceback" not in server.log()


def test_unknown_ids_and_odd_queries(client: OpenAI, http: httpx.Client) -> None:
    for call in (client.files.retrieve, client.files.content, client.files.delete):
        not_found(lambda c=call: c("file-doesnotexist"))
    for odd in ("%00", "..%2F..%2Fetc", "x" * 5_000, "%ff%fe", "file-" + "%F0%9F%98%80" * 10):
        for method, path in (
            ("GET", f"/files/{odd}"),
            ("GET", f"/files/{odd}/content"),
            ("DELETE", f"/files/{odd}"),
        ):
            response = http.request(method, path)
            assert response.status_code == 404, (method, path, response.text)
    for limit in (0, 10_001, -1):
        bad_request(lambda n=limit: client.files.list(limit=n), "limit")
    bad_request(lambda: client.files.list(extra_query={"limit": "lots"}), "limit")
    bad_request(lambda: client.files.list(order="sideways"), "order")  # type: ignore[arg-type]
    bad_request(lambda: client.files.list(after="file-doesnotexist"), "after")
    response = http.get("/files", params={"after": "file-\x00"})
    assert response.status_code == 400 and response.json()["error"]["param"] == "after"
    assert list_files(client, purpose="no-such-purpose")["data"] == []


# Delete -----------------------------------------------------------------------------------------


def test_delete_removes_the_row_and_the_bytes(client: OpenAI, server: AssistdServer) -> None:
    before = blobs(server)
    body = upload(client, ALL_BYTES, "gone.bin")
    assert len(blobs(server) - before) == 1
    deleted = raw(client.files.with_raw_response.delete(body["id"]))
    assert deleted == {"id": body["id"], "object": "file", "deleted": True}
    check(FileDeleted, deleted, "DeleteFileResponse")
    assert blobs(server) == before
    not_found(lambda: client.files.retrieve(body["id"]))
    not_found(lambda: client.files.content(body["id"]))
    not_found(lambda: client.files.delete(body["id"]))
    assert body["id"] not in ids(list_files(client))


# Tenancy ----------------------------------------------------------------------------------------


def test_another_tenant_cannot_see_or_touch_a_file(client: OpenAI, other_client: OpenAI) -> None:
    body = upload(client, b"alpha's secret", "secret.txt")
    not_found(lambda: other_client.files.retrieve(body["id"]))
    not_found(lambda: other_client.files.content(body["id"]))
    not_found(lambda: other_client.files.delete(body["id"]))
    assert body["id"] not in ids(list_files(other_client))
    assert body["id"] not in ids(list_files(other_client, purpose="assistants"))
    # Alpha's id is no cursor for beta either.
    bad_request(lambda: other_client.files.list(after=body["id"]), "after")
    # Beta's attempts changed nothing for alpha.
    assert content_of(client, body["id"]) == b"alpha's secret"
    assert body["id"] in ids(list_files(client))


# Lists ------------------------------------------------------------------------------------------

PURPOSES = ["assistants", "batch", "assistants", "user_data", "assistants", "fine-tune", "assistants"]


@pytest.fixture(scope="module")
def pager(
    tmp_path_factory: pytest.TempPathFactory, databases: Databases, fake: FakeUpstream
) -> Iterator[tuple[OpenAI, list[str]]]:
    """A server of its own, whose tenant holds exactly these files, oldest first."""
    server = start_server(tmp_path_factory, databases, fake)
    try:
        with make_client(server) as client:
            created = [
                upload(client, f"file {i}".encode(), f"f{i}.jsonl", purpose=p) for i, p in enumerate(PURPOSES)
            ]
            yield client, [body["id"] for body in created]
    finally:
        server.stop()


def test_list_defaults_to_everything_newest_first(pager: tuple[OpenAI, list[str]]) -> None:
    client, file_ids = pager
    everything = list_files(client)
    assert ids(everything) == file_ids[::-1]
    assert everything["has_more"] is False
    assert ids(list_files(client, limit=10_000, order="asc")) == file_ids
    assert ids(list_files(client, limit=1)) == [file_ids[-1]]


def test_list_walks_pages_in_both_orders(pager: tuple[OpenAI, list[str]]) -> None:
    client, file_ids = pager
    for order, expected in (("desc", file_ids[::-1]), ("asc", file_ids)):
        seen: list[str] = []
        more: list[bool] = []
        after: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 3, "order": order}
            if after:
                params["after"] = after
            page = list_files(client, **params)
            seen += ids(page)
            more.append(page["has_more"])
            if not page["has_more"]:
                break
            after = page["last_id"]
        assert seen == expected, order
        assert more == [True, True, False], order
    assert ids(list_files(client, after=file_ids[0])) == []
    assert ids(list_files(client, order="asc", after=file_ids[-1])) == []


def test_list_filters_by_purpose(pager: tuple[OpenAI, list[str]]) -> None:
    client, file_ids = pager
    assistants = [i for i, p in zip(file_ids, PURPOSES, strict=True) if p == "assistants"]
    assert ids(list_files(client, purpose="assistants")) == assistants[::-1]
    page = list_files(client, purpose="assistants", limit=2, order="asc")
    assert ids(page) == assistants[:2] and page["has_more"] is True
    page = list_files(client, purpose="assistants", limit=2, order="asc", after=page["last_id"])
    assert ids(page) == assistants[2:] and page["has_more"] is False
    assert ids(list_files(client, purpose="fine-tune")) == [file_ids[5]]
    assert ids(list_files(client, purpose="vision")) == []


def test_sdk_auto_pagination(pager: tuple[OpenAI, list[str]]) -> None:
    client, file_ids = pager
    assert [f.id for f in client.files.list(limit=2)] == file_ids[::-1]
    assert [f.id for f in client.files.list(limit=2, order="asc")] == file_ids
    assert [f.id for f in client.files.list(limit=2, purpose="assistants", order="asc")] == [
        i for i, p in zip(file_ids, PURPOSES, strict=True) if p == "assistants"
    ]
    assert [len(page.data) for page in client.files.list(limit=3).iter_pages()] == [3, 3, 1]


# Limits, memory, restarts: servers of their own ---------------------------------------------------


def test_size_limit_refuses_larger_uploads_and_keeps_nothing(
    tmp_path_factory: pytest.TempPathFactory, databases: Databases, fake: FakeUpstream
) -> None:
    server = start_server(tmp_path_factory, databases, fake, max_upload_bytes="1000")
    try:
        with make_client(server) as client, httpx.Client(base_url=server.base_url, headers=AUTH) as http:
            exact = upload(client, os.urandom(1000), "exact.bin")
            kept = blobs(server)
            assert len(kept) == 1
            for size in (1001, 64 * 1024, 5 * 1024 * 1024):
                error = bad_request(
                    lambda n=size: client.files.create(file=("big.bin", os.urandom(n)), purpose="assistants"),
                    "file",
                )
                assert "1000" in error["message"]
            # The limit also holds when the purpose comes after the file.
            response = http.post(
                "/files", **form(("file", "big.bin", b"x" * 2000), ("purpose", None, b"batch"))
            )
            assert response.status_code == 400 and response.json()["error"]["param"] == "file"
            assert blobs(server) == kept
            assert temporaries(server) == []
            assert ids(list_files(client)) == [exact["id"]]
        assert "Traceback" not in server.log()
    finally:
        server.stop()


def _peak_rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM line")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads peak memory from /proc")
def test_uploads_and_downloads_stream_without_holding_the_file_in_memory(
    tmp_path_factory: pytest.TempPathFactory, databases: Databases, fake: FakeUpstream, tmp_path: Path
) -> None:
    size = 96 * 1024 * 1024
    path = tmp_path / "large.bin"
    with path.open("wb") as out:
        for _ in range(size // (1024 * 1024)):
            out.write(os.urandom(1024 * 1024))
    server = start_server(tmp_path_factory, databases, fake)
    try:
        assert server.process is not None
        pid = server.process.pid
        with make_client(server) as client:
            upload(client, b"warm-up", "w.txt")  # first-request costs are not the file's
            baseline = _peak_rss_bytes(pid)
            with path.open("rb") as handle:
                created = client.files.create(file=handle, purpose="assistants")
            assert created.bytes == size
            with client.files.with_streaming_response.content(created.id) as response:
                received = sum(len(chunk) for chunk in response.iter_bytes())
            assert received == size
            growth = _peak_rss_bytes(pid) - baseline
            assert growth < 32 * 1024 * 1024, f"peak memory grew {growth / 2**20:.0f} MiB for a 96 MiB file"
    finally:
        server.stop()


@pytest.mark.slow
def test_files_survive_a_restart(
    tmp_path_factory: pytest.TempPathFactory, databases: Databases, fake: FakeUpstream
) -> None:
    first = start_server(tmp_path_factory, databases, fake)
    second: AssistdServer | None = None
    try:
        with make_client(first) as client:
            kept = upload(client, ALL_BYTES, "kept.bin", purpose="user_data")
            removed = upload(client, b"soon gone", "gone.txt")
        first.stop()
        second = AssistdServer(first.data_dir, first.database_url, first.extra_env).start()
        with make_client(second) as client:
            assert raw(client.files.with_raw_response.retrieve(kept["id"])) == kept
            assert content_of(client, kept["id"]) == ALL_BYTES
            assert ids(list_files(client)) == [removed["id"], kept["id"]]
            client.files.delete(removed["id"])
            assert ids(list_files(client)) == [kept["id"]]
            not_found(lambda: client.files.content(removed["id"]))
            with make_client(second, KEYS[1]) as other:
                not_found(lambda: other.files.retrieve(kept["id"]))
    finally:
        first.stop()
        if second is not None:
            second.stop()
