"""Refuses NUL characters in URLs before they reach the database.

PostgreSQL text cannot hold ``\\x00`` (SQLite can), so without this a NUL in a path or query would be a
server error on one backend and a 404 on the other. Bodies are checked by ``protocol.common.RequestModel``.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, unquote

from starlette.types import ASGIApp, Receive, Scope, Send

from ..errors import InvalidRequestError, NotFoundError
from .errors import error_response


class NulGuard:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            if "\x00" in scope["path"]:
                # No object id contains NUL: the object does not exist.
                path = scope["path"].replace("\x00", "\\u0000")
                missing = NotFoundError(f"No object found at {path}.", code="not_found")
                await error_response(missing)(scope, receive, send)
                return
            query = scope.get("query_string", b"").decode("latin-1")
            if "\x00" in unquote(query):
                param = next((key for key, value in parse_qsl(query) if "\x00" in key + value), None)
                message = "Query parameters may not contain NUL (\\u0000) characters."
                refused = InvalidRequestError(message, param=param, code="invalid_value")
                await error_response(refused)(scope, receive, send)
                return
        await self.app(scope, receive, send)
