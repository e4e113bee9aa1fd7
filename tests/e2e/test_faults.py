"""Injected faults: the upstream breaking mid-stream, the database going away for seconds, the disk filling
during an upload. For each: runs end ``completed`` or ``failed`` with a clear ``last_error``; no client
sees a 5xx other than a deliberate one (a 503 with OpenAI's error body and ``retry-after`` during a
database outage, a 507 naming a full disk); what was acknowledged with a 2xx is there afterwards; and the
same server process is healthy afterwards and completes a fresh run.

Every HTTP answer a test's clients get goes through a ``Ledger`` that counts them by status.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import subprocess
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import openai
import pytest
from openai import OpenAI
from openai.types.beta.threads import Run
from sqlalchemy.engine import make_url

from conftest import PG_ENV, Databases, server_behind_proxy, start_server
from db_proxy import TcpProxy
from fake_upstream import Drop, Dynamic, Error, FakeUpstream, Raw, Reply, Stall, Text, last_user_text
from server import KEYS, AssistdServer
from sse import stream_events

POLL_SECONDS = 60.0
UPSTREAM_TIMEOUT = 1.0  # seconds without a byte from the upstream before an attempt gives up


# --------------------------------------------------------------------------------------------------
# Counting what clients see
# --------------------------------------------------------------------------------------------------


@dataclass
class Seen:
    status: int
    method: str
    path: str
    retry_after: str | None
    error: dict[str, Any] | None


@dataclass
class Ledger:
    """Every answer the test's clients got. A 5xx is allowed only as ``allowed`` says, and only with
    OpenAI's error body naming its cause (and, for a 503, a ``retry-after``)."""

    seen: list[Seen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def hook(self, response: httpx.Response) -> None:
        error = None
        if response.status_code >= 500:
            response.read()
            try:
                body = response.json()
            except ValueError:
                body = None
            error = body.get("error") if isinstance(body, dict) else None
        seen = Seen(
            response.status_code,
            response.request.method,
            response.request.url.path,
            response.headers.get("retry-after"),
            error if isinstance(error, dict) else None,
        )
        with self.lock:
            self.seen.append(seen)

    def by_status(self) -> Counter[int]:
        with self.lock:
            return Counter(s.status for s in self.seen)

    def check(self, *, allowed: frozenset[int] = frozenset()) -> Counter[int]:
        """Assert no 5xx but deliberate ones of ``allowed`` statuses, each with a full error body."""
        with self.lock:
            seen = list(self.seen)
        assert seen, "the ledger saw no answer at all"
        for s in (s for s in seen if s.status >= 500):
            assert s.status in allowed, f"unexpected {s.status} on {s.method} {s.path}: {s.error}"
            assert s.error is not None and set(s.error) == {"message", "type", "param", "code"}, s
            assert s.error["message"] and s.error["code"], s
            if s.status == 503:
                assert s.retry_after is not None and int(s.retry_after) > 0, s
        return self.by_status()


def client_of(server: AssistdServer, ledger: Ledger, *, retries: int = 0) -> OpenAI:
    """The official SDK through the ledger. With ``retries`` it retries 5xx as it does by default,
    honouring ``retry-after``: what a client does through a database outage."""
    http = httpx.Client(timeout=60, event_hooks={"response": [ledger.hook]})
    return OpenAI(
        base_url=server.base_url, api_key=KEYS[0], max_retries=retries, timeout=60, http_client=http
    )


# --------------------------------------------------------------------------------------------------
# Runs
# --------------------------------------------------------------------------------------------------


def start_run(client: OpenAI, text: str) -> Run:
    assistant = client.beta.assistants.create(model="fake-model")
    thread = client.beta.threads.create(messages=[{"role": "user", "content": text}])
    return client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)


