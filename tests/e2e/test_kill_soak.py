"""The kill -9 soak: under a steady load of runs (``create_and_poll`` and streams, through the official
SDK), message creations and file uploads, the server is killed with SIGKILL at random moments and started
again, ``ASSISTD_SOAK_KILLS`` times (10 by default; ``make soak`` runs 200). On PostgreSQL the deployment
is an API-only ``assistd serve --workers 0`` beside an ``assistd worker``, and either may be the one killed.

Afterwards: every run is final; every acknowledged message (a create that answered 200) and every
acknowledged file is there exactly once, files with their bytes; every stream ended within a bound (its
run's end, or a broken connection when its server died); and the database passes its own check (SQLite's
``PRAGMA integrity_check``; on PostgreSQL ``amcheck``'s heap and B-tree checks over every table and index).

The default lease is kept: a killed process's runs are taken back by its replacement at its start
(engine/process_lock.py). The figures are printed (``-s`` shows them; docs/reliability.md quotes them).
"""

from __future__ import annotations

import collections
import os
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import openai
import pytest
from openai import OpenAI

from conftest import PG_ENV, Databases, make_client
from fake_upstream import FakeUpstream, Text
from restarts import TERMINAL, query, respawn
from server import AssistdServer

pytestmark = pytest.mark.slow

KILLS = int(os.environ.get("ASSISTD_SOAK_KILLS", "10"))
# Up between kills for this long, at random: kills land anywhere in a run, an upload or a write.
UP_SECONDS = (0.2, 1.5)
# A stream that lasts longer than this, beyond the slowest restart, hung: a run here takes about a second,
# and a stream on PostgreSQL's API replica may wait for its killed worker's replacement to start.
STREAM_BOUND_SECONDS = 60.0
# After the last kill, every run must be final within this long.
SETTLE_SECONDS = 120.0
# What the fake upstream answers every run: a short reply streamed over about a second.
REPLY = Text("steady " * 25, chunk_delay_s=0.04)
# Between two calls of one load thread.
PACE_SECONDS = 0.02
FINAL_EVENTS = {f"thread.run.{status}" for status in TERMINAL}


@dataclass
class Tally:
    """What the load saw: the writes acknowledged, the streams' ends, the errors while the server was down."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    run_threads: list[str] = field(default_factory=list)
    messages: dict[str, list[str]] = field(default_factory=dict)  # thread id: contents acknowledged
    files: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # file id: name, bytes
    streams: collections.Counter[str] = field(default_factory=collections.Counter)
    stream_seconds: list[float] = field(default_factory=list)
    failed_calls: int = 0
    crashes: list[str] = field(default_factory=list)  # a load thread's own bug, not a server's downtime

    def failed(self) -> None:
        with self.lock:
            self.failed_calls += 1


class Deployment:
    """The server(s) under the soak: SQLite, one ``serve``; PostgreSQL, ``serve --workers 0`` and one
    ``assistd worker``. The API keeps its port across restarts, so the load's clients keep their URL."""

    def __init__(
        self, tmp_path_factory: pytest.TempPathFactory, databases: Databases, fake: FakeUpstream
    ) -> None:
        url = databases.new()
        env = {
            "ASSISTD_UPSTREAM_BASE_URL": fake.base_url,
            "ASSISTD_UPSTREAM_API_KEY": "sk-upstream",
            # The static embedder: a restart must not spend its time loading a transformer.
            "ASSISTD_LOCAL_EMBEDDINGS": "static",
        }
        self.split = bool(os.environ.get(PG_ENV))
        args = ("--workers", "0") if self.split else ()
        self.api = AssistdServer(tmp_path_factory.mktemp("soak-api"), url, env, args=args).start(90)
        self.worker: AssistdServer | None = None
        if self.split:
            self.worker = AssistdServer(tmp_path_factory.mktemp("soak-worker"), url, env, worker=True)
            self.worker.start(90)
        self.kills: collections.Counter[str] = collections.Counter()
        self.restart_seconds: list[float] = []

    @property
    def database_url(self) -> str:
        return self.api.database_url

    def kill_one(self, rng: random.Random) -> None:
        """SIGKILL the API server or the worker, at random, and start it again."""
        started = time.monotonic()
        if self.worker is not None and rng.random() < 0.5:
            self.worker.kill()
            self.kills["worker"] += 1
            self.worker = respawn(self.worker, timeout=90)
        else:
            self.api.kill()
            self.kills["api"] += 1
            self.api = respawn(self.api, same_port=True, timeout=90)
        self.restart_seconds.append(time.monotonic() - started)

    def stop(self) -> None:
        for server in (self.api, self.worker):
            if server is not None:
                server.stop()

    def logs(self) -> str:
        return "\n".join(s.log()[-20_000:] for s in (self.api, self.worker) if s is not None)


@pytest.fixture
def fake() -> Iterator[FakeUpstream]:
    with FakeUpstream(models=["fake-model"], default=REPLY) as upstream:
        yield upstream


