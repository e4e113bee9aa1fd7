"""Replicas on separate test hosts (network namespaces, see tests/hosts.py) sharing one PostgreSQL over
the network: what one host writes, another serves."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from openai.types.beta import Assistant
from openai.types.beta.threads import Run

from conftest import Databases, make_client
from fake_upstream import FakeUpstream
from hosts import BRIDGE_ADDRESS, Network, available, network
from server import AssistdServer

pytestmark = [pytest.mark.postgres_only, pytest.mark.multihost]

_DB_PORT = 15432
_UPSTREAM_PORT = 18123


@pytest.fixture(scope="module")
def net() -> Iterator[Network]:
    reason = available()
    if reason is not None:
        pytest.skip(f"multi-host tests not run: {reason}")
    with network(2) as made:
        yield made


@pytest.fixture(scope="module")
def replicas(
    net: Network, databases: Databases, fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[AssistdServer]]:
    assert fake.port is not None
    net.forward(_DB_PORT, ("127.0.0.1", 5432))
    net.forward(_UPSTREAM_PORT, ("127.0.0.1", fake.port))
    # The database as the hosts reach it: through the bridge, not their own loopback.
    url = databases.new().replace("127.0.0.1:5432", f"{BRIDGE_ADDRESS}:{_DB_PORT}")
    env = {
        "ASSISTD_UPSTREAM_BASE_URL": f"http://{BRIDGE_ADDRESS}:{_UPSTREAM_PORT}/v1",
        "ASSISTD_UPSTREAM_API_KEY": "sk-upstream",
    }
    servers = [
        AssistdServer(tmp_path_factory.mktemp(f"host{n}"), url, env, host=host)
        for n, host in enumerate(net.hosts)
    ]
    try:
        for server in servers:
            server.start(timeout=60)
        yield servers
    finally:
        for server in servers:
            server.stop()


def test_what_one_host_writes_another_serves(replicas: list[AssistdServer], fake: FakeUpstream) -> None:
    a, b = replicas
    with make_client(a) as on_a, make_client(b) as on_b:
        assistant = on_a.beta.assistants.create(model="fake-model", name="shared")
        assert Assistant.model_validate(on_b.beta.assistants.retrieve(assistant.id).model_dump()) == assistant
        thread = on_a.beta.threads.create(messages=[{"role": "user", "content": "hello"}])
        fake.push("hi from the upstream")
        run = on_a.beta.threads.runs.create(thread.id, assistant_id=assistant.id)
        done = on_b.beta.threads.runs.poll(run.id, thread_id=thread.id, poll_interval_ms=50)
        assert Run.model_validate(done.model_dump()).status == "completed"
        messages = on_b.beta.threads.messages.list(thread.id, order="asc")
        assert [m.content[0].text.value for m in messages.data] == ["hello", "hi from the upstream"]  # type: ignore[union-attr]


def test_many_runs_over_shared_threads_complete_exactly_once(
    replicas: list[AssistdServer], fake: FakeUpstream
) -> None:
    """200 runs over 50 threads, created alternately on both hosts: every one completes, with exactly
    one upstream request and one reply each."""
    from concurrent.futures import ThreadPoolExecutor

    a, b = replicas
    with make_client(a) as on_a, make_client(b) as on_b:
        assistant = on_a.beta.assistants.create(model="fake-model")
        threads = [on_a.beta.threads.create().id for _ in range(50)]

        def four_runs(n: int) -> list[str]:
            client = (on_a, on_b)[n % 2]
            done = []
            for turn in range(4):
                client.beta.threads.messages.create(threads[n], role="user", content=f"turn {turn}")
                run = client.beta.threads.runs.create_and_poll(
                    thread_id=threads[n], assistant_id=assistant.id, poll_interval_ms=50
                )
                assert run.status == "completed", run.last_error
                done.append(run.id)
            return done

        served_before = fake.served
        with ThreadPoolExecutor(16) as pool:
            run_ids = [run_id for runs in pool.map(four_runs, range(50)) for run_id in runs]
        assert len(set(run_ids)) == 200
        assert fake.served - served_before == 200
        for n, thread_id in enumerate(threads):
            messages = (on_a, on_b)[n % 2].beta.threads.messages.list(thread_id, limit=100).data
            replies = [m for m in messages if m.role == "assistant"]
            assert len(replies) == 4
            assert sorted(m.run_id or "" for m in replies) == sorted(run_ids[4 * n : 4 * n + 4])


def test_concurrent_runs_on_one_thread_across_hosts_one_wins(replicas: list[AssistdServer]) -> None:
    """20 create-run calls at once on one thread, half to each host: one run is created, the rest get
    OpenAI's 400 for a thread with an active run."""
    import threading

    import openai

    a, b = replicas
    with make_client(a) as on_a, make_client(b) as on_b:
        assistant = on_a.beta.assistants.create(model="fake-model")
        thread = on_a.beta.threads.create(messages=[{"role": "user", "content": "race"}])
        start = threading.Barrier(20)
        outcomes: list[object] = []

        def attempt(n: int) -> None:
            client = (on_a, on_b)[n % 2]
            start.wait(timeout=30)
            try:
                outcomes.append(client.beta.threads.runs.create(thread.id, assistant_id=assistant.id))
            except openai.BadRequestError as exc:
                outcomes.append(exc)

        workers = [threading.Thread(target=attempt, args=(n,)) for n in range(20)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(60)
        runs = [o for o in outcomes if isinstance(o, Run)]
        refused = [o for o in outcomes if isinstance(o, openai.BadRequestError)]
        assert (len(runs), len(refused)) == (1, 19)
        for error in refused:
            assert "already has an active run" in error.message
        on_a.beta.threads.runs.poll(runs[0].id, thread_id=thread.id, poll_interval_ms=50)
