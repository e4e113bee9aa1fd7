"""Rows read and written with SQLAlchemy Core, for the statements every run repeats.

Loading through the ORM (identity map, unit of work, attribute events) costs several times what the
statement itself does. A row read here is a detached model instance: changing it changes nothing in the
database until ``save`` writes the fields it names. Rows inserted here stay out of the session too.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any, TypeVar

from sqlalchemy import Executable, Insert, Select, Table, bindparam, insert, inspect, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ..errors import NotFoundError
from .models import Base, MessageRow, RunRow, RunStepRow

RowT = TypeVar("RowT", bound=Base)


@cache
def columns_of(model: type[Base]) -> dict[str, str]:
    """Attribute name → column name (they differ where a column's name is taken, e.g. ``metadata``)."""
    return {prop.key: prop.columns[0].name for prop in inspect(model).column_attrs}


def table_of(model: type[Base]) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


def detached(model: type[RowT], values: Mapping[Any, Any]) -> RowT:
    return model(**{attribute: values[column] for attribute, column in columns_of(model).items()})


async def fetch_one(
    session: AsyncSession, model: type[RowT], statement: Executable, params: Mapping[str, Any]
) -> RowT | None:
    """The first row ``statement`` (a Core select of ``model``'s table) finds, detached."""
    found = (await session.execute(statement, params)).mappings().first()
    return None if found is None else detached(model, found)


def owned(model: type[Base], *within: str) -> Select[Any]:
    """The select of one ``model`` row by ``:id`` and ``:tenant`` (and each column in ``within`` equal to the
    parameter of its name): built once, for ``fetch_owned``."""
    table = table_of(model)
    scope = [table.c[name] == bindparam(name) for name in within]
    return select(table).where(table.c.id == bindparam("id"), table.c.tenant == bindparam("tenant"), *scope)


async def fetch_owned(
    session: AsyncSession, model: type[RowT], statement: Select[Any], params: Mapping[str, Any], kind: str
) -> RowT:
    """The row ``statement`` (from ``owned``) finds, detached, or OpenAI's 404 for a ``kind`` (e.g. "run")."""
    row = await fetch_one(session, model, statement, params)
    if row is None:
        raise NotFoundError(f"No {kind} found with id '{params['id']}'.", param=f"{kind}_id")
    return row


async def fetch_all(
    session: AsyncSession, model: type[RowT], statement: Executable, params: Mapping[str, Any]
) -> list[RowT]:
    """The rows ``statement`` (a Core select of ``model``'s table) finds, detached."""
    return [detached(model, found) for found in (await session.execute(statement, params)).mappings()]


@cache
def _insert_of(model: type[Base]) -> Insert:
    table = table_of(model)
    return insert(table).returning(table.c.pk)


async def insert_rows(session: AsyncSession, *rows: Base) -> None:
    """Insert new model instances, each setting its ``pk``; they stay out of the session."""
    for row in rows:
        model = type(row)
        names = columns_of(model)
        values = {names[attribute]: value for attribute, value in vars(row).items() if attribute in names}
        values.pop("pk", None)
        pk = (await session.execute(_insert_of(model), values)).scalar_one()
        row.pk = pk  # type: ignore[attr-defined]


async def save(session: AsyncSession, row: RunRow | MessageRow | RunStepRow, *fields: str) -> None:
    """Write ``fields`` of ``row`` by its primary key. A row not inserted yet (no ``pk``) is left alone: its
    ``insert_rows`` writes it whole, as it is by then."""
    if getattr(row, "pk", None) is None:
        return
    model = type(row)
    names = columns_of(model)
    table = table_of(model)
    values = {names[field]: getattr(row, field) for field in fields}
    await session.execute(update(table).where(table.c.pk == row.pk).values(values))
