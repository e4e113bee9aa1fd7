"""Responses from wire models, serialised by pydantic directly; and the poll headers."""

from __future__ import annotations

from fastapi import Response
from pydantic import BaseModel

from ..config import Settings


def poll_after(settings: Settings) -> dict[str, str]:
    """How soon the SDKs' poll helpers should ask again (they wait a whole second without it); routers
    take it as the ``deps.PollHeaders`` dependency."""
    return {"openai-poll-after-ms": str(settings.poll_after_ms)}


def json_response(
    model: BaseModel, *, headers: dict[str, str] | None = None, status_code: int = 200
) -> Response:
    return Response(
        content=model.model_dump_json(),
        media_type="application/json",
        headers=headers,
        status_code=status_code,
    )