def settle(client: OpenAI, run: Run) -> Run:
    """Poll until the run ends; it must end ``completed``, or ``failed`` with a code and a message."""
    deadline = time.monotonic() + POLL_SECONDS
    while run.status in ("queued", "in_progress", "cancelling"):
        assert time.monotonic() < deadline, f"run {run.id} still {run.status}"
        time.sleep(0.1)
        run = client.beta.threads.runs.retrieve(run_id=run.id, thread_id=run.thread_id)
    assert run.status in ("completed", "failed"), run
    if run.status == "failed":
        assert run.last_error is not None and run.last_error.code and run.last_error.message, run
    return run


def run_to_end(client: OpenAI, text: str) -> Run:
    return settle(client, start_run(client, text))


def reply_text(client: OpenAI, run: Run) -> tuple[str, str]:
    """The run's message: its status and text."""
    message = client.beta.threads.messages.list(thread_id=run.thread_id).data[0]
    assert message.role == "assistant" and message.run_id == run.id
    block = message.content[0]
    assert block.type == "text"
    return message.status, block.text.value


def healthy(server: AssistdServer, client: OpenAI, upstream: FakeUpstream) -> None:
    """The same process, not restarted: alive, ready, and a fresh run completes."""
    assert server.process is not None and server.process.poll() is None
    assert httpx.get(f"{server.url}/healthz", timeout=10).status_code == 200
    deadline = time.monotonic() + 30
    while httpx.get(f"{server.url}/readyz", timeout=10).status_code != 200:
        assert time.monotonic() < deadline, "/readyz did not come back"
        time.sleep(0.2)
    upstream.push(Text("Healthy again."))
    run = run_to_end(client, "are you well?")
    assert run.status == "completed", run.last_error
    assert reply_text(client, run) == ("completed", "Healthy again.")


# --------------------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    """A private upstream: no run of another module takes the replies scripted here."""
    with FakeUpstream(models=["fake-model"]) as fake:
        yield fake


@pytest.fixture(autouse=True)
def _fresh_upstream(upstream: FakeUpstream) -> None:
    upstream.reset()


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, databases: Databases, upstream: FakeUpstream
) -> Iterator[AssistdServer]:
    srv = start_server(
        tmp_path_factory,
        databases,
        upstream,
        upstream_timeout_seconds=str(UPSTREAM_TIMEOUT),
        upstream_max_retries="3",
        upstream_retry_budget_seconds="30",
    )
    yield srv
    srv.stop()


@pytest.fixture
def ledger() -> Ledger:
    return Ledger()


@pytest.fixture
def client(server: AssistdServer, ledger: Ledger) -> Iterator[OpenAI]:
    with client_of(server, ledger) as c:
        yield c


# --------------------------------------------------------------------------------------------------
# The upstream breaks
# --------------------------------------------------------------------------------------------------


def test_connection_dropped_mid_stream_ends_the_streamed_run_failed(
    server: AssistdServer, client: OpenAI, ledger: Ledger, upstream: FakeUpstream
) -> None:
    upstream.push(Drop(text="Half an ans"))
    assistant = client.beta.assistants.create(model="fake-model")
    body = {
        "assistant_id": assistant.id,
        "thread": {"messages": [{"role": "user", "content": "tell me"}]},
        "stream": True,
    }
    events = list(stream_events(server.base_url, "/threads/runs", body))
    names = [name for name, _ in events]
    assert names[-2:] == ["thread.run.failed", "done"], names
    assert "thread.message.incomplete" in names
    failed = Run.model_validate(events[-2][1])
    assert failed.last_error is not None and failed.last_error.code == "server_error"
    assert "connection" in failed.last_error.message.lower() or "peer" in failed.last_error.message.lower()
    # What clients were shown stays, marked incomplete; the run is final and says so on a retrieve too.
    assert reply_text(client, failed) == ("incomplete", "Half an ans")
    assert settle(client, failed).status == "failed"
    assert len(upstream.requests) == 1  # text was shown: a retry would repeat it
    ledger.check()
    healthy(server, client, upstream)


