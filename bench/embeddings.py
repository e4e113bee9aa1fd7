"""``POST /v1/embeddings`` with the bundled models: embeddings per second, through HTTP and alone.

Inputs are the 179 questions of the Python FAQ (``bench/data/python_faq.json``, 5 to 20 tokens each), in a
shuffled order. For each bundled model (``minilm``, the default, and ``static``) a real server is started
without an upstream (``ASSISTD_LOCAL_EMBEDDINGS`` naming the model, the local chat model off) and driven with
the official SDK, one request at a time:

* *single*: one question per request;
* *batch of 64*: 64 questions per request;
* *8 clients, single*: 8 threads, each sending single questions, for the same number of inputs.

The SDK asks for base64 and decodes it, as it does by default; *batch of 64, float* asks for JSON floats.
Embeddings/s = inputs embedded / wall time; latency is one SDK call's. *Model alone* calls the embedder's
``encode`` in this process on the same inputs (one at a time, then 64 at a time): the model's own rate, with
no HTTP, JSON or thread hop.
"""

from __future__ import annotations

import json
import random
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from openai import OpenAI

from assistd.retrieval.embeddings import StaticEmbedder
from assistd.retrieval.transformer import TransformerEmbedder
from bench.common import Latency, Result, arg_parser, assistd_server, client_for, print_results, write_json

DATA = Path(__file__).resolve().parent / "data"
BATCH = 64
CLIENTS = 8
MODELS = {"minilm": "all-minilm-l6-v2", "static": "minilm-l6-v2-static-256"}


def questions(count: int) -> list[str]:
    faq = json.loads((DATA / "python_faq.json").read_text(encoding="utf-8"))
    texts = [entry["question"] for entry in faq]
    random.Random(18).shuffle(texts)
    return [texts[i % len(texts)] for i in range(count)]


def timed(calls: Sequence[Callable[[], object]], workers: int = 1) -> tuple[float, Latency]:
    """Wall seconds of all ``calls`` and each one's latency, ``workers`` at a time."""
    latency = Latency()

    def one(call: Callable[[], object]) -> None:
        started = time.perf_counter()
        call()
        latency.add(time.perf_counter() - started)

    started = time.perf_counter()
    if workers == 1:
        for call in calls:
            one(call)
    else:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(one, calls))
    return time.perf_counter() - started, latency


def _record(result: Result, label: str, inputs: int, wall: float, latency: Latency | None) -> None:
    result.metric(f"{label}: embeddings/s", round(inputs / wall, 1), "1/s")
    if latency is not None:
        result.metric(f"{label}: p50 latency", round(latency.p50, 2), "ms")
        result.details[label] = latency.summary() | {"inputs": inputs, "wall_s": round(wall, 3)}


def run(kind: str, singles: int, batches: int) -> Result:
    model = MODELS[kind]
    result = Result(f"embeddings[{kind}]", f"POST /v1/embeddings with {model}, and the model alone")
    texts = questions(max(singles, batches * BATCH))
    groups = [texts[i * BATCH : (i + 1) * BATCH] for i in range(batches)]
    with assistd_server(None, local_embeddings=kind, local_default_model="false") as server:
        client: OpenAI = client_for(server)
        warm = [client.embeddings.create(model=model, input=texts[:BATCH]) for _ in range(3)]
        assert len(warm[0].data) == BATCH
        single = [lambda t=t: client.embeddings.create(model=model, input=t) for t in texts[:singles]]
        wall, latency = timed(single)
        _record(result, "HTTP single", singles, wall, latency)
        batch = [lambda g=g: client.embeddings.create(model=model, input=g) for g in groups]
        wall, latency = timed(batch)
        _record(result, f"HTTP batch of {BATCH}", batches * BATCH, wall, latency)
        floats = [
            lambda g=g: client.embeddings.create(model=model, input=g, encoding_format="float")
            for g in groups
        ]
        wall, latency = timed(floats)
        _record(result, f"HTTP batch of {BATCH}, float", batches * BATCH, wall, latency)
        wall, latency = timed(single, workers=CLIENTS)
        _record(result, f"HTTP {CLIENTS} clients, single", singles, wall, latency)
    embedder = TransformerEmbedder() if kind == "minilm" else StaticEmbedder()
    embedder.encode(texts[:BATCH])
    wall, latency = timed([lambda t=t: embedder.encode([t]) for t in texts[:singles]])
    _record(result, "model alone, single", singles, wall, latency)
    wall, latency = timed([lambda g=g: embedder.encode(g) for g in groups])
    _record(result, f"model alone, batch of {BATCH}", batches * BATCH, wall, latency)
    return result


def main() -> None:
    parser = arg_parser(__doc__ or "")
    parser.add_argument("--singles", type=int, default=400, help="single-input requests per figure")
    parser.add_argument("--batches", type=int, default=20, help=f"requests of {BATCH} inputs per figure")
    parser.add_argument("--model", choices=sorted(MODELS), action="append", help="default: both")
    args = parser.parse_args()
    singles, batches = (40, 3) if args.quick else (args.singles, args.batches)
    results = [run(kind, singles, batches) for kind in args.model or ["minilm", "static"]]
    print_results(results)
    write_json(args.json, results)


if __name__ == "__main__":
    main()
