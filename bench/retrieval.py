"""file_search retrieval: recall@1, recall@5 and MRR of dense, keyword and fused (hybrid) search on the
Python FAQ; ingestion chunks/s; search latency at about 1,000 and 100,000 chunks.

*Quality.* The corpus is ``bench/data/python_faq.json`` (the 179 questions and answers of the Python 3.11
FAQ, written by the Python documentation's authors; ``bench/data/build_faq.py``) and
``bench/data/python_tutorial.json`` (the 130 sections of the Python tutorial, as distractors no question
points to). Every passage is uploaded as a file of its own holding only its text (never a question or a
heading), the files go into one vector store through a file batch with the default chunking, and each FAQ
question is sent to ``vector_stores.search(max_num_results=10, extra_body={"search_mode": mode})``, where
``search_mode`` (assistd's extension) is ``dense``, ``keyword`` or ``hybrid`` (the default: both, fused).
A question's answer is the file of its own FAQ entry. Results are chunks; they are read in order as a list of
files (a file's later chunks do not count again), so rank 1 = the first result's file is the answer.
recall@k = share of questions whose answer is within the first k files; MRR = mean of 1/rank (0 past the
10 results).

*Speed.* A second store holds the FAQ's answers and filler documents cut into small chunks (static,
100 tokens, no overlap). The filler is the text of the library reference (``library/*.html`` of the same
``python3.11-doc`` package): its sections in their order first, then its sentences shuffled (a fixed seed),
so every chunk is new text that no cache has embedded. The store is filled to about 1,000 chunks, searched
(the FAQ's questions, each mode, warm-up excluded), then with ``--large`` grown to 100,000 chunks and
searched again. Chunks are counted in the database the server writes (the API has no chunk counts).
Ingestion chunks/s = the chunks a batch added / the time from its creation to its ``completed``
status, seen by polling ``file_batches.retrieve``. Search latency is the SDK call's time at the client,
one query at a time.

``--dry`` checks the metric code without a server: it ranks the same corpus with a plain BM25 written
here and prints its figures.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import re
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from openai import OpenAI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import create_async_engine

from assistd.store.database import async_url
from assistd.store.models import ChunkRow
from bench.common import (
    Latency,
    Result,
    arg_parser,
    assistd_server,
    client_for,
    print_results,
    write_json,
)
from bench.data import build_faq

DATA = Path(__file__).resolve().parent / "data"
MODES = ("dense", "keyword", "hybrid")
DEFAULT_MODE = "hybrid"
TOP_K = 10
TARGET_RECALL_AT_5 = 0.9
TARGET_LARGE_P50_MS = 20.0
SMALL_CHUNKS: dict[str, Any] = {
    "type": "static",
    "static": {"max_chunk_size_tokens": 100, "chunk_overlap_tokens": 0},
}
FILLER_DOC_CHARS = 64_000
# A file batch takes at most 2,000 files (the API's limit).
BATCH_FILES = 2_000
SEED = 20_231_122


# --------------------------------------------------------------------------------------------------
# Corpus and metrics
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Passage:
    id: str
    text: str


@dataclass(frozen=True)
class Question:
    text: str
    answer: str  # the id of the passage that answers it


def load_corpus() -> tuple[list[Question], list[Passage]]:
    """The FAQ's questions, and every passage to index: the FAQ's answers, then the tutorial's sections."""
    faq = json.loads((DATA / "python_faq.json").read_text(encoding="utf-8"))
    tutorial = json.loads((DATA / "python_tutorial.json").read_text(encoding="utf-8"))
    questions = [Question(e["question"], f"faq:{e['id']}") for e in faq]
    passages = [Passage(f"faq:{e['id']}", e["answer"]) for e in faq]
    passages += [Passage(f"tutorial:{e['id']}", e["text"]) for e in tutorial]
    return questions, passages


def rank_of(answer: str, results: Sequence[str]) -> int | None:
    """1-based rank of ``answer`` among the distinct documents of ``results`` (in order), None if absent."""
    seen: list[str] = []
    for doc in results:
        if doc not in seen:
            seen.append(doc)
            if doc == answer:
                return len(seen)
    return None


@dataclass
class Quality:
    ranks: list[int | None] = field(default_factory=list)

    def recall(self, k: int) -> float:
        return sum(1 for r in self.ranks if r is not None and r <= k) / len(self.ranks)

    @property
    def mrr(self) -> float:
        return sum(1.0 / r for r in self.ranks if r is not None) / len(self.ranks)

    def summary(self) -> dict[str, float | int]:
        return {
            "questions": len(self.ranks),
            "recall_at_1": round(self.recall(1), 4),
            "recall_at_5": round(self.recall(5), 4),
            "recall_at_10": round(self.recall(10), 4),
            "mrr": round(self.mrr, 4),
        }


