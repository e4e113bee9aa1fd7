"""Dependencies the routers share: the tenant, the database and the engine of the running app.

They are ``async def`` although they do not await: FastAPI runs a plain ``def`` dependency in a worker
thread, a thread hop per request for nothing.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from ..engine.engine import Engine
from ..retrieval.ingest_worker import IngestWorker
from ..retrieval.search import Retriever
from ..store.database import Database
from .auth import tenant

Tenant = Annotated[str, Depends(tenant)]


async def get_db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


async def get_engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


async def get_ingest_worker(request: Request) -> IngestWorker:
    worker: IngestWorker = request.app.state.ingest_worker
    return worker


async def get_retriever(request: Request) -> Retriever:
    retriever: Retriever = request.app.state.retriever
    return retriever


Db = Annotated[Database, Depends(get_db)]
RunEngine = Annotated[Engine, Depends(get_engine)]
Ingestion = Annotated[IngestWorker, Depends(get_ingest_worker)]
Search = Annotated[Retriever, Depends(get_retriever)]
