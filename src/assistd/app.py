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
from .runtime import Role, open_runtime

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        role: Role = "api" if settings.workers == 0 else "both"
        async with open_runtime(settings, role) as runtime:
            app.state.db, app.state.providers, app.state.engine = (
                runtime.db,
                runtime.providers,
                runtime.engine,
            )
            app.state.retriever, app.state.ingest_worker = runtime.retriever, runtime.ingest_worker
            app.state.storage = runtime.storage
            app.state.ready = True
            try:
                yield
            finally:
                app.state.ready = False

    app = FastAPI(title="assistd", version=__version__, lifespan=lifespan, openapi_url="/openapi.json")
    app.state.settings = settings
    app.state.keyring = KeyRing(settings.api_key_list)
    app.state.limiter = RateLimiter(settings.rate_limit_per_minute, settings.rate_limit_burst).install(app)
    app.state.ready = False
    if settings.cors_origin_list:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origin_list,
            allow_methods=["*"],
            allow_headers=["*"],
            # What browser code may read of a response: the poll pacing and the rate limit's state.
            expose_headers=[
                "openai-poll-after-ms",
                "retry-after",
                "x-request-id",
                "x-ratelimit-limit-requests",
                "x-ratelimit-remaining-requests",
                "x-ratelimit-reset-requests",
            ],
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
