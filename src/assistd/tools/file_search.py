"""The file_search tool: offered to the model as a search function, run by assistd over the vector stores
of the run's assistant and thread, its results numbered so that the model can cite them."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

from pydantic import TypeAdapter
from sqlalchemy import select

from ..protocol.vector_stores import Filter
from ..retrieval.search import Passage, Retriever
from ..store import runs as run_store
from ..store import vector_stores as store
from ..store.database import Database
from ..store.models import (
    MessageRow,
    RunRow,
    VectorStoreFileRow,
    VectorStoreRow,
)
from .citations import Source

NAME = "file_search"
DEFAULT_MAX_RESULTS = 20
# A run waits this long for files still being ingested into its stores before it searches without them.
INGESTION_WAIT_SECONDS = 60.0
# Passages shown to the model are cut to this many characters each, to keep the prompt bounded.
PASSAGE_CHARS = 2400

DEFINITION: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": NAME,
        "description": (
            "Search the files the user provided for passages relevant to the question. Returns numbered "
            "passages. Cite each fact taken from a passage with its number in square brackets, e.g. [1]."
        ),
        "parameters": {
            "type": "object",
            "properties": {
                "queries": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "One or more search queries, each a short question or key phrase.",
                }
            },
            "required": ["queries"],
        },
    },
}


@dataclass(frozen=True)
class Outcome:
    """What a call found: its step's wire results, the text the model reads, and its numbered sources."""

    results: list[dict[str, Any]]
    output: str
    sources: dict[int, Source]
    # Each result's file's attributes (in ``results``' order): kept beside the step's wire results, which
    # have no place for them in the Assistants API, for a response's ``file_search_call`` results.
    attributes: list[dict[str, Any]] = field(default_factory=list)


def options(tools: list[dict[str, Any]]) -> dict[str, Any]:
    for tool in tools:
        if tool.get("type") == NAME:
            return dict(tool.get(NAME) or {})
    return {}


_FILTER: TypeAdapter[Filter] = TypeAdapter(Filter)


def filters_of(tools: list[dict[str, Any]]) -> Filter | None:
    """The attribute filter of the run's search (a response's ``filters``), as the search endpoint's."""
    given = options(tools).get("filters")
    return _FILTER.validate_python(given) if given else None


def ranking_options(tools: list[dict[str, Any]]) -> dict[str, Any]:
    ranking = options(tools).get("ranking_options") or {}
    return {
        "ranker": "default_2024_08_21" if ranking.get("ranker") in (None, "auto") else ranking["ranker"],
        "score_threshold": float(ranking.get("score_threshold", 0.0)),
    }


def queries_of(arguments: str) -> list[str]:
    try:
        parsed = json.loads(arguments or "{}")
    except json.JSONDecodeError:
        return [arguments.strip()] if arguments.strip() else []
    value = parsed.get("queries", parsed.get("query")) if isinstance(parsed, dict) else parsed
    items = value if isinstance(value, list) else [value]
    return [str(item).strip() for item in items if isinstance(item, str | int | float) and str(item).strip()]


class FileSearch:
    def __init__(self, db: Database, retriever: Retriever) -> None:
        self._db = db
        self._retriever = retriever

    async def __call__(self, run: RunRow, arguments: str, first_source: int, search: int) -> Outcome:
        """Passages numbered from ``first_source``; ``search`` is the call's place among the run's searches
        that found passages, for the markers that cite them."""
        # Small models sometimes call the tool without a query: the user's last question stands in for it.
        queries = queries_of(arguments) or await self._last_question(run)
        if not queries:
            return Outcome([], "No query was given: call file_search with a list of queries.", {})
        stores = await self._stores(run)
        if not stores:
            return Outcome([], "No files are available to search.", {})
        opts = options(run.tools)
        ranking = ranking_options(run.tools)
        async with self._retriever.query(queries) as query:
            await self._wait_for_ingestion([row.id for row in stores])
            passages = await self._retriever.search(
                stores,
                query,
                max_results=int(opts.get("max_num_results") or DEFAULT_MAX_RESULTS),
                filters=filters_of(run.tools),
                score_threshold=ranking["score_threshold"],
            )
        if store.needs_touch(stores):
            async with self._db.write() as session:
                await store.touch(session, await _reload(session, stores))
        return _outcome(passages, first_source, search)

    async def _last_question(self, run: RunRow) -> list[str]:
        async with self._db.read() as session:
            row = await session.scalar(
                select(MessageRow)
                .where(MessageRow.thread_id == run.thread_id, MessageRow.role == "user")
                .order_by(MessageRow.pk.desc())
                .limit(1)
            )
        if row is None:
            return []
        text = " ".join(p["text"]["value"] for p in row.content if p.get("type") == "text").strip()
        return [text] if text else []

    async def _stores(self, run: RunRow) -> list[VectorStoreRow]:
        async with self._db.read() as session:
            ids = await run_store.tool_resource_ids(session, run, NAME, "vector_store_ids")
            if not ids:
                return []
            rows = (
                await session.scalars(
                    select(VectorStoreRow).where(
                        VectorStoreRow.id.in_(ids), VectorStoreRow.tenant == run.tenant
                    )
                )
            ).all()
            return [row for row in rows if not store.is_expired(row)]

    async def _wait_for_ingestion(self, store_ids: list[str]) -> None:
        deadline = time.monotonic() + INGESTION_WAIT_SECONDS
        while time.monotonic() < deadline:
            async with self._db.read() as session:
                pending = await session.scalar(
                    select(VectorStoreFileRow.file_id)
                    .where(
                        VectorStoreFileRow.vector_store_id.in_(store_ids),
                        VectorStoreFileRow.status == "in_progress",
                    )
                    .limit(1)
                )
            if pending is None:
                return
            await asyncio.sleep(0.1)


async def _reload(session: Any, stores: list[VectorStoreRow]) -> list[VectorStoreRow]:
    rows = await session.scalars(select(VectorStoreRow).where(VectorStoreRow.id.in_([s.id for s in stores])))
    return list(rows.all())


def _outcome(passages: list[Passage], first_source: int, search: int) -> Outcome:
    if not passages:
        return Outcome([], "No passages matched the query.", {})
    sources: dict[int, Source] = {}
    blocks = []
    results = []
    for rank, passage in enumerate(passages):
        number = first_source + rank
        sources[number] = Source(passage.file_id, passage.text, passage.filename, search, rank)
        blocks.append(f"[{number}] {passage.filename}\n{passage.text[:PASSAGE_CHARS]}")
        results.append(
            {
                "file_id": passage.file_id,
                "file_name": passage.filename,
                "score": passage.score,
                "content": [{"type": "text", "text": passage.text}],
            }
        )
    output = (
        "\n\n".join(blocks)
        + "\n\nAnswer from these passages. Cite each fact with its passage number in square brackets, e.g. "
        + f"[{first_source}]."
    )
    return Outcome(results, output, sources, [dict(passage.attributes) for passage in passages])
