"""Latency of ``client.beta.threads.runs.create_and_poll`` on fresh threads, one run at a time.

The upstream is ``tests/fake_upstream.py --instant`` in its own process. Its own cost per chat request
(a streaming Chat Completions call made with the SDK straight to the fake) is measured the same way and
its p50 subtracted, which leaves what assistd adds on top of the model.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from openai import OpenAI

from bench.common import (
    MODEL,
    Latency,
    Result,
    arg_parser,
    assistd_server,
    client_for,
    create_assistant,
    fake_upstream_process,
    print_results,
    write_json,
)

TARGET_OVER_UPSTREAM_MS = 50.0


def upstream_latency(base_url: str, runs: int, warmup: int) -> Latency:
    """What one streaming chat request to the fake costs, measured with the SDK as assistd calls it."""
    latency = Latency()
    with OpenAI(base_url=base_url, api_key="sk-upstream-bench", max_retries=0, timeout=30) as fake:
        for i in range(warmup + runs):
            start = time.perf_counter()
            stream = fake.chat.completions.create(
                model=MODEL,
                messages=[
                    {"role": "system", "content": "You are the assistant of a benchmark."},
                    {"role": "user", "content": "Hello"},
                ],
                stream=True,
                stream_options={"include_usage": True},
            )
            for _ in stream:
                pass
            if i >= warmup:
                latency.add(time.perf_counter() - start)
    return latency


def run(runs: int = 200, warmup: int = 20) -> Result:
    result = Result(
        "create_and_poll",
        f"sequential runs.create_and_poll on fresh threads (n={runs}, warm-up {warmup} excluded)",
    )
    with fake_upstream_process() as (fake_url, _), assistd_server(fake_url) as server:
        upstream = upstream_latency(fake_url, runs, warmup)
        total = Latency()
        with client_for(server) as client:
            assistant_id = create_assistant(client)
            for i in range(warmup + runs):
                thread = client.beta.threads.create(messages=[{"role": "user", "content": "Hello"}])
                start = time.perf_counter()
                finished = client.beta.threads.runs.create_and_poll(
                    thread_id=thread.id, assistant_id=assistant_id
                )
                elapsed = time.perf_counter() - start
                if finished.status != "completed":
                    raise RuntimeError(f"run {finished.id} ended {finished.status}: {finished.last_error}")
                if i >= warmup:
                    total.add(elapsed)
    over_p50 = total.p50 - upstream.p50
    over_p99 = total.p99 - upstream.p50
    result.metric("total p50", total.p50, "ms")
    result.metric("total p99", total.p99, "ms")
    result.metric("upstream alone p50", upstream.p50, "ms")
    result.metric("over upstream p50", over_p50, "ms", at_most=TARGET_OVER_UPSTREAM_MS)
    result.metric("over upstream p99", over_p99, "ms")
    result.details = {
        "total": total.summary(),
        "upstream_alone": upstream.summary(),
        "over_upstream_p50_ms": round(over_p50, 3),
        "over_upstream_p99_ms": round(over_p99, 3),
    }
    return result


def main() -> None:
    parser = arg_parser(__doc__ or "")
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    runs = 20 if args.quick else args.runs
    results = [run(runs=runs, warmup=5 if args.quick else 20)]
    print_results(results)
    write_json(args.json, results)


if __name__ == "__main__":
    main()
