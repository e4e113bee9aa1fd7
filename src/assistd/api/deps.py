"""Dependencies the routers share: who is calling, and the parts of the running app they need.

The app factory and its lifespan keep those parts in ``app.state``; routers take them from here, by type,
rather than reading it. They are ``async def`` although they do not await: FastAPI runs a plain ``def``
dependency in a worker thread, a thread hop per request for nothing.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from ..config import Settings
from ..engine.ask_sessions import AskSessions, SessionLocks
from ..engine.embeddings import EmbeddingService
from ..engine.engine import Engine
from ..llm.registry import ProviderRegistry
from ..retrieval.ingest_worker import IngestWorker
from ..retrieval.search import Retriever
from ..storage import FileStorage
from ..store.database import Database
from . import quotas
from .auth import Caller
from .managed_keys import ManagedKeys
from .rate_limit import STATE_KEY, RateLimiter
from .render import poll_after


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_managed_keys(request: Request) -> ManagedKeys:
    keys: ManagedKeys = request.app.state.managed_keys
    return keys


async def get_limiter(request: Request) -> RateLimiter:
    limiter: RateLimiter = request.app.state.limiter
    return limiter


async def get_db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


async def get_engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


async def get_providers(request: Request) -> ProviderRegistry:
    providers: ProviderRegistry = request.app.state.providers
    return providers


async def get_storage(request: Request) -> FileStorage:
    storage: FileStorage = request.app.state.storage
    return storage


async def get_ingest_worker(request: Request) -> IngestWorker:
    worker: IngestWorker = request.app.state.ingest_worker
    return worker


async def get_retriever(request: Request) -> Retriever:
    retriever: Retriever = request.app.state.retriever
    return retriever


AppSettings = Annotated[Settings, Depends(get_settings)]
Db = Annotated[Database, Depends(get_db)]
RunEngine = Annotated[Engine, Depends(get_engine)]
Providers = Annotated[ProviderRegistry, Depends(get_providers)]
Storage = Annotated[FileStorage, Depends(get_storage)]
Ingestion = Annotated[IngestWorker, Depends(get_ingest_worker)]
Search = Annotated[Retriever, Depends(get_retriever)]


async def get_caller(
    request: Request,
    keys: Annotated[ManagedKeys, Depends(get_managed_keys)],
    limiter: Annotated[RateLimiter, Depends(get_limiter)],
    db: Db,
) -> Caller:
    """The request's tenant and key fingerprint, within its key's request rate limit."""
    found = await keys.identify(db, request.headers.get("authorization"))
    limit = limiter.for_key(found.quotas.requests_per_minute)
    if limit.enabled:
        # The middleware limiter.install added puts these on the response, whichever kind it is.
        setattr(request.state, STATE_KEY, await limit.check(db, found))
    return found


CallerKey = Annotated[Caller, Depends(get_caller)]


async def get_run_key(request: Request, caller: CallerKey, db: Db) -> str | None:
    """For a request that creates or continues a run: the managed key to count its tokens under (None
    for any other key), within the key's tokens per day."""
    headers = await quotas.check_tokens(db, caller)
    if headers:
        found = getattr(request.state, STATE_KEY, None)
        setattr(request.state, STATE_KEY, {**(found or {}), **headers})
    return caller.fingerprint if caller.managed else None


RunKey = Annotated[str | None, Depends(get_run_key)]


async def get_tenant(caller: CallerKey) -> str:
    """The tenant of the request's key, within its request rate limit."""
    return caller.tenant


Tenant = Annotated[str, Depends(get_tenant)]


async def get_poll_headers(settings: AppSettings) -> dict[str, str]:
    return poll_after(settings)


PollHeaders = Annotated[dict[str, str], Depends(get_poll_headers)]


async def get_long_poll_seconds(request: Request, settings: AppSettings) -> float:
    """How long the request may be held for its object to move on: the SDKs' poll helpers say they are
    polling in a header, and a held request answers them as soon as it moves (0: not held)."""
    if request.headers.get("x-stainless-poll-helper") != "true":
        return 0.0
    return settings.long_poll_seconds


LongPoll = Annotated[float, Depends(get_long_poll_seconds)]


async def get_ask_sessions(
    request: Request, engine: RunEngine, settings: AppSettings, providers: Providers
) -> AskSessions:
    state = request.app.state
    # Made on first use and kept with the app: the per-session locks must outlive each request.
    locks: SessionLocks | None = getattr(state, "ask_locks", None)
    if locks is None:
        locks = state.ask_locks = SessionLocks()
    return AskSessions(engine, locks, settings.ask_default_assistant, providers.default_model)


AskService = Annotated[AskSessions, Depends(get_ask_sessions)]


async def get_embedding_service(retriever: Search, providers: Providers) -> EmbeddingService:
    # The model file search embeds with: one model in memory, whichever endpoint asks.
    return EmbeddingService(retriever.embedder, providers)


Embeddings = Annotated[EmbeddingService, Depends(get_embedding_service)]
