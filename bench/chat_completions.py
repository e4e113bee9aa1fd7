"""Chat Completions: what ``POST /v1/chat/completions`` adds to the upstream's own time.

One fake upstream (``FakeUpstream``, in this process) answers every model call with the same reply; one
``assistd serve`` (static key, no rate limit) relays it. Each iteration asks the upstream directly and
through assistd, which of the two goes first alternating, so that a slow moment of the shared machine falls
on both. Read as raw HTTP (``httpx``), so that the figures are the server's share, not the SDK's parsing:

- *non-streamed*: ``POST /v1/chat/completions`` read to the end, against the call assistd makes of the
  upstream (a streamed Chat Completions request with ``include_usage``, read to ``[DONE]``), made directly.
- *streamed, first token*: ``stream: true`` until the first chunk with content, against the same stream
  read straight from the upstream; the upstream sends its role chunk at once and its first content chunk
  ``chunk_delay`` later.

"Over upstream" is the difference of the two p50s; "per pair" the p50 / p95 of each iteration's own
difference. *SDK*: ``client.chat.completions.create`` through assistd against the same non-streamed call
made by the SDK straight to the upstream: what an application sees, its own parsing on both sides.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
from openai import OpenAI

from bench.common import (
    API_KEY,
    MODEL,
    Latency,
    Result,
    arg_parser,
    assistd_server,
    print_results,
    write_json,
)
from fake_upstream import FakeUpstream, Text

CHUNKS = ["Hello", " from", " the", " bench."]
MESSAGES = [{"role": "system", "content": "You are a benchmark."}, {"role": "user", "content": "Hello"}]
TARGET_MS = 3.0


def _timed_post(http: httpx.Client, body: dict[str, Any]) -> float:
    start = time.perf_counter()
    answer = http.post("/chat/completions", json=body)
    elapsed = time.perf_counter() - start
    if answer.status_code != 200:
        raise RuntimeError(f"POST /chat/completions: {answer.status_code} {answer.text[:300]}")
    return elapsed


def _upstream_alone(upstream: httpx.Client) -> float:
    """The upstream call assistd makes, made directly: streamed with usage, read to ``[DONE]``."""
    body = {"model": MODEL, "messages": MESSAGES, "stream": True, "stream_options": {"include_usage": True}}
    start = time.perf_counter()
    with upstream.stream("POST", "/chat/completions", json=body) as answer:
        for _ in answer.iter_lines():
            pass
    return time.perf_counter() - start


def _assistd_completion(http: httpx.Client) -> float:
    return _timed_post(http, {"model": MODEL, "messages": MESSAGES})


def _first_token(http: httpx.Client) -> float:
    """Request -> the first chunk with content, read to the end of the stream; in seconds."""
    body = {"model": MODEL, "messages": MESSAGES, "stream": True, "stream_options": {"include_usage": True}}
    start = time.perf_counter()
    first = None
    last = ""
    with http.stream("POST", "/chat/completions", json=body) as answer:
        for line in answer.iter_lines():
            if first is None and line.startswith("data: {") and '"content":"H' in line:
                first = time.perf_counter()
            if line:
                last = line
    if first is None or last != "data: [DONE]":
        raise RuntimeError(f"chat completion stream ended {last!r}")
    return first - start


def _sdk_pair(client: OpenAI, direct: OpenAI) -> tuple[float, float]:
    start = time.perf_counter()
    through = client.chat.completions.create(model=MODEL, messages=MESSAGES)  # type: ignore[arg-type]
    middle = time.perf_counter()
    alone = direct.chat.completions.create(model=MODEL, messages=MESSAGES)  # type: ignore[arg-type]
    end = time.perf_counter()
    if through.choices[0].message.content != alone.choices[0].message.content:
        raise RuntimeError("assistd's answer is not the upstream's")
    return middle - start, end - middle


def _side_by_side(i: int, alone: Callable[[], float], through: Callable[[], float]) -> tuple[float, float]:
    """The upstream alone and through assistd, in an order that alternates between iterations, so that
    neither always runs on a machine the other just woke."""
    if i % 2 == 0:
        first = alone()
        return first, through()
    second = through()
    return alone(), second


def _record(alone: float, through: float, upstream: Latency, assistd: Latency, over: Latency) -> None:
    upstream.add(alone)
    assistd.add(through)
    over.add(through - alone)


def run(calls: int = 400, streams: int = 200, warmup: int = 30, chunk_delay: float = 0.02) -> Result:
    result = Result(
        "chat_completions",
        f"POST /v1/chat/completions over the upstream's own time: {calls} non-streamed pairs, {streams} "
        f"streamed (warm-up {warmup} of each excluded), upstream first content chunk {chunk_delay * 1000:g} "
        "ms after its role chunk when streaming",
    )
    upstream, assistd, pairs = Latency(), Latency(), Latency()
    first, first_alone, first_over = Latency(), Latency(), Latency()
    sdk_through, sdk_alone = Latency(), Latency()
    fake = FakeUpstream(record=False, default=Text("".join(CHUNKS), chunks=CHUNKS))
    fake.start()
    headers = {"Authorization": f"Bearer {API_KEY}"}
    try:
        with (
            assistd_server(fake.base_url) as server,
            httpx.Client(base_url=server.base_url, headers=headers, timeout=60) as http,
            httpx.Client(base_url=fake.base_url, timeout=60) as direct_http,
            OpenAI(base_url=server.base_url, api_key=API_KEY, max_retries=0) as client,
            OpenAI(base_url=fake.base_url, api_key="sk-upstream-bench", max_retries=0) as direct,
        ):
            for i in range(warmup + calls):
                alone, through = _side_by_side(
                    i, lambda: _upstream_alone(direct_http), lambda: _assistd_completion(http)
                )
                if i >= warmup:
                    _record(alone, through, upstream, assistd, pairs)
            for i in range(warmup + calls // 2):
                through, alone = _sdk_pair(client, direct)
                if i >= warmup:
                    sdk_through.add(through)
                    sdk_alone.add(alone)
            fake.default = Text("".join(CHUNKS), chunks=CHUNKS, chunk_delay_s=chunk_delay)
            for i in range(warmup + streams):
                alone, through = _side_by_side(
                    i, lambda: _first_token(direct_http), lambda: _first_token(http)
                )
                if i >= warmup:
                    _record(alone, through, first_alone, first, first_over)
    finally:
        fake.stop()
    result.metric("create: upstream alone p50", upstream.p50, "ms")
    result.metric("create: through assistd p50", assistd.p50, "ms")
    result.metric("create: through assistd p95", assistd.p(95), "ms")
    result.metric("create: over upstream p50", assistd.p50 - upstream.p50, "ms", at_most=TARGET_MS)
    result.metric("create: over upstream per pair p50", pairs.p50, "ms", at_most=TARGET_MS)
    result.metric("create: over upstream per pair p95", pairs.p(95), "ms")
    result.metric("stream: first token, upstream alone p50", first_alone.p50, "ms")
    result.metric("stream: first token through assistd p50", first.p50, "ms")
    result.metric(
        "stream: first token over upstream p50", first.p50 - first_alone.p50, "ms", at_most=TARGET_MS
    )
    result.metric("stream: first token over upstream per pair p50", first_over.p50, "ms", at_most=TARGET_MS)
    result.metric("stream: first token over upstream per pair p95", first_over.p(95), "ms")
    result.metric("sdk create: over upstream p50", sdk_through.p50 - sdk_alone.p50, "ms")
    result.details = {
        "upstream_alone": upstream.summary(),
        "through_assistd": assistd.summary(),
        "over_upstream_per_pair": pairs.summary(),
        "stream_first_token_upstream_alone": first_alone.summary(),
        "stream_first_token_through_assistd": first.summary(),
        "stream_first_token_over_upstream_per_pair": first_over.summary(),
        "sdk_through_assistd": sdk_through.summary(),
        "sdk_upstream_alone": sdk_alone.summary(),
        "chunk_delay_s": chunk_delay,
    }
    return result


def main() -> None:
    parser = arg_parser(__doc__ or "")
    parser.add_argument("--calls", type=int, default=400, help="non-streamed pairs")
    parser.add_argument("--streams", type=int, default=200, help="streamed completions")
    args = parser.parse_args()
    calls, streams, warmup = (40, 20, 5) if args.quick else (args.calls, args.streams, 30)
    results = [run(calls, streams, warmup)]
    print_results(results)
    write_json(args.json, results)


if __name__ == "__main__":
    main()
