"""The parts of a running assistd, opened and closed in order: the database, the model providers, retrieval,
the file store, the code sandbox and the run engine. ``assistd serve`` opens them in its app's lifespan,
``assistd worker`` on their own, with no HTTP.

What a process does is its role: ``both`` (plain ``serve``, the default: serves HTTP and executes runs and
ingestion), ``api`` (``serve --workers 0``: queues work for others) or ``worker`` (``assistd worker``).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal

from .config import Settings
from .engine.engine import Engine
from .engine.process_slot import claim_process_slot
from .llm.local import LocalProvider, LocalSettings, bundled_model, parse_models
from .llm.registry import ProviderRegistry
from .llm.upstream import UpstreamProvider
from .retrieval.embeddings import build_embedder
from .retrieval.ingest import Ingestor
from .retrieval.ingest_worker import IngestWorker
from .retrieval.search import Retriever
from .sandbox.local import LocalSandbox
from .storage import FileStorage, LocalFileStorage
from .store import jobs
from .store.blob_storage import DatabaseFileStorage
from .store.database import Database

log = logging.getLogger(__name__)

Role = Literal["both", "api", "worker"]


def build_providers(settings: Settings) -> ProviderRegistry:
    upstream = None
    if settings.upstream_base_url:
        key = settings.upstream_api_key.get_secret_value() if settings.upstream_api_key else None
        upstream = UpstreamProvider(
            settings.upstream_base_url,
            key,
            timeout=settings.upstream_timeout_seconds,
            max_retries=settings.upstream_max_retries,
            retry_budget=settings.upstream_retry_budget_seconds,
            retry_base=settings.upstream_retry_base_seconds,
            max_concurrency=settings.upstream_max_concurrency,
        )
    specs = parse_models(settings.local_models)
    if settings.local_default_model and (bundled := bundled_model()) is not None:
        specs.insert(0, bundled)
    local = None
    if specs:
        local = LocalProvider(
            specs,
            LocalSettings(
                context=settings.local_context_tokens,
                parallel=settings.local_parallel,
                threads=settings.local_threads,
                max_tokens=settings.local_max_tokens,
            ),
        )
    return ProviderRegistry(upstream=upstream, local=local, default_model=settings.default_model)


async def prepare_schema(db: Database, *, auto_migrate: bool) -> None:
    """Migrate the schema, or, when deploys migrate it themselves (``ASSISTD_AUTO_MIGRATE=false``), check
    that they did: a schema behind the code stops the start with a message saying what to run."""
    if auto_migrate:
        await db.migrate()
        return
    schema = await db.schema()
    if schema.state == "behind":
        await db.close()
        raise RuntimeError(
            f"assistd: the database schema is at revision {schema.current or 'none'} and this assistd needs "
            f"{schema.head}; ASSISTD_AUTO_MIGRATE is off, so run `assistd migrate` first"
        )
    if schema.state == "ahead":
        log.warning(
            "the database schema is at revision %s, newer than this assistd's %s; serving on",
            schema.current,
            schema.head,
        )


def build_storage(settings: Settings, db: Database) -> FileStorage:
    """Where file bytes live: on this machine's disk with SQLite (one machine by construction), in the
    database with PostgreSQL, so that every host reads what any host stored (no shared disk needed)."""
    if db.is_sqlite:
        return LocalFileStorage(settings.data_dir / "files")
    return DatabaseFileStorage(db, settings.data_dir / "scratch")


@dataclass
class Runtime:
    settings: Settings
    role: Role
    db: Database
    providers: ProviderRegistry
    retriever: Retriever
    storage: FileStorage
    engine: Engine
    ingest_worker: IngestWorker
    # Held while the process runs (its file lock numbers this process among `serve --processes N`).
    process_slot: Any = None


@asynccontextmanager
async def open_runtime(settings: Settings, role: Role = "both") -> AsyncIterator[Runtime]:
    db = Database(settings.resolved_database_url, pool_size=settings.database_pool_size)
    await prepare_schema(db, auto_migrate=settings.auto_migrate)
    providers = build_providers(settings)
    embedder = build_embedder(settings)
    try:
        await embedder.start()
    except Exception:
        # An embeddings service that is down must not keep the rest of the API from starting.
        log.warning("could not start the embedding model; trying again on first use", exc_info=True)
    storage = build_storage(settings, db)
    retriever = Retriever(db, embedder)
    sandbox_root = None
    slot_handle = None
    if settings.processes > 1:
        # Each process's code sessions get their own folder, and with it their own range of uids.
        slot, slot_handle = claim_process_slot(settings.data_dir / "relay", settings.processes)
        sandbox_root = settings.data_dir / "sandbox" / f"process-{slot}"
    sandbox = LocalSandbox(settings, sandbox_root)
    await sandbox.start()
    executes = role != "api"
    engine = Engine(settings, db, providers, retriever, storage, sandbox, role=role)
    ingest_worker = IngestWorker(settings, db, Ingestor(db, storage, embedder), engine.pool.worker_id)
    runtime = Runtime(settings, role, db, providers, retriever, storage, engine, ingest_worker, slot_handle)
    await engine.start()
    if executes:
        engine.bus.on_job(jobs.INGESTION.name, ingest_worker.wake)
        await ingest_worker.start()
    try:
        yield runtime
    finally:
        if executes:
            await ingest_worker.close()
        # Runs finishing within the shutdown grace may still search: the embedder closes after them.
        await engine.close()
        await embedder.close()
        await sandbox.close()
        await providers.close()
        await db.close()
