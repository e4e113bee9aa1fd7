from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from assistd import metrics


def _value(name: str, **labels: str) -> float:
    value = metrics.REGISTRY.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_observe_run_finished_counts_runs_by_status() -> None:
    before = _value("assistd_run_duration_seconds_count", status="completed")
    metrics.observe_run_finished("completed", 1.5)
    metrics.observe_run_finished("completed", -1.0)  # a clock step back is counted as 0 s, not refused
    assert _value("assistd_run_duration_seconds_count", status="completed") == before + 2
    assert _value("assistd_run_duration_seconds_bucket", status="completed", le="0.1") >= 1
    assert _value("assistd_run_duration_seconds_bucket", status="completed", le="2.5") >= 2


def test_tracked_stream_counts_the_stream_while_it_is_open() -> None:
    seen: list[float] = []

    async def frames() -> AsyncIterator[bytes]:
        for frame in (b"a", b"b"):
            seen.append(_value("assistd_sse_streams_open"))
            yield frame

    async def main() -> None:
        base = _value("assistd_sse_streams_open")
        assert [frame async for frame in metrics.tracked_stream(frames())] == [b"a", b"b"]
        assert seen == [base + 1, base + 1]
        assert _value("assistd_sse_streams_open") == base
        # A client that goes away: Starlette closes the generator mid-stream.
        stream = metrics.tracked_stream(frames())
        assert await anext(stream) == b"a"
        assert _value("assistd_sse_streams_open") == base + 1
        await stream.aclose()
        assert _value("assistd_sse_streams_open") == base
        with metrics.sse_stream():
            assert _value("assistd_sse_streams_open") == base + 1
        assert _value("assistd_sse_streams_open") == base

    asyncio.run(main())


def test_render_is_prometheus_text() -> None:
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain; version=0.0.4")
    assert b'assistd_build_info{version="' in body
    assert b"_created" not in body
