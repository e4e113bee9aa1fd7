"""ASSISTD_UPSTREAM_MAX_CONCURRENCY is the deployment's limit, not each process's: the executing processes
alive on the database split it between them (each learns how many there are from the ``processes`` table
when it beats), so the upstream never sees more requests at once than the limit, however many workers run.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import asyncpg
import pytest

from conftest import Databases, make_client
from fake_upstream import FakeUpstream, Text
from server import AssistdServer

LIMIT = 2
LEASE_SECONDS = 3  # a process beats every third of it, and so learns of the others within a second
RUNS = 8


@pytest.fixture
def slow() -> Iterator[FakeUpstream]:
    # Replies slow enough that runs overlap: every run's request waits in the upstream for a while.
    with FakeUpstream(default=Text("A slow answer.", delay_s=0.5)) as fake:
        yield fake


def _live_processes(url: str) -> int:
    async def count() -> int:
        connection = await asyncpg.connect(url)
        try:
            found = await connection.fetchval(
                "SELECT count(*) FROM processes WHERE seen_at > $1", time.time() - LEASE_SECONDS
            )
            return int(found)
        finally:
            await connection.close()

    return asyncio.run(count())


@pytest.mark.postgres_only
def test_two_workers_share_the_upstream_limit(
    tmp_path_factory: pytest.TempPathFactory, databases: Databases, slow: FakeUpstream
) -> None:
    url = databases.new()
    env = {
        "ASSISTD_UPSTREAM_BASE_URL": slow.base_url,
        "ASSISTD_UPSTREAM_API_KEY": "sk-upstream",
        "ASSISTD_UPSTREAM_MAX_CONCURRENCY": str(LIMIT),
        "ASSISTD_RUN_LEASE_SECONDS": str(LEASE_SECONDS),
        "ASSISTD_LONG_POLL_SECONDS": "20",
    }
    # Each worker executes at most LIMIT runs at once, so RUNS runs keep both busy: with a limit of LIMIT
    # per process, as before it was shared, the upstream would see 2 * LIMIT requests at once.
    worker_env = {**env, "ASSISTD_WORKERS": str(LIMIT)}
    api = AssistdServer(tmp_path_factory.mktemp("api"), url, env, args=("--workers", "0"))
    workers = [
        AssistdServer(tmp_path_factory.mktemp(f"worker{n}"), url, worker_env, worker=True) for n in range(2)
    ]
    try:
        for server in [api, *workers]:
            server.start(timeout=60)
        deadline = time.monotonic() + 20
        while _live_processes(url) < 2:
            assert time.monotonic() < deadline, "the workers never both beat"
            time.sleep(0.1)
        time.sleep(LEASE_SECONDS / 3 + 0.5)  # the first worker's next beat: it has seen the second one
        with make_client(api) as client:
            assistant = client.beta.assistants.create(model="fake-model").id
            threads = [
                client.beta.threads.create(messages=[{"role": "user", "content": f"Question {n}"}]).id
                for n in range(RUNS)
            ]
            runs = [
                client.beta.threads.runs.create(thread_id=thread, assistant_id=assistant)
                for thread in threads
            ]
            ended = [
                client.beta.threads.runs.poll(run.id, thread_id=run.thread_id, poll_interval_ms=50)
                for run in runs
            ]
        assert [run.status for run in ended] == ["completed"] * RUNS
        assert slow.served == RUNS
        assert 1 <= slow.peak_concurrency <= LIMIT
    finally:
        for server in [api, *workers]:
            server.stop()
