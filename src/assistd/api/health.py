"""/healthz (the process is alive) and /readyz (it can serve: database reachable, schema current).

Neither needs a key: load balancers and orchestrators call them. They answer OpenAI's error body when
they say no, like every other route.
"""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from .deps import Db
from .errors import unavailable_response

log = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)

# A readiness probe must answer within the prober's timeout (often 1 to 5 seconds), whatever the database
# does: a connection attempt to an address that stopped answering could take far longer.
CHECK_TIMEOUT_SECONDS = 3.0


@router.get("/healthz")
async def healthz() -> Response:
    # Alive means the process answers. The database is not asked: restarting a process because the
    # database is down would not bring it back, only drop the streams in flight.
    return JSONResponse({"status": "ok"})


@router.get("/readyz")
async def readyz(request: Request, db: Db) -> Response:
    if not request.app.state.ready:
        return unavailable_response("The server is starting or shutting down.", "not_ready")
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
            schema = await db.schema()
    except Exception as exc:
        # Whatever fails here, the answer is "not ready"; the kind of failure is logged, not its text,
        # which may name the database's host.
        log.warning("readiness check: the database cannot be reached: %s", type(exc).__name__)
        return unavailable_response(
            f"The database cannot be reached ({type(exc).__name__}).", "database_unavailable"
        )
    if schema.state == "behind":
        return unavailable_response(
            f"The database schema is at revision {schema.current or 'none'}, this server needs "
            f"{schema.head}: run `assistd migrate`.",
            "migrations_pending",
        )
    # "ahead": a newer assistd migrated the database during a rolling deploy. This process goes on serving
    # until it is replaced (migrations add; they do not take away what older code reads).
    return JSONResponse(
        {
            "status": "ok",
            "database": {"revision": schema.current, "head": schema.head, "schema": schema.state},
        }
    )