_WORD = re.compile(r"\w+")


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def bm25_ranker(passages: Sequence[Passage], k1: float = 1.2, b: float = 0.75) -> Any:
    """A plain BM25 over ``passages``: ``rank(query, k)`` -> the ids of the best ``k``. For ``--dry`` only."""
    docs = [Counter(_words(p.text)) for p in passages]
    lengths = [sum(d.values()) for d in docs]
    average = sum(lengths) / len(lengths)
    df: Counter[str] = Counter()
    for d in docs:
        df.update(d.keys())
    n = len(docs)
    idf = {w: math.log(1 + (n - c + 0.5) / (c + 0.5)) for w, c in df.items()}

    def rank(query: str, k: int) -> list[str]:
        terms = set(_words(query))
        scores = []
        for p, d, length in zip(passages, docs, lengths, strict=True):
            s = 0.0
            for t in terms:
                tf = d.get(t, 0)
                if tf:
                    s += idf[t] * tf * (k1 + 1) / (tf + k1 * (1 - b + b * length / average))
            scores.append((s, p.id))
        scores.sort(key=lambda x: -x[0])
        return [pid for s, pid in scores[:k] if s > 0]

    return rank


def dry() -> Result:
    questions, passages = load_corpus()
    rank = bm25_ranker(passages)
    quality = Quality([rank_of(q.answer, rank(q.text, TOP_K)) for q in questions])
    result = Result(
        "retrieval (dry)",
        f"BM25 written in the benchmark, no server: {len(questions)} questions over {len(passages)} passages",
    )
    _quality_metrics(result, "bm25", quality, target=False)
    result.details["bm25"] = quality.summary()
    return result


def _quality_metrics(result: Result, mode: str, quality: Quality, *, target: bool) -> None:
    at_least = TARGET_RECALL_AT_5 if target else None
    result.metric(f"{mode} recall@1", quality.recall(1), "")
    result.metric(f"{mode} recall@5", quality.recall(5), "", at_least=at_least)
    result.metric(f"{mode} MRR", quality.mrr, "")


# --------------------------------------------------------------------------------------------------
# Filler text
# --------------------------------------------------------------------------------------------------


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n{2,}")


def filler_documents(docs_dir: Path, seed: int = SEED) -> Iterator[str]:
    """Endless documents of about ``FILLER_DOC_CHARS`` from the library reference's text.

    First its sections as written, packed in page order; then, round after round, all its sentences
    shuffled, so no document (and hardly any chunk) repeats an earlier one."""
    pages = sorted((docs_dir / "library").glob("*.html"))
    if not pages:
        raise SystemExit(f"{docs_dir}/library not found: install Debian's python3.11-doc")
    sentences: list[str] = []
    pending: list[str] = []
    size = 0
    for page in pages:
        for entry in build_faq.parse_page(page, page.stem):
            pending.append(entry.answer)
            size += len(entry.answer) + 2
            sentences.extend(s for s in _SENTENCE_END.split(entry.answer) if len(s.strip()) >= 20)
            if size >= FILLER_DOC_CHARS:
                yield "\n\n".join(pending)
                pending, size = [], 0
    rng = random.Random(seed)
    while True:
        rng.shuffle(sentences)
        pending, size = [], 0
        for sentence in sentences:
            pending.append(sentence)
            size += len(sentence) + 1
            if size >= FILLER_DOC_CHARS:
                yield " ".join(pending)
                pending, size = [], 0


# --------------------------------------------------------------------------------------------------
# Against the server
# --------------------------------------------------------------------------------------------------


def upload(client: OpenAI, named_texts: Sequence[tuple[str, str]], concurrency: int = 8) -> list[str]:
    """Uploads each (filename, text) as a file; returns their ids in the same order."""

    def one(item: tuple[str, str]) -> str:
        name, text = item
        return client.files.create(file=(name, text.encode(), "text/plain"), purpose="assistants").id

    with ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(one, named_texts))


def count_chunks(database_url: str, store_id: str) -> int:
    async def count() -> int:
        engine = create_async_engine(async_url(database_url))
        try:
            async with engine.connect() as conn:
                query = select(func.count()).select_from(ChunkRow).where(ChunkRow.vector_store_id == store_id)
                return int((await conn.execute(query)).scalar_one())
        finally:
            await engine.dispose()

    return asyncio.run(count())


