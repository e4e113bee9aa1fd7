"""The FastAPI application: settings → database → providers → engine, wired in the lifespan."""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from types import FrameType
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from . import __version__
from .api import (
    actions,
    admin_keys,
    ask,
    assistants,
    chat_completions,
    conversations,
    embeddings,
    errors,
    files,
    health,
    messages,
    metrics,
    models,
    responses,
    runs,
    threads,
    ui,
    vector_stores,
)
from .api.auth import KeyRing
from .api.body_limits import BodyLimits
from .api.managed_keys import ManagedKeys
from .api.nul_guard import NulGuard
from .api.rate_limit import RateLimiter
from .config import Settings
from .runtime import Role, open_runtime

log = logging.getLogger(__name__)

_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextmanager
def _on_stop_signal(callback: Callable[[], None]) -> Iterator[None]:
    """Calls ``callback`` in the event loop as soon as the server is told to stop, not when its lifespan
    ends: uvicorn first lets open requests finish (for up to 5 s), and the worker pool must not claim runs
    meanwhile. Chained before the handlers the server installed (uvicorn's, which it restores when it
    stops); nothing is installed where the server has none, or off the main thread."""
    before: dict[int, Callable[[int, FrameType | None], Any]] = {}
    if threading.current_thread() is threading.main_thread():
        for stop in _STOP_SIGNALS:
            installed = signal.getsignal(stop)
            if callable(installed):
                before[stop] = installed
    if len(before) < len(_STOP_SIGNALS):
        yield
        return
    loop = asyncio.get_running_loop()

    def handler(signum: int, frame: FrameType | None) -> None:
        loop.call_soon_threadsafe(callback)
        before[signum](signum, frame)

    for chained in before:
        signal.signal(chained, handler)
    try:
        yield
    finally:
        for chained, previous in before.items():
            if signal.getsignal(chained) is handler:
                signal.signal(chained, previous)


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
                if runtime.engine.executes:
                    with _on_stop_signal(runtime.engine.pool.stop_claiming):
                        yield
                else:
                    yield
            finally:
                app.state.ready = False

    app = FastAPI(title="assistd", version=__version__, lifespan=lifespan, openapi_url="/openapi.json")
    app.state.settings = settings
    # Static keys first, then the database's (api/managed_keys.py).
    app.state.managed_keys = ManagedKeys(
        KeyRing(settings.api_key_list),
        admin_key_set=settings.admin_key is not None,
        cache_seconds=settings.key_cache_seconds,
    )
    app.state.limiter = RateLimiter(settings.rate_limit_per_minute, settings.rate_limit_burst).install(app)
    app.state.ready = False
    # Inside CORS, so that a browser can read the refusal of a body.
    app.add_middleware(
        BodyLimits,
        max_json_bytes=settings.max_json_body_bytes,
        max_upload_bytes=settings.max_upload_bytes,
        timeout_seconds=settings.body_timeout_seconds,
        min_bytes_per_second=settings.body_min_bytes_per_second,
    )
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
                "x-ratelimit-limit-tokens",
                "x-ratelimit-remaining-tokens",
                "x-ratelimit-reset-tokens",
                "x-ratelimit-limit-storage-bytes",
                "x-ratelimit-remaining-storage-bytes",
            ],
            max_age=600,
        )
    app.add_middleware(NulGuard)
    errors.install(app)
    # runs before threads: POST /v1/threads/runs must not be taken for POST /v1/threads/{thread_id}.
    # Chat completions first and responses early: a request is matched against the routes in order (about
    # 60 before them otherwise), and their creates are latency-sensitive. No other path starts /v1/chat.
    routers = (
        chat_completions,
        assistants,
        runs,
        responses,
        threads,
        messages,
        conversations,
        models,
        files,
        vector_stores,
        actions,
        ask,
        ui,
        health,
        embeddings,
    )
    for module in routers:
        app.include_router(module.router)
    if settings.metrics:
        app.include_router(metrics.router)
    if settings.admin_key is not None:
        app.include_router(admin_keys.router)
    return app
