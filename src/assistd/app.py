"""The FastAPI application: settings → database → providers → engine, wired in the lifespan."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from . import __version__
from .api import (
    actions,
    ask,
    assistants,
    errors,
    files,
    health,
    messages,
    metrics,
    models,
    runs,
    threads,
    ui,
    vector_stores,
)
from .api.auth import KeyRing
from .api.nul_guard import NulGuard
from .api.rate_limit import RateLimiter
from .config import Settings
from .engine.engine import Engine
from .engine.relay import claim_process_slot
from .llm.local import LocalProvider, LocalSettings, bundled_model, parse_models
from .llm.registry import ProviderRegistry
from .llm.upstream import UpstreamProvider
from .retrieval.embeddings import build_embedder
from .retrieval.ingest import Ingestor
from .retrieval.ingest_worker import IngestWorker
from .retrieval.search import Retriever
from .sandbox.local import LocalSandbox
from .storage import LocalFileStorage
from .store.database import Database

log = logging.getLogger(__name__)


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


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = Database(settings.resolved_database_url)
        await prepare_schema(db, auto_migrate=settings.auto_migrate)
        providers = build_providers(settings)
        embedder = build_embedder(settings)
        try:
            await embedder.start()
        except Exception:
            # An embeddings service that is down must not keep the rest of the API from starting.
            log.warning("could not start the embedding model; trying again on first use", exc_info=True)
        retriever = Retriever(db, embedder)
        ingest_worker = IngestWorker(settings, db, Ingestor(db, app.state.storage, embedder))
        sandbox_root = None
        if settings.processes > 1:
            # Each process's code sessions get their own folder, and with it their own range of uids.
            slot, app.state.process_slot = claim_process_slot(settings.data_dir / "relay", settings.processes)
            sandbox_root = settings.data_dir / "sandbox" / f"process-{slot}"
        sandbox = LocalSandbox(settings, sandbox_root)
        await sandbox.start()
        engine = Engine(settings, db, providers, retriever, app.state.storage, sandbox)
        app.state.db, app.state.providers, app.state.engine = db, providers, engine
        app.state.retriever, app.state.ingest_worker = retriever, ingest_worker
        await engine.start()
        await ingest_worker.start()
        app.state.ready = True
        try:
            yield
        finally:
            app.state.ready = False
            await ingest_worker.close()
            await embedder.close()
            await engine.close()
            await sandbox.close()
            await providers.close()
            await db.close()

    app = FastAPI(title="assistd", version=__version__, lifespan=lifespan, openapi_url="/openapi.json")
    app.state.settings = settings
    app.state.keyring = KeyRing(settings.api_key_list)
    app.state.limiter = RateLimiter(settings.rate_limit_per_minute, settings.rate_limit_burst).install(app)
    app.state.ready = False
    app.state.storage = LocalFileStorage(settings.data_dir / "files")
    if settings.cors_origin_list:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origin_list,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["openai-poll-after-ms", "retry-after", "x-request-id"],
            max_age=600,
        )
    app.add_middleware(NulGuard)
    errors.install(app)
    # runs before threads: POST /v1/threads/runs must not be taken for POST /v1/threads/{thread_id}.
    routers = (assistants, runs, threads, messages, models, files, vector_stores, actions, ask, ui, health)
    for module in routers:
        app.include_router(module.router)
    if settings.metrics:
        app.include_router(metrics.router)
    return app
