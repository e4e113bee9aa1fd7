"""Listing messages (``limit=20``) on a thread of 10,000 messages, against a thread of 10.

The big thread is seeded through the API (``messages.create`` from concurrent async clients). Timed, one
call at a time: its first page, a page deep inside it (``after`` = a cursor from the middle), and the
first page of the small thread (10 items), and a 10-item first page of the big thread to compare like
with like. Pagination walks the integer primary key through an index, so the cost should not depend on
the thread's size or the page's depth (the middle page pays one more lookup: its cursor's key).
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from openai import AsyncOpenAI, OpenAI

from bench.common import (
    API_KEY,
    Latency,
    Result,
    arg_parser,
    assistd_server,
    client_for,
    fake_upstream_process,
    print_results,
    write_json,
)

TARGET_P50_MS = 10.0
# "Flat": within a quarter of the reference.
FLAT_RATIO = 1.25


async def _seed(base_url: str, thread_id: str, count: int, concurrency: int) -> list[str]:
    """Post ``count`` messages to the thread; returns their ids in the order they were created."""
    ids: list[str] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(count):
        queue.put_nowait(i)

    async def poster(client: AsyncOpenAI) -> None:
        while not queue.empty():
            i = queue.get_nowait()
            role = "user" if i % 2 == 0 else "assistant"
            message = await client.beta.threads.messages.create(
                thread_id, role=role, content=f"Message number {i} of the benchmark thread."
            )
            ids.append(message.id)

    async with AsyncOpenAI(base_url=base_url, api_key=API_KEY, max_retries=2, timeout=60) as client:
        await asyncio.gather(*(poster(client) for _ in range(concurrency)))
    return ids


def _time_list(
    client: OpenAI, thread_id: str, calls: int, warmup: int, after: str | None = None, limit: int = 20
) -> Latency:
    latency = Latency()
    for i in range(warmup + calls):
        start = time.perf_counter()
        if after is None:
            page = client.beta.threads.messages.list(thread_id, limit=limit)
        else:
            page = client.beta.threads.messages.list(thread_id, limit=limit, after=after)
        elapsed = time.perf_counter() - start
        if not page.data:
            raise RuntimeError(f"empty page from thread {thread_id}")
        if i >= warmup:
            latency.add(elapsed)
    return latency


def run(big: int = 10_000, small: int = 10, calls: int = 200, warmup: int = 20) -> Result:
    result = Result(
        "list_messages",
        f"messages.list(limit=20): thread of {big:,} vs {small} messages "
        f"(n={calls} each, warm-up {warmup} excluded)",
    )
    with (
        fake_upstream_process() as (fake_url, _),
        assistd_server(fake_url) as server,
        client_for(server) as client,
    ):
        big_thread = client.beta.threads.create().id
        seeded_at = time.perf_counter()
        ids = asyncio.run(_seed(server.base_url, big_thread, big, concurrency=8))
        seed_seconds = time.perf_counter() - seeded_at
        small_thread = client.beta.threads.create(
            messages=[{"role": "user", "content": f"Message number {i}."} for i in range(small)]
        ).id

        middle = ids[len(ids) // 2]
        deep_page = client.beta.threads.messages.list(big_thread, limit=20, after=middle)
        first_page = client.beta.threads.messages.list(big_thread, limit=20)
        small_page = client.beta.threads.messages.list(small_thread, limit=20)
        if len(deep_page.data) != 20 or not deep_page.has_more or len(first_page.data) != 20:
            raise RuntimeError("unexpected pages from the big thread")
        if len(small_page.data) != small or small_page.has_more:
            raise RuntimeError("unexpected page from the small thread")

        big_first = _time_list(client, big_thread, calls, warmup)
        big_deep = _time_list(client, big_thread, calls, warmup, after=middle)
        small_first = _time_list(client, small_thread, calls, warmup)
        # The small thread's page holds 10 messages: the same count from the big thread, to compare
        # the cost of the thread's size rather than of the page's.
        big_ten = _time_list(client, big_thread, calls, warmup, limit=small)

    size = f"{big // 1000}k" if big >= 1000 else str(big)
    result.metric(f"{size} thread, first page p50", big_first.p50, "ms", at_most=TARGET_P50_MS)
    result.metric(f"{size} thread, first page p99", big_first.p99, "ms")
    result.metric(f"{size} thread, middle page p50", big_deep.p50, "ms", at_most=TARGET_P50_MS)
    result.metric(f"{size} thread, middle page p99", big_deep.p99, "ms")
    result.metric(f"{small}-msg thread, page p50", small_first.p50, "ms", at_most=TARGET_P50_MS)
    result.metric(f"{small}-msg thread, page p99", small_first.p99, "ms")
    result.metric(f"{size} thread, {small} items p50", big_ten.p50, "ms")
    # Flat cost: depth in the big thread, and the thread's size for the same number of items.
    depth_ratio = big_deep.p50 / big_first.p50
    size_ratio = big_ten.p50 / small_first.p50
    result.metric("middle/first page p50", depth_ratio, "x", at_most=FLAT_RATIO)
    result.metric(f"{size}/{small}-msg thread p50", size_ratio, "x", at_most=FLAT_RATIO)
    result.details = {
        "seed_messages": big,
        "seed_seconds": round(seed_seconds, 2),
        "seed_messages_per_s": round(big / seed_seconds, 1),
        "big_first_page": big_first.summary(),
        "big_middle_page": big_deep.summary(),
        "small_first_page": small_first.summary(),
        "big_first_page_same_count_as_small": big_ten.summary(),
        "middle_over_first_p50": round(depth_ratio, 3),
        "big_over_small_same_count_p50": round(size_ratio, 3),
    }
    result.notes.append(f"seeded {big:,} messages through the API in {seed_seconds:.1f} s")
    return result


def main() -> None:
    parser = arg_parser(__doc__ or "")
    parser.add_argument("--messages", type=int, default=10_000, help="size of the big thread")
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    big = 1_000 if args.quick else args.messages
    calls = 30 if args.quick else args.calls
    results = [run(big=big, calls=calls, warmup=5 if args.quick else 20)]
    print_results(results)
    write_json(args.json, results)


if __name__ == "__main__":
    main()
