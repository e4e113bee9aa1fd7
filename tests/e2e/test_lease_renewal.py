"""A worker renews the leases of all the runs it holds in one write, every third of a lease, and keeps
them for as long as the runs take: runs that outlast their lease many times over are executed once."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from openai import OpenAI

from conftest import Databases, make_client, start_server
from fake_upstream import FakeUpstream, Text
from restarts import fake_fixture, query, wait_for
from server import AssistdServer

pytestmark = pytest.mark.slow

fake = fake_fixture

LEASE_SECONDS = 3.0
# Each reply takes more than two leases: a lease not renewed in time would hand its run to a second claim.
REPLY_SECONDS = 7.0
RUNS = 4


@pytest.fixture
def server(
    tmp_path_factory: pytest.TempPathFactory, databases: Databases, fake: FakeUpstream
) -> Iterator[AssistdServer]:
    srv = start_server(tmp_path_factory, databases, fake, run_lease_seconds=str(LEASE_SECONDS))
    yield srv
    srv.stop()


def _leases(server: AssistdServer, run_ids: list[str]) -> dict[str, tuple[float, str]]:
    marks = ", ".join("?" for _ in run_ids)
    rows = query(
        server.database_url,
        f"SELECT run_id, locked_until, locked_by FROM run_jobs WHERE run_id IN ({marks})",
        *run_ids,
    )
    return {row[0]: (float(row[1]), str(row[2])) for row in rows}


def test_one_write_renews_every_held_lease_and_long_runs_run_once(
    server: AssistdServer, fake: FakeUpstream
) -> None:
    client: OpenAI = make_client(server)
    assistant = client.beta.assistants.create(model="fake-model")
    for n in range(RUNS):
        fake.push(Text(f"slow answer {n}", delay_s=REPLY_SECONDS))
    runs: list[tuple[str, str]] = []
    for n in range(RUNS):
        thread = client.beta.threads.create(messages=[{"role": "user", "content": f"question {n}"}])
        runs.append((thread.id, client.beta.threads.runs.create(thread.id, assistant_id=assistant.id).id))
        time.sleep(0.4)  # claimed one by one, so each claim gives its own lease end
    for thread_id, run_id in runs:
        wait_for(client, server, thread_id, run_id, {"in_progress"})
    run_ids = [run_id for _, run_id in runs]

    claimed = _leases(server, run_ids)
    assert set(claimed) == set(run_ids)
    assert len({holder for _, holder in claimed.values()}) == 1, "one process holds them all"
    time.sleep(LEASE_SECONDS * 2 / 3 + 0.5)  # at least one renewal since
    renewed = _leases(server, run_ids)

    assert set(renewed) == set(run_ids), "every run is still held"
    ends = {until for until, _ in renewed.values()}
    assert len(ends) == 1, f"one renewal sets the same lease end for every held run: {renewed}"
    assert ends.pop() > max(until for until, _ in claimed.values()), "the leases were renewed"

    for thread_id, run_id in runs:
        done = wait_for(client, server, thread_id, run_id, {"completed"})
        assert done.status == "completed"
    answers = sorted(
        client.beta.threads.messages.list(thread_id, order="desc").data[0].content[0].text.value  # type: ignore[union-attr]
        for thread_id, _ in runs
    )
    assert answers == sorted(f"slow answer {n}" for n in range(RUNS))
    assert len(fake.requests) == RUNS, "a run whose lease lapsed would have asked the model again"
