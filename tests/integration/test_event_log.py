"""The run event log and the bus over it, on the real database (SQLite, or PostgreSQL in the PG pass).

Two ``LogBus`` instances on two ``Database`` engines stand for two processes: nothing passes between them
but the database (NOTIFY on PostgreSQL, polled heads on SQLite).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from assistd.engine.bus import Sequenced
from assistd.engine.event_log import LogBus, LogSubscription
from assistd.engine.events import StreamEvent
from assistd.store import run_events
from assistd.store.database import Database
from assistd.store.models import RunRow


def _delta(n: int) -> StreamEvent:
    return StreamEvent("thread.message.delta", {"id": "msg_x", "delta": {"n": n}})


async def _take(listener: LogSubscription, count: int, seconds: float = 10.0) -> list[Sequenced]:
    got: list[Sequenced] = []
    async with asyncio.timeout(seconds):
        while len(got) < count:
            event = await listener.get()
            assert event.seq is not None
            got.append((event.seq, event))
    return got


def _numbers(events: list[Sequenced]) -> list[int]:
    return [int(event.data["delta"]["n"]) for _, event in events]  # type: ignore[index]


def _run(scenario: Callable[..., Coroutine[Any, Any, None]], migrated_url: str, **options: float) -> None:
    async def main() -> None:
        dbs = [Database(migrated_url), Database(migrated_url)]
        buses = [LogBus(db, **options) for db in dbs]
        for bus in buses:
            await bus.start()
        try:
            await scenario(*buses)
        finally:
            for bus in buses:
                await bus.close()
            for db in dbs:
                await db.close()

    asyncio.run(main())


def test_events_written_by_one_process_reach_another_in_order(migrated_url: str) -> None:
    async def scenario(writer: LogBus, reader: LogBus) -> None:
        listener = reader.subscription()
        await listener.attach("run_a", after=0)
        for n in range(0, 60, 3):
            await writer.publish("run_a", _delta(n), _delta(n + 1), _delta(n + 2))
        got = await _take(listener, 60)
        assert [seq for seq, _ in got] == list(range(1, 61))
        assert _numbers(got) == list(range(60))
        listener.close()

    _run(scenario, migrated_url)


def test_a_listener_attached_without_a_seq_gets_only_what_comes_after(migrated_url: str) -> None:
    async def scenario(writer: LogBus, reader: LogBus) -> None:
        await writer.publish("run_b", _delta(0), _delta(1))
        listener = reader.subscription()
        await listener.attach("run_b")
        await writer.publish("run_b", _delta(2))
        assert _numbers(await _take(listener, 1)) == [2]
        await asyncio.sleep(0.3)
        assert listener.queue.empty()
        listener.close()

    _run(scenario, migrated_url)


def test_a_resumed_listener_gets_the_events_after_its_seq_then_live_ones(migrated_url: str) -> None:
    async def scenario(writer: LogBus, reader: LogBus) -> None:
        await writer.publish("run_c", *[_delta(n) for n in range(10)])
        early = reader.subscription()
        await early.attach("run_c", after=0)
        assert _numbers(await _take(early, 10)) == list(range(10))
        resumed = reader.subscription()
        await resumed.attach("run_c", after=7)  # it saw seqs 1..7 elsewhere
        await writer.publish("run_c", _delta(10))
        assert _numbers(await _take(resumed, 4)) == [7, 8, 9, 10]
        assert _numbers(await _take(early, 1)) == [10]
        early.close()
        resumed.close()

    _run(scenario, migrated_url)


def test_two_writers_of_one_run_never_share_or_skip_a_seq(migrated_url: str) -> None:
    async def scenario(one: LogBus, two: LogBus) -> None:
        listener = one.subscription()
        await listener.attach("run_d", after=0)

        async def write(bus: LogBus, start: int) -> None:
            for n in range(start, start + 40):
                await bus.publish("run_d", _delta(n))

        await asyncio.gather(write(one, 0), write(two, 1000))
        got = await _take(listener, 80)
        assert [seq for seq, _ in got] == list(range(1, 81))
        numbers = _numbers(got)
        # Each writer's own events stay in its order.
        assert [n for n in numbers if n < 1000] == list(range(40))
        assert [n for n in numbers if n >= 1000] == list(range(1000, 1040))
        listener.close()

    _run(scenario, migrated_url)


def _run_row(run_id: str, status: str) -> RunRow:
    return RunRow(
        id=run_id,
        tenant="t",
        created_at=0,
        meta={},
        thread_id="thread_x",
        assistant_id="asst_x",
        status=status,
        model="m",
        instructions="",
        tools=[],
        truncation_strategy={"type": "auto"},
        tool_choice="auto",
        parallel_tool_calls=True,
        response_format="auto",
    )


def test_prune_drops_ended_and_orphaned_runs_logs_past_retention_only(migrated_url: str) -> None:
    async def scenario(bus: LogBus, _other: LogBus) -> None:
        async with bus.db.write() as session:
            session.add_all([_run_row("run_done", "completed"), _run_row("run_waiting", "requires_action")])
        for run_id in ("run_done", "run_waiting", "run_gone"):
            await bus.publish(run_id, _delta(0), _delta(1))
        async with bus.db.write() as session:
            assert await run_events.prune(session, time.time() - 60, {"completed"}) == 0
            pruned = await run_events.prune(session, time.time() + 1, {"completed"})
        assert pruned == 4
        async with bus.db.read() as session:
            left = {
                run_id: await run_events.read_after(session, run_id, 0)
                for run_id in ("run_done", "run_waiting", "run_gone")
            }
        assert {run_id: len(events) for run_id, events in left.items()} == {
            "run_done": 0,
            "run_waiting": 2,
            "run_gone": 0,
        }

    _run(scenario, migrated_url)


def test_queued_deltas_are_batched_and_stay_before_what_follows_a_settle(migrated_url: str) -> None:
    async def scenario(writer: LogBus, reader: LogBus) -> None:
        runs = [f"run_soon_{n}" for n in range(5)]
        listeners = {}
        for run_id in runs:
            listeners[run_id] = reader.subscription()
            await listeners[run_id].attach(run_id, after=0)
        for n in range(50):
            for run_id in runs:
                writer.soon(run_id, _delta(n))
            if n % 10 == 0:
                await asyncio.sleep(0)  # let a flush start while more are queued
        for run_id in runs:
            await writer.settle(run_id)
            await writer.publish(run_id, StreamEvent("thread.run.completed", {"id": run_id}))
        for run_id in runs:
            got = await _take(listeners[run_id], 51)
            assert [seq for seq, _ in got] == list(range(1, 52))
            assert _numbers(got[:50]) == list(range(50))
            assert got[50][1].event == "thread.run.completed"
            listeners[run_id].close()
        async with writer.db.read() as session:
            assert len(await run_events.read_after(session, runs[0], 0)) == 51

    _run(scenario, migrated_url)


def test_listening_to_a_run_this_process_follows_reads_nothing(
    migrated_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run's later listeners (a worker's cancel watcher, a long poll) start at the last event this process
    has, without a read; a listener of a run being created reads nothing either. Under load each read
    would wait for a pooled connection that the runs' own work needs."""
    reads: list[str] = []
    heads, read_after = run_events.heads, run_events.read_after

    async def counted_heads(*args: Any, **kwargs: Any) -> dict[str, int]:
        reads.append("heads")
        return await heads(*args, **kwargs)

    async def counted_read_after(*args: Any, **kwargs: Any) -> list[run_events.LoggedEvent]:
        reads.append("read_after")
        return await read_after(*args, **kwargs)

    async def scenario(bus: LogBus, _other: LogBus) -> None:
        # On PostgreSQL, once LISTEN connects, every followed run is read (for wake-ups it missed).
        for _ in range(1000):
            if bus.db.is_sqlite or bus._listen_connection is not None:
                break
            await asyncio.sleep(0.01)
        monkeypatch.setattr(run_events, "heads", counted_heads)
        monkeypatch.setattr(run_events, "read_after", counted_read_after)
        stream = bus.subscription()
        await stream.attach("run_new", after=0, read=False)
        await asyncio.sleep(0.1)
        assert reads == []
        await bus.publish("run_new", _delta(0), _delta(1))
        assert _numbers(await _take(stream, 2)) == [0, 1]
        # This process's own write wakes no read either: its NOTIFY names one of its own connections.
        await asyncio.sleep(0.1)
        assert reads == []
        watcher = bus.subscription()
        await watcher.attach("run_new")
        await asyncio.sleep(0.1)
        assert reads == []
        await bus.publish("run_new", _delta(2))
        assert _numbers(await _take(stream, 1)) == [2]
        assert _numbers(await _take(watcher, 1)) == [2]
        watcher.close()
        stream.close()

    # No look at the heads on a timer (SQLite's wake-ups, PostgreSQL's safety net): only attach's reads count.
    _run(scenario, migrated_url, poll_seconds=3600, safety_poll_seconds=3600)


