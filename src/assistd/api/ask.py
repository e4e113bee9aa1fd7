"""The /ask session service, as the apps built on the hosted Assistants API called it; and ``GET /``.

``POST /ask`` takes ``{"session_id", "user_input"}`` and answers the assistant's reply: a session is a
thread, created on its first turn and continued after (``engine.ask_sessions``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse

from .. import __version__
from ..protocol.ask import AskParams
from ..store import ask_sessions as store
from ..store.pagination import PageQuery
from .deps import AskService, CallerKey, Db, RunKey
from .pagination import page_query
from .render import json_response
from .sse import data_stream

router = APIRouter(tags=["ask"])


@router.get("/", include_in_schema=False)
async def welcome() -> Response:
    return JSONResponse(
        {"message": "Welcome to assistd, an OpenAI Assistants API v2 server.", "version": __version__}
    )


@router.post("/ask")
async def ask(params: AskParams, caller: CallerKey, key: RunKey, sessions: AskService) -> Response:
    # Begun before answering, so that a refusal (an unknown assistant, a busy session) is an ordinary
    # error response, a stream included.
    asked = await sessions.begin(caller.tenant, caller.fingerprint, params, key_id=key)
    if params.stream:
        return data_stream(sessions.stream(asked))
    return json_response(await sessions.answer(asked))


@router.get("/ask/sessions")
async def list_sessions(
    caller: CallerKey, db: Db, query: Annotated[PageQuery, Depends(page_query)]
) -> Response:
    async with db.read() as session:
        return json_response(await store.list_page(session, caller.tenant, query))


@router.get("/ask/sessions/{session_id}")
async def retrieve_session(session_id: str, caller: CallerKey, db: Db) -> Response:
    async with db.read() as session:
        row = await store.get_row(session, caller.tenant, session_id)
        return json_response(await store.detail(session, row))


@router.delete("/ask/sessions/{session_id}")
async def delete_session(session_id: str, caller: CallerKey, sessions: AskService) -> Response:
    """Deletes the session and its thread (messages and runs with it)."""
    return json_response(await sessions.delete(caller.tenant, session_id))
