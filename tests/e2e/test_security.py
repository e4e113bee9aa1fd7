"""Security checks against the real server: no secret in its logs, CORS closed unless configured, upload
names that cannot reach the file system, decompression bombs, no fetching of image URLs (SSRF), and the
playground's security headers. Constant-time key comparison is shown in
tests/unit/test_constant_time_and_bombs.py.
"""

from __future__ import annotations

import asyncio
import base64
import http.server
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import httpx
import openai
import pytest
from openai import OpenAI

from conftest import Databases, make_client, start_server
from fake_upstream import Error, FakeUpstream, Text, ToolCalls
from samples_files import docx_bomb, lying_docx, make_pdf, pdf_bomb
from server import KEYS, AssistdServer

# Keys with characters that URL-encoding and base64 spell differently, so every form is a distinct search.
UPSTREAM_SECRET = "sk-upstream-Vq7+Rz/9=Lm3Xp2Wd8"
TENANT_KEYS = [
    "sk-tenant-one+Ab/Cd=Ef01",
    "sk-team-two_Gh45Jk67Mn89",
    "sk-team-three-Pq12Rs34Tu",
    "sk-four-Zy98",
]
KEY_ENTRIES = [TENANT_KEYS[0], f"team:{TENANT_KEYS[1]}", f"team:{TENANT_KEYS[2]}", TENANT_KEYS[3]]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


# ----------------------------------------------------------------------------------------------------
# No secret in logs
# ----------------------------------------------------------------------------------------------------


