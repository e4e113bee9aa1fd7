"""Responses from wire models, serialised by pydantic directly."""

from __future__ import annotations

from fastapi import Response
from pydantic import BaseModel


def json_response(
    model: BaseModel, *, headers: dict[str, str] | None = None, status_code: int = 200
) -> Response:
    return Response(
        content=model.model_dump_json(),
        media_type="application/json",
        headers=headers,
        status_code=status_code,
    )
