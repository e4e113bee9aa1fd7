"""The four-host deployment the multi-host tests run on (network namespaces, see hosts.py): two API replicas
(`serve --workers 0`) that execute nothing and two workers (`assistd worker`) that execute everything,
sharing one PostgreSQL over the network and nothing else (no folder, no loopback).

Its fixtures are module-scoped: each test module that imports them gets a deployment of its own. A module
imports the functions ``net_fixture``, ``layout_fixture`` and ``replicas_fixture``, which pytest then knows
as the fixtures ``net``, ``layout`` and ``replicas`` (named apart, so that a test's parameter ``layout``
does not shadow an import).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from conftest import Databases
from fake_upstream import FakeUpstream
from hosts import BRIDGE_ADDRESS, Network, available, network
from server import AssistdServer

DB_PORT = 15432
UPSTREAM_PORT = 18123
# A worker that dies loses its runs, and the sessions it held, this soon.
LEASE_SECONDS = 4


@pytest.fixture(scope="module", name="net")
def net_fixture() -> Iterator[Network]:
    reason = available()
    if reason is not None:
        pytest.skip(f"multi-host tests not run: {reason}")
    with network(4) as made:
        yield made


@dataclass
class Layout:
    """Two API replicas (`serve --workers 0`) and two workers (`assistd worker`), each on its own host."""

    apis: list[AssistdServer]
    workers: list[AssistdServer]
    database_url: str  # as this machine reaches it

    def worker_of(self, pid: int) -> AssistdServer:
        """The worker whose process is ``pid`` (``ip netns exec`` runs assistd as itself, same pid)."""
        return next(w for w in self.workers if w.process is not None and w.process.pid == pid)


@pytest.fixture(scope="module", name="layout")
def layout_fixture(
    net: Network, databases: Databases, fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Layout]:
    assert fake.port is not None
    net.forward(DB_PORT, ("127.0.0.1", 5432))
    net.forward(UPSTREAM_PORT, ("127.0.0.1", fake.port))
    local_url = databases.new()
    # The database as the hosts reach it: through the bridge, not their own loopback.
    url = local_url.replace("127.0.0.1:5432", f"{BRIDGE_ADDRESS}:{DB_PORT}")
    env = {
        "ASSISTD_UPSTREAM_BASE_URL": f"http://{BRIDGE_ADDRESS}:{UPSTREAM_PORT}/v1",
        "ASSISTD_UPSTREAM_API_KEY": "sk-upstream",
        "ASSISTD_RUN_LEASE_SECONDS": str(LEASE_SECONDS),
        "ASSISTD_LONG_POLL_SECONDS": "20",
    }
    apis = [
        AssistdServer(
            tmp_path_factory.mktemp(f"api{n}"), url, env, host=net.hosts[n], args=("--workers", "0")
        )
        for n in range(2)
    ]
    workers = [
        AssistdServer(tmp_path_factory.mktemp(f"worker{n}"), url, env, host=net.hosts[2 + n], worker=True)
        for n in range(2)
    ]
    try:
        for server in [*apis, *workers]:
            server.start(timeout=60)
        yield Layout(apis, workers, local_url)
    finally:
        for server in [*apis, *workers]:
            server.stop()


@pytest.fixture(name="replicas")
def replicas_fixture(layout: Layout) -> list[AssistdServer]:
    for server in [*layout.apis, *layout.workers]:
        if server.process is None:
            server.start(timeout=60)  # a test before killed it
    return layout.apis