# Malformed chunks as broken upstreams send them: not JSON, or JSON of the wrong shape.
MALFORMED = {
    "not-json": b"data: {this is not json\n\n",
    "truncated-json": b'data: {"id": "x", "choices": [{"delta": {"content": "a\n\n',
    "a-list": b"data: [1, 2, 3]\n\n",
    "choices-a-string": b'data: {"id": "x", "object": "chat.completion.chunk", "choices": "oops"}\n\n',
    "delta-a-list": b'data: {"id": "x", "choices": [{"index": 0, "delta": ["content"]}]}\n\n',
    "content-a-number": b'data: {"id": "x", "choices": [{"index": 0, "delta": {"content": 42}}]}\n\n',
    "tool-calls-a-dict": b'data: {"choices": [{"index": 0, "delta": {"tool_calls": {"index": 0}}}]}\n\n',
}


@pytest.mark.parametrize("chunk", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_chunk_before_any_text_is_retried(
    server: AssistdServer, client: OpenAI, ledger: Ledger, upstream: FakeUpstream, chunk: bytes
) -> None:
    upstream.push(Raw([chunk]), Text("A clean answer."))
    run = run_to_end(client, "hello")
    assert run.status == "completed", run.last_error
    assert reply_text(client, run) == ("completed", "A clean answer.")
    assert len(upstream.requests) == 2
    ledger.check()


@pytest.mark.parametrize("chunk", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_chunk_after_text_fails_the_run_clearly(
    server: AssistdServer, client: OpenAI, ledger: Ledger, upstream: FakeUpstream, chunk: bytes
) -> None:
    upstream.push(Raw([chunk], text="Half"), Text("never used"))
    run = run_to_end(client, "hello")
    assert run.status == "failed"
    assert run.last_error is not None and run.last_error.code == "server_error"
    assert "malformed" in run.last_error.message, run.last_error.message
    assert reply_text(client, run) == ("incomplete", "Half")
    assert len(upstream.requests) == 1
    ledger.check()


def test_malformed_chunks_every_time_exhaust_the_retries(
    server: AssistdServer, client: OpenAI, ledger: Ledger, upstream: FakeUpstream
) -> None:
    upstream.push(*[Raw([MALFORMED["not-json"]]) for _ in range(4)])
    run = run_to_end(client, "hello")
    assert run.status == "failed"
    assert run.last_error is not None and run.last_error.code == "server_error"
    assert "retries" in run.last_error.message and "malformed" in run.last_error.message
    assert len(upstream.requests) == 4  # the first attempt and the 3 retries allowed
    ledger.check()
    healthy(server, client, upstream)


def test_stall_mid_stream_before_any_text_is_retried(
    server: AssistdServer, client: OpenAI, ledger: Ledger, upstream: FakeUpstream
) -> None:
    upstream.push(Stall(UPSTREAM_TIMEOUT * 5, rest="too late"), Text("After the stall."))
    run = run_to_end(client, "hello")
    assert run.status == "completed", run.last_error
    assert reply_text(client, run) == ("completed", "After the stall.")
    assert len(upstream.requests) == 2
    ledger.check()


def test_stall_mid_stream_after_text_fails_the_run_with_a_timeout(
    server: AssistdServer, client: OpenAI, ledger: Ledger, upstream: FakeUpstream
) -> None:
    upstream.push(Stall(UPSTREAM_TIMEOUT * 5, text="Half", rest="too late"))
    run = run_to_end(client, "hello")
    assert run.status == "failed"
    assert run.last_error is not None and run.last_error.code == "server_error"
    assert "timed out" in run.last_error.message, run.last_error.message
    assert reply_text(client, run) == ("incomplete", "Half")
    assert len(upstream.requests) == 1
    ledger.check()
    healthy(server, client, upstream)


def test_bursts_of_429_500_503_are_retried_after_the_waits_asked_for(
    server: AssistdServer, client: OpenAI, ledger: Ledger, upstream: FakeUpstream
) -> None:
    # Three runs at once, each with its own burst; the upstream answers by the run's user message.
    scripts: dict[str, deque[Reply]] = {
        "run a": deque([Error(429, retry_after=1), Error(503, retry_after=1), Text("a done")]),
        "run b": deque([Error(503, retry_after=1.5), Error(500), Text("b done")]),
        "run c": deque([Error(500), Error(429, retry_after=1), Error(502), Text("c done")]),
    }
    lock = threading.Lock()

    def pick(body: dict[str, Any]) -> Reply:
        with lock:
            return scripts[last_user_text(body)].popleft()

    total = sum(len(s) for s in scripts.values())
    upstream.push(*[Dynamic(pick) for _ in range(total)])
    asked = {name: [getattr(r, "retry_after", None) for r in s] for name, s in scripts.items()}
    runs = {name: start_run(client, name) for name in scripts}
    for name, run in runs.items():
        run = settle(client, run)
        assert run.status == "completed", run.last_error
        assert reply_text(client, run) == ("completed", name.replace("run ", "") + " done")
    assert all(not s for s in scripts.values())
    times: dict[str, list[float]] = {}
    for body, at in zip(upstream.requests, upstream.request_times, strict=True):
        times.setdefault(last_user_text(body), []).append(at)
    for name, waits in asked.items():
        arrivals = times[name]
        assert len(arrivals) == len(waits)
        for wait, before, after in zip(waits, arrivals, arrivals[1:], strict=False):
            if wait is not None:
                # Not sooner than the upstream asked (a little slack for the two clocks' reading).
                assert after - before >= wait - 0.05, (name, wait, after - before)
    ledger.check()


def test_a_retry_after_beyond_the_retry_budget_fails_at_once(
    server: AssistdServer, client: OpenAI, ledger: Ledger, upstream: FakeUpstream
) -> None:
    # An hour's wait would hold the run past any client's patience: the wait is bounded by the budget.
    upstream.push(Error(429, retry_after=3600))
    run = run_to_end(client, "hello")
    assert run.status == "failed"
    assert run.last_error is not None and run.last_error.code == "rate_limit_exceeded"
    assert "asked to wait 3600s" in run.last_error.message and "429" in run.last_error.message
    assert len(upstream.requests) == 1
    ledger.check()
    healthy(server, client, upstream)


# --------------------------------------------------------------------------------------------------
# The database is unavailable for a few seconds
# --------------------------------------------------------------------------------------------------


class Traffic:
    """Requests going on from a thread while a fault lasts: creates (remembered when acknowledged) and
    reads, through a client that retries as the SDK does by default."""

    def __init__(self, client: OpenAI) -> None:
        self.client = client
        self.created: list[tuple[str, str]] = []  # (kind, id) acknowledged with a 2xx
        self.failures: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(120)

    def _loop(self) -> None:
        client = self.client
        thread = client.beta.threads.create()
        self.created.append(("thread", thread.id))
        while not self._stop.is_set():
            try:
                assistant = client.beta.assistants.create(model="fake-model", name="during the fault")
                self.created.append(("assistant", assistant.id))
                message = client.beta.threads.messages.create(thread_id=thread.id, role="user", content="hi")
                self.created.append((f"message:{thread.id}", message.id))
                client.beta.assistants.list(limit=5)
                client.beta.threads.retrieve(thread.id)
            except openai.APIStatusError as exc:
                # Allowed only as a deliberate 503 that outlasted the SDK's retries (the ledger checks it).
                if exc.status_code != 503:
                    self.failures.append(exc)
            except openai.APIConnectionError as exc:
                self.failures.append(exc)
            time.sleep(0.05)

    def all_there(self, client: OpenAI) -> None:
        assert not self.failures, self.failures
        assert len([kind for kind, _ in self.created if kind == "assistant"]) >= 2
        for kind, object_id in self.created:
            if kind == "assistant":
                assert client.beta.assistants.retrieve(object_id).id == object_id
            elif kind == "thread":
                assert client.beta.threads.retrieve(object_id).id == object_id
            else:
                thread_id = kind.split(":", 1)[1]
                assert client.beta.threads.messages.retrieve(object_id, thread_id=thread_id).id == object_id


def slow_runs(client: OpenAI, upstream: FakeUpstream, count: int) -> list[Run]:
    """``count`` runs whose answers stream over about two seconds, so that a fault lands mid-run."""
    words = " ".join(f"w{i}" for i in range(20))
    upstream.push(*[Text(words, chunk_delay_s=0.1) for _ in range(count)])
    return [start_run(client, f"slow {i}") for i in range(count)]


def outcomes_of(client: OpenAI, runs: list[Run]) -> Counter[str]:
    """Each run ends completed, or failed saying that the database went away (not a generic error)."""
    outcomes: Counter[str] = Counter()
    for run in runs:
        run = settle(client, run)
        if run.status == "failed":
            assert run.last_error is not None and run.last_error.code == "server_error"
            assert "database became unavailable" in run.last_error.message, run.last_error
        outcomes[run.status] += 1
    return outcomes


@pytest.fixture
def patient(server: AssistdServer, ledger: Ledger) -> Iterator[OpenAI]:
    with client_of(server, ledger, retries=8) as c:
        yield c


@pytest.mark.sqlite_only
def test_sqlite_write_lock_held_by_another_process_while_runs_and_requests_go_on(
    server: AssistdServer, patient: OpenAI, ledger: Ledger, upstream: FakeUpstream
) -> None:
    runs = slow_runs(patient, upstream, 3)
    path = make_url(server.database_url).database
    assert path is not None
    with Traffic(patient) as traffic:
        time.sleep(0.5)
        other = sqlite3.connect(path, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")  # another process's writer holds SQLite's write lock
            time.sleep(3)
        finally:
            other.execute("COMMIT")
            other.close()
        time.sleep(0.5)
    for run in runs:
        assert settle(patient, run).status == "completed"
    traffic.all_there(patient)
    # A held lock is waited out: not even a 503.
    ledger.check()
    healthy(server, patient, upstream)


def _terminate_backends(database: str) -> int:
    """Kill every connection to ``database`` (only that one: the server is shared with other work)."""

    async def kill() -> int:
        admin = os.environ[PG_ENV]
        connection = await asyncpg.connect(admin)
        try:
            rows = await connection.fetch(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = $1 AND pid <> pg_backend_pid()",
                database,
            )
            return len(rows)
        finally:
            await connection.close()

    return asyncio.run(kill())


@pytest.mark.postgres_only
def test_postgres_connections_killed_in_the_middle_of_runs_and_requests(
    server: AssistdServer, patient: OpenAI, ledger: Ledger, upstream: FakeUpstream
) -> None:
    database = make_url(server.database_url).database
    assert database is not None and database.startswith("assistd_test_")
    runs = slow_runs(patient, upstream, 3)
    killed = 0
    with Traffic(patient) as traffic:
        for _ in range(3):
            time.sleep(0.6)
            killed += _terminate_backends(database)
        time.sleep(0.5)
    assert killed > 0
    outcomes_of(patient, runs)
    traffic.all_there(patient)
    ledger.check(allowed=frozenset({503}))
    healthy(server, patient, upstream)


@pytest.fixture
def proxied(
    tmp_path_factory: pytest.TempPathFactory, databases: Databases, upstream: FakeUpstream
) -> Iterator[tuple[AssistdServer, TcpProxy]]:
    """A server whose database connections go through a proxy the test cuts (as test_database_outage)."""
    with server_behind_proxy(tmp_path_factory, databases, upstream, "faults-proxied") as pair:
        yield pair


@pytest.mark.postgres_only
def test_postgres_unreachable_for_seconds_while_runs_and_requests_go_on(
    proxied: tuple[AssistdServer, TcpProxy], ledger: Ledger, upstream: FakeUpstream
) -> None:
    srv, proxy = proxied
    with client_of(srv, ledger, retries=8) as client:
        runs = slow_runs(client, upstream, 3)
        with Traffic(client) as traffic:
            time.sleep(0.5)
            proxy.cut()
            time.sleep(3)
            proxy.restore()
            time.sleep(0.5)
        outcomes_of(client, runs)
        traffic.all_there(client)
        counts = ledger.check(allowed=frozenset({503}))
        assert counts[503] > 0, "the outage was not seen at all"
        healthy(srv, client, upstream)
    assert "unhandled error" not in srv.log()


# --------------------------------------------------------------------------------------------------
# The disk fills during an upload
# --------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def small_filesystem(directory: Path, size: str) -> Iterator[Path]:
    """``directory`` on a tmpfs of ``size``: a disk that fills. Mounting needs root (CI runs as root)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)], check=True)
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=False)


@pytest.fixture
def small_disk(
    tmp_path_factory: pytest.TempPathFactory, databases: Databases, upstream: FakeUpstream
) -> Iterator[tuple[AssistdServer, Path]]:
    """A server whose file bytes (SQLite) or scratch copies (PostgreSQL) go to a 2 MiB filesystem."""
    data_dir = tmp_path_factory.mktemp("faults-disk")
    url = databases.new()
    where = data_dir / ("files" if url.startswith("sqlite") else "scratch")
    with small_filesystem(where, "2m"):
        settings = {
            "ASSISTD_UPSTREAM_BASE_URL": upstream.base_url,
            "ASSISTD_UPSTREAM_API_KEY": "sk-upstream",
            # An interrupted ingestion is tried again once its lease lapses: soon, here.
            "ASSISTD_RUN_LEASE_SECONDS": "1",
        }
        srv = AssistdServer(data_dir, url, settings).start()
        try:
            yield srv, where
        finally:
            srv.stop()


def _upload(client: OpenAI, name: str, data: bytes) -> str:
    return client.files.create(file=(name, data), purpose="assistants").id


def _files_left(directory: Path) -> list[Path]:
    return [p for p in directory.rglob("*") if p.is_file()]


def _expect_disk_full(call: Callable[[], object]) -> None:
    with pytest.raises(openai.APIStatusError) as info:
        call()
    assert info.value.status_code == 507
    error = info.value.response.json()["error"]
    assert error["type"] == "server_error" and error["code"] == "insufficient_storage"
    assert "space" in error["message"]
    assert info.value.response.headers.get("retry-after") is None  # not worth retrying soon


@pytest.mark.sqlite_only
def test_disk_full_during_an_upload(
    small_disk: tuple[AssistdServer, Path], ledger: Ledger, upstream: FakeUpstream
) -> None:
    srv, files_dir = small_disk
    kept_bytes = os.urandom(200_000)
    with client_of(srv, ledger) as client:
        kept = _upload(client, "kept.bin", kept_bytes)
        on_disk = set(_files_left(files_dir))

        # Larger than the whole filesystem: the write fails part-way.
        _expect_disk_full(lambda: _upload(client, "huge.bin", os.urandom(3_000_000)))
        assert [f.id for f in client.files.list()] == [kept]
        assert set(_files_left(files_dir)) == on_disk  # no half file left behind

        # Nearly full: a small upload fails too, until space is freed.
        filler = _fill(files_dir)
        _expect_disk_full(lambda: _upload(client, "small.bin", os.urandom(300_000)))
        assert [f.id for f in client.files.list()] == [kept]
        filler.unlink()
        again_bytes = os.urandom(300_000)
        again = _upload(client, "again.bin", again_bytes)

        assert client.files.content(kept).content == kept_bytes
        assert client.files.content(again).content == again_bytes
        assert {f.id for f in client.files.list()} == {kept, again}
        counts = ledger.check(allowed=frozenset({507}))
        assert counts[507] == 2
        healthy(srv, client, upstream)


def _fill(directory: Path) -> Path:
    """Write zeros into ``directory`` until its filesystem is full; returns the file to delete."""
    filler = directory / "filler"
    with contextlib.suppress(OSError), filler.open("wb") as handle:
        while True:
            handle.write(b"\0" * 65536)
            handle.flush()
    return filler


def _ingested(client: OpenAI, store_id: str, file_id: str) -> Any:
    deadline = time.monotonic() + POLL_SECONDS
    while True:
        member = client.vector_stores.files.retrieve(file_id, vector_store_id=store_id)
        if member.status != "in_progress":
            return member
        assert time.monotonic() < deadline, "ingestion did not end"
        time.sleep(0.2)


@pytest.mark.postgres_only
def test_disk_full_on_a_postgres_host(
    small_disk: tuple[AssistdServer, Path], ledger: Ledger, upstream: FakeUpstream
) -> None:
    # File bytes live in PostgreSQL (the shared server's disk is not ours to fill): an upload larger than
    # this host's whole disk succeeds. What a host's disk does hold is the scratch copy a file is parsed
    # from: filled, ingestion fails with the cause named, and succeeds again once space is freed.
    srv, scratch = small_disk
    big = os.urandom(3_000_000)
    text = ("The lighthouse keeper counts the ships at dawn. " * 4000).encode()
    with client_of(srv, ledger) as client:
        big_id = _upload(client, "big.bin", big)
        assert client.files.content(big_id).content == big
        doc = client.files.create(file=("notes.txt", text), purpose="assistants").id

        filler = _fill(scratch)
        store = client.vector_stores.create(name="full disk", file_ids=[doc])
        member = _ingested(client, store.id, doc)
        assert member.status == "failed"
        assert member.last_error is not None and member.last_error.code == "server_error"
        assert "No space left" in member.last_error.message, member.last_error

        filler.unlink()
        assert _files_left(scratch) == []  # no half copy left behind
        again = client.vector_stores.create(name="space again", file_ids=[doc])
        assert _ingested(client, again.id, doc).status == "completed"
        assert _files_left(scratch) == []
        assert {f.id for f in client.files.list()} == {big_id, doc}
        ledger.check()
        healthy(srv, client, upstream)


@pytest.mark.sqlite_only
def test_sqlite_database_disk_full(
    tmp_path_factory: pytest.TempPathFactory, ledger: Ledger, upstream: FakeUpstream
) -> None:
    # SQLite only: PostgreSQL's disk is the shared server's, not this test's to fill.
    data_dir = tmp_path_factory.mktemp("faults-dbdisk")
    with small_filesystem(data_dir / "db", "4m") as db_dir:
        settings = {"ASSISTD_UPSTREAM_BASE_URL": upstream.base_url, "ASSISTD_UPSTREAM_API_KEY": "sk-upstream"}
        srv = AssistdServer(data_dir, f"sqlite:///{db_dir / 'assistd.db'}", settings).start()
        try:
            with client_of(srv, ledger) as client:
                kept = client.beta.assistants.create(model="fake-model", name="before the disk filled")
                thread = client.beta.threads.create(messages=[{"role": "user", "content": "kept"}])
                filler = _fill(db_dir)
                for write in (
                    lambda: client.beta.assistants.create(model="fake-model", instructions="x" * 5000),
                    lambda: client.beta.threads.messages.create(thread.id, role="user", content="y" * 5000),
                ):
                    with pytest.raises(openai.APIStatusError) as info:
                        write()
                    assert info.value.status_code == 507
                    error = info.value.response.json()["error"]
                    assert (error["type"], error["code"]) == ("server_error", "insufficient_storage")
                    assert "no space left" in error["message"]
                # Reads go on meanwhile.
                assert client.beta.assistants.retrieve(kept.id).name == "before the disk filled"
                assert len(client.beta.threads.messages.list(thread.id).data) == 1
                filler.unlink()
                assert client.beta.assistants.create(model="fake-model").id
                assert len(client.beta.threads.messages.list(thread.id).data) == 1  # nothing half-written
                counts = ledger.check(allowed=frozenset({507}))
                assert counts[507] == 2
                healthy(srv, client, upstream)
        finally:
            srv.stop()