def _client(deployment: Deployment) -> OpenAI:
    # Generous: a request caught by a kill breaks at once; one that waits is what the bounds look for.
    client = make_client(deployment.api)
    return client.with_options(timeout=STREAM_BOUND_SECONDS * 3)


def _loop(stop: threading.Event, tally: Tally, name: str, step: Callable[[int], None]) -> None:
    """Repeat ``step`` until ``stop``. A call the server's death broke, or that found it down, is counted
    and the loop goes on; anything else (a 4xx, a request that timed out, a bug here) ends the loop and
    fails the test."""
    n = 0
    while not stop.is_set():
        n += 1
        try:
            step(n)
            # Steady, not flat out: the server restarting after a kill shares the machine's cores.
            time.sleep(PACE_SECONDS)
        except openai.APITimeoutError as exc:
            with tally.lock:
                tally.crashes.append(f"{name}: a request hung: {exc!r}")
            return
        except (openai.APIConnectionError, openai.InternalServerError):
            tally.failed()
            time.sleep(0.2)
        except Exception as exc:
            with tally.lock:
                tally.crashes.append(f"{name}: {exc!r}")
            return


def _runs(client: OpenAI, assistant_id: str, tally: Tally) -> Callable[[int], None]:
    def step(n: int) -> None:
        thread = client.beta.threads.create(messages=[{"role": "user", "content": f"poll {n}"}])
        with tally.lock:
            tally.run_threads.append(thread.id)
        client.beta.threads.runs.create_and_poll(
            thread_id=thread.id, assistant_id=assistant_id, poll_interval_ms=200
        )

    return step


def _streams(client: OpenAI, assistant_id: str, tally: Tally) -> Callable[[int], None]:
    def step(n: int) -> None:
        thread = client.beta.threads.create(messages=[{"role": "user", "content": f"stream {n}"}])
        with tally.lock:
            tally.run_threads.append(thread.id)
        started = time.monotonic()
        outcome = "not started (server down)"
        try:
            with client.beta.threads.runs.stream(thread_id=thread.id, assistant_id=assistant_id) as stream:
                for event in stream:
                    if event.event in FINAL_EVENTS:
                        outcome = "done"
                    elif outcome != "done":
                        outcome = "ended without a final event"
        except Exception:
            # The connection broke (its server was killed), or never opened (it was down).
            if outcome == "ended without a final event":
                outcome = "broken by a kill"
        with tally.lock:
            tally.streams[outcome] += 1
            tally.stream_seconds.append(time.monotonic() - started)

    return step


def _messages(client: OpenAI, thread_ids: list[str], tally: Tally) -> Callable[[int], None]:
    def step(n: int) -> None:
        thread_id = thread_ids[n % len(thread_ids)]
        content = f"note {n} {uuid.uuid4().hex}"
        client.beta.threads.messages.create(thread_id=thread_id, role="user", content=content)
        with tally.lock:
            tally.messages[thread_id].append(content)

    return step


def _files(client: OpenAI, tally: Tally) -> Callable[[int], None]:
    def step(n: int) -> None:
        name = f"soak-{n}-{uuid.uuid4().hex[:8]}.txt"
        data = f"{name}\n".encode() * (1 + n % 200)
        uploaded = client.files.create(file=(name, data), purpose="assistants")
        with tally.lock:
            tally.files[uploaded.id] = (name, data)

    return step


def _all_pages(fetch: Callable[[str | None], tuple[list[object], bool, str | None]]) -> list[object]:
    items: list[object] = []
    after: str | None = None
    while True:
        page, more, after = fetch(after)
        items += page
        if not more:
            return items


def _check_database(url: str) -> str:
    """The database's own consistency check; what was checked, for the figures."""
    if url.startswith("sqlite"):
        assert query(url, "PRAGMA integrity_check") == [("ok",)]
        return "PRAGMA integrity_check: ok"
    query(url, "CREATE EXTENSION IF NOT EXISTS amcheck")
    tables = query(url, _PUBLIC_RELATIONS.format(kind="r", am=""))
    corrupt = [(t, query(url, "SELECT * FROM verify_heapam(?::regclass)", t)) for (t,) in tables]
    assert [found for found in corrupt if found[1]] == []
    indexes = query(url, _PUBLIC_RELATIONS.format(kind="i", am="AND a.amname = 'btree'"))
    for (index,) in indexes:
        # Raises on a corrupt index; with heapallindexed, also on a row the index misses.
        query(url, "SELECT bt_index_check(?::regclass, true)", index)
    return f"amcheck: verify_heapam over {len(tables)} tables, bt_index_check over {len(indexes)} indexes"


_PUBLIC_RELATIONS = (
    "SELECT c.oid::regclass::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "LEFT JOIN pg_am a ON a.oid = c.relam WHERE n.nspname = 'public' AND c.relkind = '{kind}' {am}"
)


def _spread(seconds: list[float]) -> str:
    ordered = sorted(seconds) or [0.0]
    return f"median {ordered[len(ordered) // 2]:.1f} s, longest {ordered[-1]:.1f} s"


