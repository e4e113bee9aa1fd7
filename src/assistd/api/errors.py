"""Every error leaves the server as OpenAI's body: ``{"error": {"message", "type", "param", "code"}}``."""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import AssistdError, InsufficientStorageError
from ..protocol.common import ParamValueError
from ..store.outage import database_unavailable, storage_full

log = logging.getLogger(__name__)


def _error(
    status: int,
    message: str,
    type_: str,
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


# How long a client is told to wait before trying again while the database is unavailable. The SDKs
# honour it (they retry 503s), and a database failing over is usually back within seconds.
RETRY_AFTER_SECONDS = 2


def unavailable_response(message: str, code: str, *, retry_after: int | None = None) -> JSONResponse:
    """A 503 in OpenAI's error body, with ``retry-after`` when a retry soon is worth it."""
    headers = {"retry-after": str(retry_after)} if retry_after is not None else None
    return _error(503, message, "server_error", None, code, headers)


def database_unavailable_response() -> JSONResponse:
    return unavailable_response(
        "The database is unavailable. Please retry your request shortly.",
        "database_unavailable",
        retry_after=RETRY_AFTER_SECONDS,
    )


def error_response(exc: AssistdError) -> JSONResponse:
    """The HTTP answer for one of assistd's errors."""
    return JSONResponse(exc.body(), status_code=exc.status_code, headers=exc.headers or None)


def _is_branch_label(part: object) -> bool:
    return isinstance(part, str) and (
        part.startswith(("function-", "list[", "literal[", "constrained-"))
        or "[" in part
        or part in ("str", "int", "float", "bool", "dict")
    )


def param_name(loc: tuple[Any, ...]) -> str | None:
    """``("body", "messages", 0, "content")`` → ``"messages[0].content"``, as OpenAI names parameters."""
    parts = [p for p in loc if p not in ("body", "query", "path", "header")]
    name = ""
    previous: object = None
    for part in parts:
        if isinstance(part, int):
            name += f"[{part}]"
        elif _is_branch_label(part) or part == previous:
            # A union branch pydantic tried, or a discriminator tag repeated before the field of that
            # name (``tools[0].function.function.name``): neither is a parameter.
            pass
        else:
            name += f".{part}" if name else str(part)
        previous = part
    return name or None


def _is_branch_mismatch(error: Any) -> bool:
    """A value of the wrong type for one branch of a union (the client meant another branch)."""
    loc = tuple(error.get("loc", ()))
    kind = str(error.get("type", ""))
    return bool(loc) and _is_branch_label(loc[-1]) and (kind.endswith("_type") or kind == "literal_error")


def _validation_message(error: dict[str, Any], param: str | None) -> str:
    kind = error.get("type", "")
    if kind == "json_invalid":
        return (
            "We could not parse the JSON body of your request. "
            "(HINT: This likely means you aren't using your HTTP library correctly.)"
        )
    if kind == "extra_forbidden":
        return f"Unrecognized request argument supplied: {param}"
    if kind == "missing":
        return f"Missing required parameter: '{param}'."
    message = str(error.get("msg", "Invalid value"))
    return f"Invalid '{param}': {message[0].lower()}{message[1:]}." if param else f"{message}."


def install(app: FastAPI) -> None:
    @app.exception_handler(AssistdError)
    async def _assistd_error(_request: Request, exc: AssistdError) -> JSONResponse:
        if exc.status_code >= 500:
            log.error("request failed: %s", exc.message)
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        # Report the most specific problem: "not a string" from the ``str`` branch of ``str | list[...]``
        # says less than what is wrong inside the list the client did send.
        specific = [e for e in errors if not _is_branch_mismatch(e)]
        error = (specific or errors or [{"msg": "Invalid request", "loc": ()}])[0]
        if error.get("type") == "json_invalid":
            # Its loc is a position in the raw body, not a parameter.
            return _error(400, _validation_message(error, None), "invalid_request_error")
        cause = (error.get("ctx") or {}).get("error")
        if isinstance(cause, ParamValueError):
            prefix = param_name(tuple(error.get("loc", ())))
            named = f"{prefix}.{cause.param}" if prefix and cause.param != "body" else cause.param
            return _error(400, f"Invalid '{named}': {cause}", "invalid_request_error", named, "invalid_value")
        param = param_name(tuple(error.get("loc", ())))
        if error.get("type") == "missing" and param is None:
            return _error(400, "The request body is required.", "invalid_request_error")
        return _error(
            400,
            _validation_message(error, param),
            "invalid_request_error",
            param,
            "invalid_value" if error.get("type") != "missing" else None,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            message = f"Invalid URL ({_request.method} {_request.url.path})"
            return _error(404, message, "invalid_request_error", None, "unknown_url")
        if exc.status_code == 405:
            message = f"Method {_request.method} is not allowed for {_request.url.path}"
            return _error(405, message, "invalid_request_error", None, "method_not_allowed")
        return _error(
            exc.status_code,
            str(exc.detail),
            "invalid_request_error",
            None,
            None,
            dict(exc.headers) if exc.headers else None,
        )

    @app.exception_handler(Exception)
    async def _bug(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", _request.method, _request.url.path)
        return _error(500, "The server had an error while processing your request.", "server_error")

    async def _database(request: Request, exc: Exception) -> JSONResponse:
        if storage_full(exc):
            # Checked first: SQLite's "database or disk is full" is an OperationalError, which alone would
            # read as an outage, and a 503 would have clients retry what cannot succeed soon.
            log.warning("no space left on %s %s: %s", request.method, request.url.path, type(exc).__name__)
            return error_response(
                InsufficientStorageError(
                    "The server has no space left to store this request. Try again once space has been freed."
                )
            )
        if database_unavailable(exc):
            # One line, no traceback: during an outage every request fails the same way.
            log.warning(
                "database unavailable on %s %s: %s", request.method, request.url.path, type(exc).__name__
            )
            return database_unavailable_response()
        return await _bug(request, exc)

    # Handlers of these classes run in the ExceptionMiddleware, inside the app; the one of ``Exception``
    # runs outermost, in Starlette's ServerErrorMiddleware, which answers and then re-raises.
    for kind in (sa_exc.SQLAlchemyError, asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
        app.add_exception_handler(kind, _database)