def test_a_listener_that_joins_a_followed_run_gets_what_other_processes_write_next(migrated_url: str) -> None:
    async def scenario(writer: LogBus, reader: LogBus) -> None:
        first = reader.subscription()
        await first.attach("run_f", after=0)
        await writer.publish("run_f", _delta(0), _delta(1))
        assert _numbers(await _take(first, 2)) == [0, 1]
        second = reader.subscription()
        await second.attach("run_f")
        await writer.publish("run_f", _delta(2))
        assert _numbers(await _take(second, 1)) == [2]
        assert _numbers(await _take(first, 1)) == [2]
        await asyncio.sleep(0.2)
        assert second.queue.empty()
        first.close()
        second.close()

    _run(scenario, migrated_url)


def test_the_last_listener_leaving_lets_a_read_in_progress_end(migrated_url: str) -> None:
    """Closing a run's last listener while its log is being read must not cancel the read mid-transaction
    (the pool would log an error closing the connection and lose it)."""

    async def scenario(writer: LogBus, reader: LogBus) -> None:
        await writer.publish("run_g", *[_delta(n) for n in range(5)])
        listener = reader.subscription()
        await listener.attach("run_g", after=0)  # starts a read of the five events
        reading = reader._followed["run_g"].reading
        assert reading is not None
        listener.close()
        await asyncio.wait_for(reading, 10)
        assert not reading.cancelled()

    _run(scenario, migrated_url)


def test_a_listener_from_now_starts_after_one_attached_at_a_vouched_seq(migrated_url: str) -> None:
    """A run followed only by a listener attached at a seq it vouches for (a worker watching its own run
    for a cancel, ``read=False``): one attached "from now" next gets what comes after, not the old events."""

    async def scenario(bus: LogBus, _other: LogBus) -> None:
        await bus.publish("run_v", _delta(0), _delta(1), _delta(2))
        watcher = bus.subscription()
        await watcher.attach("run_v", after=3, read=False)
        listener = bus.subscription()
        await listener.attach("run_v")
        await bus.publish("run_v", _delta(3))
        assert _numbers(await _take(listener, 1)) == [3]
        assert _numbers(await _take(watcher, 1)) == [3]
        watcher.close()
        listener.close()

    _run(scenario, migrated_url)
