"""Cursor pagination on the insertion-ordered ``pk``: a page costs the same wherever it starts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar

from sqlalchemy import ColumnElement, select
from sqlalchemy.ext.asyncio import AsyncSession

from ..errors import InvalidRequestError
from ..protocol.common import ListPage

RowT = TypeVar("RowT")


class _HasId(Protocol):
    @property
    def id(self) -> str: ...


ItemT = TypeVar("ItemT", bound=_HasId)


@dataclass(frozen=True)
class PageQuery:
    limit: int = 20
    order: Literal["asc", "desc"] = "desc"
    after: str | None = None
    before: str | None = None


async def _cursor_pk(
    session: AsyncSession, model: Any, scope: Sequence[ColumnElement[bool]], cursor: str, param: str
) -> int:
    pk = await session.scalar(select(model.pk).where(model.id == cursor, *scope))
    if pk is None:
        raise InvalidRequestError(f"No object found for cursor '{cursor}'.", param=param)
    return int(pk)


async def fetch_page(
    session: AsyncSession,
    model: type[RowT],
    scope: Sequence[ColumnElement[bool]],
    query: PageQuery,
    *,
    narrowing: Sequence[ColumnElement[bool]] = (),
) -> tuple[list[RowT], bool]:
    """Rows of ``model`` in ``scope`` matching ``narrowing``, in list order, and whether more follow in
    that direction.

    ``scope`` is the collection itself (the tenant, the parent: a thread, a vector store, a batch): a
    cursor must name one of its rows. ``narrowing`` are the list's filters (a run id, a purpose, a status):
    they choose the page's rows but not the cursor's, because OpenAI pages from any object of the
    collection; a client holding the id of a message outside ``run_id`` still gets the run's messages
    after it.
    """
    column: Any = model.pk  # type: ignore[attr-defined]
    conditions = [*scope, *narrowing]
    descending = query.order == "desc"
    if query.after:
        pk = await _cursor_pk(session, model, scope, query.after, "after")
        conditions.append(column < pk if descending else column > pk)
    if query.before:
        pk = await _cursor_pk(session, model, scope, query.before, "before")
        conditions.append(column > pk if descending else column < pk)
    # With only ``before`` the page is the rows nearest that cursor: walk towards it, then flip.
    walk_back = bool(query.before) and not query.after
    ascending = descending if walk_back else not descending
    stmt = select(model).where(*conditions).order_by(column.asc() if ascending else column.desc())
    rows = list((await session.scalars(stmt.limit(query.limit + 1))).all())
    has_more = len(rows) > query.limit
    rows = rows[: query.limit]
    if walk_back:
        rows.reverse()
    return rows, has_more


def page_of(items: list[ItemT], has_more: bool) -> ListPage[ItemT]:
    return ListPage(
        data=items,
        first_id=items[0].id if items else None,
        last_id=items[-1].id if items else None,
        has_more=has_more,
    )