def secret_forms(secret: str) -> set[bytes]:
    """The secret as it could be written: plain, URL-encoded, JSON-escaped, and base64 at each of the three
    byte alignments it could sit at inside a longer encoded string (less the characters its neighbours
    change)."""
    raw = secret.encode()
    forms = {secret, quote(secret), quote(secret, safe=""), quote_plus(secret), json.dumps(secret)[1:-1]}
    forms.add(raw.hex())
    for shift in range(3):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            encoded = encode(b"\0" * shift + raw).decode().rstrip("=")
            forms.add(encoded[(shift * 4 + 2) // 3 + 1 : -2])
    return {form.encode() for form in forms}


def _captured(server: AssistdServer) -> dict[str, bytes]:
    """Everything the server wrote: its stdout and stderr (the log file the tests capture them to), every
    file under its data directory, and its database (SQLite's files, PostgreSQL's rows as text)."""
    captured = {
        str(path.relative_to(server.data_dir)): path.read_bytes()
        for path in sorted(server.data_dir.rglob("*"))
        if path.is_file()
    }
    if server.database_url.startswith("sqlite:///"):
        database = Path(server.database_url.removeprefix("sqlite:///"))
        for path in database.parent.glob(database.name + "*"):  # the database, its WAL and shared memory
            captured[f"database {path.name}"] = path.read_bytes()
    else:
        captured.update(asyncio.run(_database_rows(server.database_url)))
    return captured


async def _database_rows(url: str) -> dict[str, bytes]:
    import asyncpg

    connection = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        tables = await connection.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        )
        rows = {}
        for table in tables:
            name = table["table_name"]
            texts = await connection.fetch(f'SELECT t::text AS row FROM "{name}" t')
            rows[f"table {name}"] = "\n".join(r["row"] for r in texts).encode()
        return rows
    finally:
        await connection.close()


@pytest.fixture(scope="module")
def logged_server(
    tmp_path_factory: pytest.TempPathFactory, databases: Databases, fake: FakeUpstream
) -> Iterator[AssistdServer]:
    env = {
        "ASSISTD_UPSTREAM_BASE_URL": fake.base_url,
        "ASSISTD_UPSTREAM_API_KEY": UPSTREAM_SECRET,
        "ASSISTD_API_KEYS": ",".join(KEY_ENTRIES),
        "ASSISTD_RATE_LIMIT_PER_MINUTE": "120",
        "ASSISTD_UPSTREAM_MAX_RETRIES": "1",
    }
    data_dir = tmp_path_factory.mktemp("logged")
    srv = AssistdServer(data_dir, databases.new(), env, args=("--log-level", "debug", "--access-log"))
    srv.start()
    yield srv
    srv.stop()


def _wait_vector_store(client: OpenAI, vector_store_id: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while client.vector_stores.retrieve(vector_store_id).status == "in_progress":
        assert time.monotonic() < deadline, "the vector store never finished ingesting"
        time.sleep(0.2)


def test_no_secret_reaches_the_logs(logged_server: AssistdServer, fake: FakeUpstream) -> None:
    url = logged_server.base_url
    with (
        make_client(logged_server, TENANT_KEYS[0]) as one,
        make_client(logged_server, TENANT_KEYS[1]) as two,
        make_client(logged_server, TENANT_KEYS[2]) as three,
    ):
        # Files and a vector store.
        uploaded = one.files.create(
            file=("notes.txt", b"The kettle is in the blue cupboard."), purpose="assistants"
        )
        store = one.vector_stores.create(name="notes", file_ids=[uploaded.id])
        _wait_vector_store(one, store.id)
        assert one.files.content(uploaded.id).content.startswith(b"The kettle")

        # A run with a function tool, through requires_action.
        assistant = one.beta.assistants.create(
            model="fake-model",
            tools=[WEATHER, {"type": "file_search"}],
            tool_resources={"file_search": {"vector_store_ids": [store.id]}},
        )
        thread = one.beta.threads.create(messages=[{"role": "user", "content": "Weather in Oslo?"}])
        fake.push(ToolCalls([{"id": "call_sec1", "name": "get_weather", "arguments": {"city": "Oslo"}}]))
        run = one.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
        assert run.status == "requires_action"
        fake.push(Text("Cold and clear."))
        run = one.beta.threads.runs.submit_tool_outputs_and_poll(
            run_id=run.id, thread_id=thread.id, tool_outputs=[{"tool_call_id": "call_sec1", "output": "-3 C"}]
        )
        assert run.status == "completed"

        # A streamed run, by the second tenant (two keys of one named tenant share its objects).
        shared = two.beta.assistants.create(model="fake-model", name="shared")
        assert three.beta.assistants.retrieve(shared.id).name == "shared"
        fake.push(Text("A streamed answer in several words."))
        with two.beta.threads.create_and_run_stream(
            assistant_id=shared.id, thread={"messages": [{"role": "user", "content": "Stream please."}]}
        ) as stream:
            stream.until_done()
        assert stream.current_run is not None and stream.current_run.status == "completed"

        # An upstream that echoes its key in an error: the run fails, the key shows nowhere.
        echo = f"Incorrect API key provided: {UPSTREAM_SECRET}."
        fake.push(Error(401, echo))
        failed = one.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
        assert failed.status == "failed"
        assert fake.request_headers[-1]["authorization"] == f"Bearer {UPSTREAM_SECRET}"

        # 404: another tenant's object.
        with pytest.raises(openai.NotFoundError):
            two.beta.assistants.retrieve(assistant.id)

    # 401: a wrong key, one a character short of a real one, one with a character more, the upstream key.
    for wrong in ("sk-nope", TENANT_KEYS[0][:-1], TENANT_KEYS[0] + "x", UPSTREAM_SECRET):
        refused = httpx.get(f"{url}/assistants", headers={"Authorization": f"Bearer {wrong}"})
        assert refused.status_code == 401
        assert wrong not in refused.text
    assert httpx.get(f"{url}/assistants", headers={"Authorization": TENANT_KEYS[0]}).status_code == 401

    # 429: the fourth tenant runs through its 120 requests a minute.
    statuses = []
    with httpx.Client(headers={"Authorization": f"Bearer {TENANT_KEYS[3]}"}) as four:
        for _ in range(200):
            statuses.append(four.get(f"{url}/assistants").status_code)
            if statuses[-1] == 429:
                break
    assert statuses[-1] == 429 and set(statuses[:-1]) == {200}

    logged_server.stop()  # flushes whatever it buffered
    captured = _captured(logged_server)
    assert logged_server.log_path.name in captured
    log = captured[logged_server.log_path.name].decode(errors="replace")
    # The log did record at DEBUG level what happened: the upstream calls, the refusals.
    assert "DEBUG" in log and "/v1/chat/completions" in log
    assert "401 Unauthorized" in log and "429 Too Many Requests" in log
    # The database was searched too: what the scenario stored is in what was captured.
    assert any(
        b"Weather in Oslo?" in data for name, data in captured.items() if name != logged_server.log_path.name
    )
    for secret in (UPSTREAM_SECRET, *TENANT_KEYS):
        for form in secret_forms(secret):
            for name, data in captured.items():
                assert form not in data, f"{form!r} (a form of a secret) is in {name}"


def test_secret_forms_find_what_they_should() -> None:
    # The search above is only as good as its forms: each one is found where that encoding is used.
    secret = TENANT_KEYS[0]
    forms = secret_forms(secret)
    for shift in range(3):
        context = b"x" * shift + secret.encode() + b"tail"
        assert any(form in base64.b64encode(context) for form in forms)
        assert any(form in base64.urlsafe_b64encode(b"Bearer " + context) for form in forms)
    assert any(form in quote(f"key={secret}").encode() for form in forms)
    assert any(form in json.dumps({"k": secret}).encode() for form in forms)


# ----------------------------------------------------------------------------------------------------
# CORS
# ----------------------------------------------------------------------------------------------------

ORIGINS = ("https://app.example", "http://localhost:5173")
OTHER_ORIGINS = ("https://evil.example", "null", "http://127.0.0.1", "https://app.example.evil.example")


def _preflight(server: AssistdServer, origin: str) -> httpx.Response:
    return httpx.options(
        f"{server.base_url}/assistants",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )


def test_cors_is_closed_without_configured_origins(server: AssistdServer) -> None:
    for origin in (*ORIGINS, *OTHER_ORIGINS):
        preflight = _preflight(server, origin)
        assert "access-control-allow-origin" not in preflight.headers, origin
        assert "access-control-allow-credentials" not in preflight.headers
        answer = httpx.get(
            f"{server.base_url}/assistants", headers={"Origin": origin, "Authorization": f"Bearer {KEYS[0]}"}
        )
        assert answer.status_code == 200
        assert "access-control-allow-origin" not in answer.headers, origin


def test_cors_opens_only_to_the_configured_origins(
    tmp_path_factory: pytest.TempPathFactory, databases: Databases, fake: FakeUpstream
) -> None:
    server = start_server(tmp_path_factory, databases, fake, cors_origins=",".join(ORIGINS))
    try:
        for origin in ORIGINS:
            preflight = _preflight(server, origin)
            assert preflight.status_code == 200
            assert preflight.headers["access-control-allow-origin"] == origin
        for origin in OTHER_ORIGINS:
            preflight = _preflight(server, origin)
            assert "access-control-allow-origin" not in preflight.headers, origin
            answer = httpx.get(
                f"{server.base_url}/assistants",
                headers={"Origin": origin, "Authorization": f"Bearer {KEYS[0]}"},
            )
            assert "access-control-allow-origin" not in answer.headers, origin
    finally:
        server.stop()


# ----------------------------------------------------------------------------------------------------
# Upload names
# ----------------------------------------------------------------------------------------------------


def _upload_raw(server: AssistdServer, filename: bytes, data: bytes) -> httpx.Response:
    """A multipart upload written by hand, so the server sees exactly these filename bytes."""
    boundary = uuid.uuid4().hex
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nassistants\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="'
    ).encode()
    body += filename + b'"\r\nContent-Type: application/octet-stream\r\n\r\n' + data
    body += f"\r\n--{boundary}--\r\n".encode()
    return httpx.post(
        f"{server.base_url}/files",
        content=body,
        headers={
            "Authorization": f"Bearer {KEYS[0]}",
            "Content-Type": f"multipart/form-data; boundary={boundary}",
        },
    )


def _disposition_names(header: str) -> list[str]:
    names = []
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == "filename":
            names.append(value.strip('"'))
        elif key == "filename*":
            names.append(value.split("''", 1)[1])
    return names


def test_upload_names_cannot_reach_the_file_system(server: AssistdServer, tmp_path: Path) -> None:
    marker = f"assistd-traversal-{uuid.uuid4().hex[:8]}"
    outside = tmp_path / marker  # where a climbing name would land, if anything followed it
    # SQLite servers keep file bytes under data_dir/files; PostgreSQL ones in the database, with only
    # passing copies under data_dir/scratch.
    on_disk = server.database_url.startswith("sqlite")
    storage_root = server.data_dir / ("files" if on_disk else "scratch")
    names = [
        "../../etc/passwd",
        "../../../../../../etc/passwd",
        f"../../../../../../../..{outside}",
        str(outside),
        f"..\\..\\..\\{marker}",
        f"....//....//{marker}",
        "..",
        ".",
        f"/{marker}/..",
        "sub/dir/" + "n" * 480 + ".txt",
        "é" * 500 + ".md",
    ]
    before = {path for path in server.data_dir.rglob("*") if path.is_file()}
    stored: dict[str, bytes] = {}
    for number, name in enumerate(names):
        data = f"upload {number}: {name}\n".encode()
        response = _upload_raw(server, name.encode(), data)
        assert response.status_code == 200, (name, response.text)
        body = response.json()
        # The name is kept as the file's label, exactly as given: nothing on disk is named by it.
        assert body["filename"] == name
        stored[body["id"]] = data
        download = httpx.get(
            f"{server.base_url}/files/{body['id']}/content", headers={"Authorization": f"Bearer {KEYS[0]}"}
        )
        assert download.status_code == 200
        assert download.content == data  # our bytes, not /etc/passwd's
        for offered in _disposition_names(download.headers["content-disposition"]):
            # What a client saving the download is offered is a plain name, never a path.
            assert "/" not in offered and "\\" not in offered and "%2F" not in offered.upper()
            assert offered.strip(".") and "%5C" not in offered.upper()
    # Refused outright: a NUL in the name, and a name longer than the column that keeps it.
    for name in (b"evil\x00.txt", b"../\x00/etc/passwd", b"x" * 513):
        refused = _upload_raw(server, name, b"never stored")
        assert refused.status_code == 400, name
        assert refused.json()["error"]["param"] == "file"

    assert not outside.exists()
    assert not any(tmp_path.rglob(f"*{marker}*"))
    assert not any(server.data_dir.parent.rglob(f"*{marker}*"))
    new = {path for path in server.data_dir.rglob("*") if path.is_file()} - before
    # Every new file is one stored blob, under the storage root, named by a random key, holding our bytes.
    blobs = []
    for path in new:
        if path.suffix in {".log", ".db", ".db-wal", ".db-shm"}:
            continue
        assert path.resolve().is_relative_to(storage_root.resolve()), path
        assert len(path.name) == 32 and path.parent.name == path.name[:2]
        blobs.append(path.read_bytes())
    assert sorted(blobs) == (sorted(stored.values()) if on_disk else [])


# ----------------------------------------------------------------------------------------------------
# Decompression bombs
# ----------------------------------------------------------------------------------------------------


def _peak_rss(pid: int) -> int:
    """The process's peak resident memory (VmHWM) in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc status")


def test_decompression_bombs_fail_cleanly(server: AssistdServer, client: OpenAI) -> None:
    assert server.process is not None
    unpacked = 2 * 1024**3
    bombs = {
        "bomb.pdf": pdf_bomb(unpacked),
        "bomb.docx": docx_bomb(unpacked),
        # Headers that claim 4 KiB for a part that inflates to 1 GiB (unit tests: the lying DOCX).
        "lying.docx": lying_docx(1024**3),
    }
    # What each says: the first two are refused unread; the third is read to its declared 4 KiB, which
    # end mid-element.
    expected = {"bomb.pdf": "decompression bomb", "bomb.docx": "decompression bomb", "lying.docx": "damaged"}
    peak_before = _peak_rss(server.process.pid)
    ids = {
        client.files.create(file=(name, data), purpose="assistants").id: name for name, data in bombs.items()
    }
    fine = client.files.create(file=("fine.pdf", make_pdf("A harmless page.")), purpose="assistants")
    store = client.vector_stores.create(name="bombs", file_ids=[*ids, fine.id])
    _wait_vector_store(client, store.id, timeout=300)
    peak_after = _peak_rss(server.process.pid)

    files = {item.id: item for item in client.vector_stores.files.list(vector_store_id=store.id)}
    for file_id, name in ids.items():
        item = files[file_id]
        assert item.status == "failed", name
        assert item.last_error is not None and item.last_error.code == "invalid_file"
        assert expected[name] in item.last_error.message, item.last_error.message
    assert files[fine.id].status == "completed"  # the bombs cost nothing to the file beside them
    counts = client.vector_stores.retrieve(store.id).file_counts
    assert (counts.failed, counts.completed) == (3, 1)
    # Gigabytes were on offer; the server's peak memory grew by far less.
    assert peak_after - peak_before < 300 * 1024**2, (peak_before, peak_after)
    assert server.process.poll() is None


# ----------------------------------------------------------------------------------------------------
# image_url: passed to the model, never fetched by assistd
# ----------------------------------------------------------------------------------------------------


class _Recorder(http.server.BaseHTTPRequestHandler):
    hits: list[str]

    def do_GET(self) -> None:
        self.hits.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.end_headers()
        self.wfile.write(b"\x89PNG\r\n\x1a\n")

    do_HEAD = do_GET
    do_POST = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _V6Server(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6


@pytest.fixture
def recorders() -> Iterator[tuple[list[str], list[str]]]:
    """HTTP servers on 127.0.0.1 and (where the host has IPv6) ::1 that note every request; the URLs
    pointing at them, in the spellings an SSRF filter must see through."""
    hits: list[str] = []
    handler = type("Recorder", (_Recorder,), {"hits": hits})
    servers: list[http.server.ThreadingHTTPServer] = [
        http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    ]
    port = servers[0].server_address[1]
    urls = [
        f"http://127.0.0.1:{port}/cat.png",
        f"http://localhost:{port}/cat.png",
        f"http://2130706433:{port}/cat.png",  # 127.0.0.1 as one number
        f"http://127.1:{port}/cat.png",
    ]
    try:
        servers.append(_V6Server(("::1", 0), handler))
        urls.append(f"http://[::1]:{servers[-1].server_address[1]}/cat.png")
    except OSError:
        pass  # no IPv6 loopback here: the IPv4 spellings still stand
    # Addresses nothing listens on here: what reached the model is what can be checked.
    urls += [
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://10.0.0.1/internal.png",
        "http://192.168.1.1/router.png",
    ]
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers]
    for thread in threads:
        thread.start()
    yield hits, urls
    for s in servers:
        s.shutdown()
        s.server_close()


def _image_message(urls: list[str]) -> list[dict[str, Any]]:
    return [
        {"type": "text", "text": "What is in these pictures?"},
        *({"type": "image_url", "image_url": {"url": url, "detail": "low"}} for url in urls),
    ]


def _sent_image_urls(body: dict[str, Any]) -> list[str]:
    return [
        part["image_url"]["url"]
        for message in body["messages"]
        if isinstance(message.get("content"), list)
        for part in message["content"]
        if part.get("type") == "image_url"
    ]


def test_image_urls_are_passed_on_never_fetched(
    client: OpenAI, fake: FakeUpstream, recorders: tuple[list[str], list[str]]
) -> None:
    hits, urls = recorders
    # The recorder does answer: a fetch would have been seen.
    assert httpx.get(urls[0]).status_code == 200 and hits == ["/cat.png"]
    hits.clear()

    assistant = client.beta.assistants.create(model="fake-model")
    thread = client.beta.threads.create(messages=[{"role": "user", "content": _image_message(urls)}])
    fake.push(Text("A cat."))
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert run.status == "completed"
    # The same through a message added later and a streamed run.
    client.beta.threads.messages.create(thread_id=thread.id, role="user", content=_image_message(urls[::-1]))
    fake.push(Text("Still a cat."))
    with client.beta.threads.runs.stream(thread_id=thread.id, assistant_id=assistant.id) as stream:
        stream.until_done()
    assert stream.current_run is not None and stream.current_run.status == "completed"

    first, second = fake.requests[-2:]
    assert _sent_image_urls(first) == urls  # the model gets the URLs as they were given...
    assert _sent_image_urls(second) == urls + urls[::-1]
    time.sleep(0.5)
    assert hits == []  # ...and assistd itself fetched none of them


def test_the_local_model_fetches_no_image_url(client: OpenAI, recorders: tuple[list[str], list[str]]) -> None:
    # The bundled model runs inside the server (llama.cpp): a run given image URLs must reach none of them.
    hits, urls = recorders
    local = "smollm2-135m-instruct"  # the bundled model, which every test server also serves
    assert local in {model.id for model in client.models.list()}
    assistant = client.beta.assistants.create(model=local)
    thread = client.beta.threads.create(messages=[{"role": "user", "content": _image_message(urls)}])
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, timeout=300
    )
    # The bundled build reads no images (no multimodal projector is loaded), so the run fails saying so.
    # Should a future one read them, this fails first: llama.cpp would then download http(s) image URLs
    # itself, and assistd must filter them before they reach it.
    assert run.status == "failed"
    assert run.last_error is not None and "image input is not supported" in run.last_error.message
    time.sleep(0.5)
    assert hits == []


# ----------------------------------------------------------------------------------------------------
# The playground's security headers
# ----------------------------------------------------------------------------------------------------


def test_playground_security_headers(server: AssistdServer) -> None:
    page = httpx.get(f"{server.url}/ui/")
    assert page.status_code == 200
    csp = {
        directive.split()[0]: directive.split()[1:]
        for directive in page.headers["content-security-policy"].split(";")
        if directive.strip()
    }
    assert csp["default-src"] == ["'self'"]
    assert csp["script-src"] == ["'self'"]  # no inline script, no eval
    assert csp["object-src"] == ["'none'"]
    assert csp["frame-ancestors"] == ["'none'"]
    assert csp["connect-src"] == ["'self'"]  # the page talks to this server only
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["x-content-type-options"] == "nosniff"
    # The scripts and styles it loads come with the same protections.
    for asset in ("app.js", "style.css"):
        response = httpx.get(f"{server.url}/ui/{asset}")
        assert response.status_code == 200
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
    # The page holds nothing the policy would block: no inline script or style, no handler attribute.
    html = page.text.lower()
    for inline in ("<script>", "<style", " onclick=", " onload=", " style="):
        assert inline not in html
