"""The envelope of every ``/actions`` answer, ``{"success", "data", "error"}``, errors included."""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

from ..errors import AssistdError
from ..protocol.actions import ActionResult

log = logging.getLogger(__name__)


def envelope(
    status_code: int, data: Any = None, error: str | None = None, headers: dict[str, str] | None = None
) -> Response:
    body = ActionResult(success=error is None, data=data, error=error)
    return Response(
        content=body.model_dump_json(),
        media_type="application/json",
        status_code=status_code,
        headers=headers,
    )


class EnvelopeRoute(APIRoute):
    """Renders every error of this router, those of its dependencies (the key) included, as the envelope.

    The app's handlers would answer OpenAI's error body, which the function's clients do not read.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except AssistdError as exc:
                if exc.status_code >= 500:
                    log.error("action failed: %s", exc.message)
                return envelope(exc.status_code, error=exc.message, headers=exc.headers or None)
            except Exception:
                log.exception("unhandled error on %s %s", request.method, request.url.path)
                return envelope(500, error="The server had an error while processing your request.")

        return handle
