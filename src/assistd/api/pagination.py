"""The list query parameters every list endpoint takes."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Query

from ..store.pagination import PageQuery


async def page_query(
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    order: Annotated[Literal["asc", "desc"], Query()] = "desc",
    after: Annotated[str | None, Query()] = None,
    before: Annotated[str | None, Query()] = None,
) -> PageQuery:
    return PageQuery(limit=limit, order=order, after=after or None, before=before or None)