def ingest(
    client: OpenAI, store_id: str, file_ids: Sequence[str], chunking: dict[str, Any] | None, label: str
) -> float:
    """Adds the files to the store in batches created at once; seconds from the first creation until every
    batch is ``completed``."""
    extra: dict[str, Any] = {} if chunking is None else {"chunking_strategy": chunking}
    started = time.perf_counter()
    batches = [
        client.vector_stores.file_batches.create(
            store_id, file_ids=list(file_ids[i : i + BATCH_FILES]), **extra
        ).id
        for i in range(0, len(file_ids), BATCH_FILES)
    ]
    pending = set(batches)
    last_report = started
    while pending:
        done = 0
        for batch_id in list(pending):
            batch = client.vector_stores.file_batches.retrieve(batch_id, vector_store_id=store_id)
            if batch.status != "in_progress":
                if batch.status != "completed" or batch.file_counts.failed:
                    raise RuntimeError(f"batch {batch_id} ended {batch.status}: {batch.file_counts}")
                pending.discard(batch_id)
            done += batch.file_counts.completed
        now = time.perf_counter()
        if pending and now - last_report >= 10:
            print(f"   {label}: {now - started:.0f} s, files of the pending batches done: {done}", flush=True)
            last_report = now
        if pending:
            time.sleep(0.1)
    return time.perf_counter() - started


def search_files(client: OpenAI, store_id: str, query: str, mode: str) -> list[str]:
    page = client.vector_stores.search(
        store_id, query=query, max_num_results=TOP_K, extra_body={"search_mode": mode}
    )
    return [item.file_id for item in page.data]


def evaluate(
    client: OpenAI, store_id: str, questions: Sequence[Question], file_of: dict[str, str], mode: str
) -> tuple[Quality, Latency]:
    quality, latency = Quality(), Latency()
    for q in questions:
        start = time.perf_counter()
        files = search_files(client, store_id, q.text, mode)
        latency.add(time.perf_counter() - start)
        quality.ranks.append(rank_of(file_of[q.answer], files))
    return quality, latency


def time_searches(
    client: OpenAI, store_id: str, questions: Sequence[Question], mode: str, calls: int, warmup: int
) -> tuple[Latency, float]:
    """Latency of ``calls`` searches (the questions in turn) after ``warmup``; also the first call's ms."""
    latency = Latency()
    first_ms = math.nan
    for i in range(warmup + calls):
        start = time.perf_counter()
        search_files(client, store_id, questions[i % len(questions)].text, mode)
        elapsed = time.perf_counter() - start
        if i == 0:
            first_ms = elapsed * 1000.0
        if i >= warmup:
            latency.add(elapsed)
    return latency, first_ms


@dataclass
class Growth:
    """A store's chunk count, and its ingestion so far (filler only)."""

    chunks: int = 0
    filler_chunks: int = 0
    filler_seconds: float = 0.0
    filler_files: int = 0
    filler_chars: int = 0
    upload_seconds: float = 0.0
    first_guess: float = 400.0


def grow(
    client: OpenAI,
    database_url: str,
    store_id: str,
    growth: Growth,
    documents: Iterator[str],
    target: int,
    label: str,
) -> None:
    """Adds filler documents until the store holds at least ``target`` chunks."""
    while growth.chunks < target:
        # Characters per chunk as seen so far in the filler, else in the store's first files.
        per_chunk = growth.filler_chars / growth.filler_chunks if growth.filler_chunks else growth.first_guess
        want = int((target - growth.chunks) * per_chunk * 1.01) + 1
        texts: list[str] = []
        size = 0
        while size < want:
            # The last document is cut to what is missing, so a small store does not overshoot by a file.
            texts.append(next(documents)[: want - size])
            size += len(texts[-1])
        names = [(f"filler-{growth.filler_files + i:06d}.txt", t) for i, t in enumerate(texts)]
        t0 = time.perf_counter()
        ids = upload(client, names)
        growth.upload_seconds += time.perf_counter() - t0
        print(f"   {label}: uploaded {len(ids)} files ({size / 1e6:.1f} MB), ingesting ...", flush=True)
        seconds = ingest(client, store_id, ids, SMALL_CHUNKS, label)
        chunks = count_chunks(database_url, store_id)
        added = chunks - growth.chunks
        growth.chunks = chunks
        growth.filler_chunks += added
        growth.filler_seconds += seconds
        growth.filler_files += len(ids)
        growth.filler_chars += size
        print(f"   {label}: {chunks:,} chunks (+{added:,} in {seconds:.1f} s)", flush=True)


