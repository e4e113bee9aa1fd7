"""The in-process run bus: numbering, live delivery, resume from a seq, and forgetting old runs."""

from __future__ import annotations

import asyncio

from assistd.engine.bus import MemoryBus
from assistd.engine.events import StreamEvent


def _event(n: int) -> StreamEvent:
    return StreamEvent("thread.message.delta", {"n": n})


def _drain(queue: asyncio.Queue[StreamEvent]) -> list[tuple[int | None, int]]:
    out = []
    while not queue.empty():
        event = queue.get_nowait()
        out.append((event.seq, event.data["n"]))  # type: ignore[index]
    return out


def test_listeners_get_numbered_events_live_and_resume_from_a_seq() -> None:
    async def main() -> None:
        bus = MemoryBus()
        live = bus.subscription()
        await live.attach("run_1", after=0)
        await bus.publish("run_1", _event(0), _event(1))
        bus.soon("run_1", _event(2))
        assert _drain(live.queue) == [(1, 0), (2, 1), (3, 2)]
        resumed = bus.subscription()
        await resumed.attach("run_1", after=1)
        assert _drain(resumed.queue) == [(2, 1), (3, 2)]
        fresh = bus.subscription()
        await fresh.attach("run_1")  # from now on
        await bus.publish("run_1", _event(3))
        assert _drain(fresh.queue) == [(4, 3)]
        assert _drain(live.queue) == [(4, 3)]
        for listener in (live, resumed, fresh):
            listener.close()
        assert not bus.listened("run_1")

    asyncio.run(main())


def test_records_of_two_writers_are_numbered_in_delivery_order() -> None:
    async def main() -> None:
        bus = MemoryBus()
        listener = bus.subscription()
        await listener.attach("run_2", after=0)
        first = await bus.record(None, "run_2", [_event(0)])  # type: ignore[arg-type]
        second = await bus.record(None, "run_2", [_event(1)])  # type: ignore[arg-type]
        bus.deliver("run_2", second)
        bus.deliver("run_2", first)
        assert _drain(listener.queue) == [(1, 1), (2, 0)]

    asyncio.run(main())


def test_runs_nobody_listens_to_are_forgotten_after_the_retention() -> None:
    async def main() -> None:
        bus = MemoryBus(retention_seconds=0.0)
        await bus.publish("run_old", _event(0))
        await asyncio.sleep(0.01)
        await bus.publish("run_new", _event(0))
        late = bus.subscription()
        await late.attach("run_old", after=0)
        assert _drain(late.queue) == []

    asyncio.run(main())