def test_kill_9_soak(
    tmp_path_factory: pytest.TempPathFactory, databases: Databases, fake: FakeUpstream
) -> None:
    began = time.monotonic()
    rng = random.Random(os.environ.get("ASSISTD_SOAK_SEED", "assistd"))
    deployment = Deployment(tmp_path_factory, databases, fake)
    tally = Tally()
    stop = threading.Event()
    try:
        with make_client(deployment.api) as setup:
            assistant = setup.beta.assistants.create(model="fake-model", instructions="Answer briefly.")
            note_threads = [setup.beta.threads.create().id for _ in range(3)]
        tally.messages = {thread_id: [] for thread_id in note_threads}
        client = _client(deployment)
        load = {
            "runs-1": _runs(client, assistant.id, tally),
            "runs-2": _runs(client, assistant.id, tally),
            "streams": _streams(client, assistant.id, tally),
            "messages": _messages(client, note_threads, tally),
            "files": _files(client, tally),
        }
        threads = [
            threading.Thread(target=_loop, args=(stop, tally, name, step), name=name, daemon=True)
            for name, step in load.items()
        ]
        for thread in threads:
            thread.start()
        for _ in range(KILLS):
            time.sleep(rng.uniform(*UP_SECONDS))
            deployment.kill_one(rng)
        time.sleep(UP_SECONDS[1])  # some load on the last process too
        stop.set()
        for thread in threads:
            thread.join(STREAM_BOUND_SECONDS * 3 + 10)
            assert not thread.is_alive(), f"the {thread.name} load hung"
        assert tally.crashes == []
        loaded_for = time.monotonic() - began

        # Every run is final: none left queued or in progress by a killed process.
        deadline = time.monotonic() + SETTLE_SECONDS
        statuses = ", ".join(f"'{status}'" for status in TERMINAL)
        unsettled = f"SELECT id, status FROM runs WHERE status NOT IN ({statuses})"
        while (left := query(deployment.database_url, unsettled)) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert left == [], f"runs never ended: {left}\n{deployment.logs()}"
        run_statuses: collections.Counter[str] = collections.Counter()
        for thread_id in tally.run_threads:
            for run in client.beta.threads.runs.list(thread_id=thread_id, limit=100).data:
                # A failure says why: a run cut by a kill too many times ends failed, by design.
                why = f" ({run.last_error.code}: {run.last_error.message})" if run.last_error else ""
                run_statuses[run.status + why] += 1
        assert {status.split(" ")[0] for status in run_statuses} <= TERMINAL

        # Every acknowledged message exactly once; no message twice.
        for thread_id, acknowledged in tally.messages.items():

            def page(after: str | None, thread_id: str = thread_id) -> tuple[list[object], bool, str | None]:
                listed = client.beta.threads.messages.list(
                    thread_id=thread_id, limit=100, order="asc", **({"after": after} if after else {})
                )
                return listed.data, listed.has_more, listed.data[-1].id if listed.data else None

            stored = collections.Counter(
                "".join(part.text.value for part in m.content if part.type == "text")  # type: ignore[attr-defined]
                for m in _all_pages(page)
            )
            assert [content for content, count in stored.items() if count > 1] == []
            assert [content for content in acknowledged if stored[content] != 1] == []

        # Every acknowledged file exactly once, with its bytes.
        def file_page(after: str | None) -> tuple[list[object], bool, str | None]:
            listed = client.files.list(limit=10_000, order="asc", **({"after": after} if after else {}))
            return listed.data, listed.has_more, listed.data[-1].id if listed.data else None

        listed_files = collections.Counter(f.id for f in _all_pages(file_page))  # type: ignore[attr-defined]
        assert [file_id for file_id in tally.files if listed_files[file_id] != 1] == []
        for file_id, (name, data) in tally.files.items():
            assert client.files.retrieve(file_id).filename == name
            assert client.files.content(file_id).read() == data

        # No stream hung: each ended (its run's end, or a connection its server's death broke) in time.
        assert tally.streams["ended without a final event"] == 0, tally.streams
        bound = STREAM_BOUND_SECONDS + max(deployment.restart_seconds, default=0.0)
        assert max(tally.stream_seconds, default=0.0) < bound, tally.stream_seconds
    finally:
        stop.set()
        deployment.stop()
    checked = _check_database(deployment.database_url)
    acknowledged = sum(map(len, tally.messages.values()))
    print(
        f"\nkill -9 soak [{deployment.database_url.split(':')[0]}]: {KILLS} kills {dict(deployment.kills)} "
        f"in {loaded_for:.0f} s of load (restarts {_spread(deployment.restart_seconds)}); "
        f"runs {dict(run_statuses)}; streams {dict(tally.streams)} "
        f"(longest {max(tally.stream_seconds, default=0.0):.1f} s); {acknowledged} messages and "
        f"{len(tally.files)} files acknowledged, 0 lost; {tally.failed_calls} calls failed while a server "
        f"was down; {checked}; {time.monotonic() - began:.0f} s in all"
    )