@dataclass
class KeptStore:
    """The large store of a run made with ``--keep DIR``, described in DIR for the next such run."""

    store_id: str
    embeddings: str | None
    file_of: dict[str, str]
    growth: Growth

    FILE = "large-store.json"

    @classmethod
    def read(cls, keep: Path, embeddings: str | None, target: int) -> KeptStore | None:
        path = keep / cls.FILE
        if not path.is_file():
            return None
        data = json.loads(path.read_text())
        store = cls(data["store_id"], data["embeddings"], data["file_of"], Growth(**data["growth"]))
        return store if store.embeddings == embeddings and store.growth.chunks >= target else None

    def write(self, keep: Path) -> None:
        data = {**asdict(self), "growth": asdict(self.growth)}
        (keep / self.FILE).write_text(json.dumps(data, indent=1))


def _mode_label(mode: str) -> str:
    return f"{mode} (default)" if mode == DEFAULT_MODE else mode


def run(
    *, large: bool = False, calls: int = 200, warmup: int = 10, small_target: int = 1_000,
    large_target: int = 100_000, embeddings: str | None = None, keep: Path | None = None,
) -> Result:  # fmt: skip
    questions, passages = load_corpus()
    sizes = f"{small_target:,}" + (f" and {large_target:,}" if large else "")
    result = Result(
        "retrieval",
        f"file_search: {len(questions)} FAQ questions over {len(passages)} passages; "
        f"search latency at {sizes} chunks (n={calls}, warm-up {warmup} excluded); "
        f"embeddings: {embeddings or 'the server default'}",
    )
    env = {} if embeddings is None else {"local_embeddings": embeddings}
    kept = KeptStore.read(keep, embeddings, large_target) if keep is not None and large else None
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
    with (
        assistd_server(None, data_dir=keep, **env) as server,
        client_for(server, timeout=300) as client,
    ):
        # Quality: one file per passage, default chunking.
        t0 = time.perf_counter()
        names = [(re.sub(r"[^\w.-]+", "_", p.id) + ".txt", p.text) for p in passages]
        ids = upload(client, names)
        upload_seconds = time.perf_counter() - t0
        file_of = {p.id: fid for p, fid in zip(passages, ids, strict=True)}
        store = client.vector_stores.create(name="python-faq")
        seconds = ingest(client, store.id, ids, None, "faq")
        faq_chunks = count_chunks(server.database_url, store.id)
        print(f"   faq: {len(ids)} files, {faq_chunks:,} chunks in {seconds:.1f} s", flush=True)
        qualities: dict[str, Quality] = {}
        for mode in MODES:
            qualities[mode], _ = evaluate(client, store.id, questions, file_of, mode)
            q = qualities[mode]
            print(f"   {mode}: recall@1 {q.recall(1):.3f}, recall@5 {q.recall(5):.3f}, MRR {q.mrr:.3f}")
        result.details["quality_store"] = {
            "files": len(ids),
            "chunks": faq_chunks,
            "upload_files_per_s": round(len(ids) / upload_seconds, 1),
            "ingest_seconds": round(seconds, 2),
            "ingest_chunks_per_s": round(faq_chunks / seconds, 1),
        }
        result.details["quality"] = {mode: q.summary() for mode, q in qualities.items()}

        # Speed: the answers and filler in small chunks.
        answers = [p for p in passages if p.id.startswith("faq:")]
        faq_ids = upload(client, [(f"faq-{i:03d}.txt", p.text) for i, p in enumerate(answers)])
        speed_file_of = {p.id: fid for p, fid in zip(answers, faq_ids, strict=True)}
        speed = client.vector_stores.create(name="speed").id
        ingest(client, speed, faq_ids, SMALL_CHUNKS, "speed")
        answer_chunks = count_chunks(server.database_url, speed)
        growth = Growth(chunks=answer_chunks, first_guess=sum(len(p.text) for p in answers) / answer_chunks)
        documents = filler_documents(build_faq.DOCS)
        sizes_list = [small_target] + ([large_target] if large else [])
        latencies: dict[str, dict[str, Any]] = {}
        for target in sizes_list:
            if target == large_target and kept is not None:
                print(f"   reusing the {kept.growth.chunks:,}-chunk store kept in {keep}", flush=True)
                speed, speed_file_of, growth = kept.store_id, kept.file_of, kept.growth
            else:
                label = f"{target:,}-chunk store"
                grow(client, server.database_url, speed, growth, documents, target, label)
                if keep is not None and target == large_target:
                    KeptStore(speed, embeddings, speed_file_of, growth).write(keep)
            # What any request costs (HTTP, auth, the SDK): a read of the store by its id.
            floor = Latency()
            for i in range(warmup + calls):
                start = time.perf_counter()
                client.vector_stores.retrieve(speed)
                if i >= warmup:
                    floor.add(time.perf_counter() - start)
            at: dict[str, Any] = {"chunks": growth.chunks, "retrieve_store_latency": floor.summary()}
            for mode in MODES:
                latency, first_ms = time_searches(client, speed, questions, mode, calls, warmup)
                quality, _ = evaluate(client, speed, questions, speed_file_of, mode)
                at[mode] = {
                    "latency": latency.summary(),
                    "first_call_ms": round(first_ms, 1),
                    "quality": quality.summary(),
                }
                print(
                    f"   {growth.chunks:,} chunks, {mode}: p50 {latency.p50:.1f} ms, "
                    f"p99 {latency.p99:.1f} ms, first call {first_ms:.0f} ms, "
                    f"recall@5 {quality.recall(5):.3f}",
                    flush=True,
                )
            latencies[str(target)] = at
        result.details["speed_store"] = {
            "chunking": SMALL_CHUNKS,
            "filler_files": growth.filler_files,
            "filler_mb": round(growth.filler_chars / 1e6, 2),
            "filler_chunks": growth.filler_chunks,
            "filler_ingest_seconds": round(growth.filler_seconds, 1),
            "filler_upload_seconds": round(growth.upload_seconds, 1),
        }
        result.details["latency"] = latencies

    for mode in MODES:
        _quality_metrics(result, _mode_label(mode), qualities[mode], target=mode == DEFAULT_MODE)
    rate = growth.filler_chunks / growth.filler_seconds if growth.filler_seconds else math.nan
    result.metric(f"ingestion, {growth.filler_files} filler files (100 tok)", rate, "chunks/s")
    quality_store = result.details["quality_store"]
    result.metric(
        f"ingestion, {quality_store['files']} passage files (default)",
        quality_store["ingest_chunks_per_s"],
        "chunks/s",
    )
    for target in sizes_list:
        at = latencies[str(target)]
        size = f"{at['chunks'] / 1000:,.0f}k" if at["chunks"] >= 10_000 else f"{at['chunks']:,}"
        for mode in MODES:
            summary = at[mode]["latency"]
            limit = TARGET_LARGE_P50_MS if target == large_target and mode == DEFAULT_MODE else None
            result.metric(f"{size} chunks, {mode} p50", summary["p50_ms"], "ms", at_most=limit)
        result.metric(f"{size} chunks, {DEFAULT_MODE} p99", at[DEFAULT_MODE]["latency"]["p99_ms"], "ms")
        result.metric(f"{size} chunks, retrieve store p50", at["retrieve_store_latency"]["p50_ms"], "ms")
    result.notes.append(
        f"quality store: {len(passages)} files ({len(questions)} FAQ answers + distractors), "
        f"{result.details['quality_store']['chunks']:,} chunks (default chunking); "
        f"ingested at {result.details['quality_store']['ingest_chunks_per_s']:,} chunks/s"
    )
    for target in sizes_list:
        at = latencies[str(target)]
        recalls = ", ".join(f"{m} {at[m]['quality']['recall_at_5']:.3f}" for m in MODES)
        result.notes.append(f"{at['chunks']:,}-chunk store (100-token chunks): recall@5 {recalls}")
    if not large:
        result.notes.append("100,000-chunk latency not measured: run with --large")
    return result


