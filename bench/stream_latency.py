"""Streaming latency: from the moment the upstream sends a content chunk to the moment the client reads
the ``thread.message.delta`` that carries it.

The fake upstream runs in this process (a uvicorn thread) so that both instants are read from the same
clock (``time.perf_counter``): a ``FakeUpstream`` subclass records when it hands each chunk of a stream to
the socket. Its reply streams the role chunk at once, then each content chunk ``--chunk-delay`` later,
so assistd is idle when a content chunk arrives. The client (``runs.create(stream=True)`` with the SDK)
notes when each ``thread.message.delta`` event arrives. The first delta also creates the assistant
message and its run step in the database; later deltas are relayed without a write, and are reported
separately.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    Latency,
    Result,
    arg_parser,
    assistd_server,
    client_for,
    create_assistant,
    print_results,
    write_json,
)
from fake_upstream import FakeUpstream, Text

TARGET_FIRST_DELTA_MS = 10.0
CHUNKS = ["Hello", " from", " the", " bench."]


class TimedFake(FakeUpstream):
    """A fake upstream that notes when it sends each body write of a streamed reply.

    With ``instant=False`` every SSE group is one write: write 0 carries the role chunk, write ``k``
    (1 <= k <= len(chunks)) the ``k``-th content chunk, the last one the finish/usage/[DONE] tail.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sent_at: list[float] = []

    async def _stream(self, send: Any, groups: list[list[bytes]], chunk_delay_s: float) -> None:
        async def timed_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.body":
                self.sent_at.append(time.perf_counter())
            await send(message)

        await super()._stream(timed_send, groups, chunk_delay_s)


def run(streams: int = 100, warmup: int = 10, chunk_delay: float = 0.02) -> Result:
    result = Result(
        "stream_latency",
        f"upstream chunk sent -> thread.message.delta received (n={streams}, warm-up {warmup} excluded)",
    )
    first = Latency()
    later = Latency()
    fake = TimedFake(record=False, default=Text("".join(CHUNKS), chunks=CHUNKS, chunk_delay_s=chunk_delay))
    fake.start()
    try:
        with assistd_server(fake.base_url) as server, client_for(server) as client:
            assistant_id = create_assistant(client)
            for i in range(warmup + streams):
                thread = client.beta.threads.create(messages=[{"role": "user", "content": "Hello"}])
                fake.sent_at.clear()
                received: list[float] = []
                final = None
                stream = client.beta.threads.runs.create(
                    thread_id=thread.id, assistant_id=assistant_id, stream=True
                )
                for event in stream:
                    if event.event == "thread.message.delta":
                        received.append(time.perf_counter())
                    final = event.event
                if final != "thread.run.completed" or len(received) != len(CHUNKS):
                    raise RuntimeError(f"stream ended {final} after {len(received)} deltas")
                sent = fake.sent_at[1 : 1 + len(CHUNKS)]
                if i < warmup:
                    continue
                first.add(received[0] - sent[0])
                for got, at in zip(received[1:], sent[1:], strict=True):
                    later.add(got - at)
    finally:
        fake.stop()
    result.metric("first delta p50", first.p50, "ms", at_most=TARGET_FIRST_DELTA_MS)
    result.metric("first delta p99", first.p99, "ms")
    result.metric("later deltas p50", later.p50, "ms")
    result.metric("later deltas p99", later.p99, "ms")
    result.details = {
        "first_delta": first.summary(),
        "later_deltas": later.summary(),
        "chunk_delay_s": chunk_delay,
    }
    return result


def main() -> None:
    parser = arg_parser(__doc__ or "")
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--chunk-delay", type=float, default=0.02, help="seconds between upstream chunks")
    args = parser.parse_args()
    streams = 15 if args.quick else args.streams
    results = [run(streams=streams, warmup=3 if args.quick else 10, chunk_delay=args.chunk_delay)]
    print_results(results)
    write_json(args.json, results)


if __name__ == "__main__":
    main()
