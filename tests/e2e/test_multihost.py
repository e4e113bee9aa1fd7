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