def main() -> None:
    parser = arg_parser(__doc__ or "")
    parser.add_argument("--large", action="store_true", help="also grow the store to 100,000 chunks")
    parser.add_argument("--large-chunks", type=int, default=100_000, help="chunks of the large store")
    parser.add_argument("--calls", type=int, default=200, help="timed searches per mode and size")
    parser.add_argument("--dry", action="store_true", help="no server: a BM25 baseline")
    parser.add_argument(
        "--embeddings",
        choices=["minilm", "static"],
        default=None,
        help="the server's ASSISTD_LOCAL_EMBEDDINGS (default: the server's own default)",
    )
    parser.add_argument(
        "--keep",
        type=Path,
        default=None,
        metavar="DIR",
        help="keep the server's data and database in DIR; with --large, a later run with the same DIR and "
        "--embeddings searches the large store built by the first instead of building it again",
    )
    args = parser.parse_args()
    if args.dry:
        results = [dry()]
    else:
        calls = 30 if args.quick else args.calls
        results = [
            run(
                large=args.large,
                calls=calls,
                warmup=3 if args.quick else 10,
                large_target=args.large_chunks,
                embeddings=args.embeddings,
                keep=args.keep,
            )
        ]
    print_results(results)
    write_json(args.json, results)


if __name__ == "__main__":
    main()
