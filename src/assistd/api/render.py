"""Responses from wire models, serialised by pydantic directly."""

from __future__ import annotations

from fastapi import Request, Response
from pydantic import BaseModel


def poll_headers(request: Request) -> dict[str, str]:
    """How soon the SDKs' poll helpers should ask again (they wait a whole second without it)."""
    return {"openai-poll-after-ms": str(request.app.state.settings.poll_after_ms)}


def json_response(
    model: BaseModel, *, headers: dict[str, str] | None = None, status_code: int = 200
) -> Response:
    return Response(
        content=model.model_dump_json(),
        media_type="application/json",
        headers=headers,
        status_code=status_code,
    )
