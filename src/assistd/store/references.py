"""Ids a request body names (files, vector stores) must be the caller's tenant's, and exist.

Another tenant's object is refused exactly as one that does not exist (the same status, message and param),
so a refusal tells nothing about what other tenants hold. The checks run inside the request's write
transaction, before the rows that name the ids are written, so a refusal writes nothing. Each check is one
query for all the ids it is given and none when there are none: most runs name no ids, and their creation
costs no more for these checks.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from ..errors import InvalidRequestError
from ..protocol.common import ToolResources
from ..protocol.messages import ImageFilePartParam, MessageCreateParams
from .clock import now
from .models import FileRow, VectorStoreRow

# An id a request names, with the param that names it (e.g. ``attachments[0].file_id``).
Named = tuple[str, str]


def visible_files(tenant: str) -> list[ColumnElement[bool]]:
    """The files ``tenant`` can name. An expired file is gone for its owner at once, whether or not its
    bytes have been cleared yet."""
    return [FileRow.tenant == tenant, or_(FileRow.expires_at.is_(None), FileRow.expires_at > now())]


def indexed(ids: Iterable[str], param: str) -> list[Named]:
    """Each id of a list param, named with its index: ``file_ids[2]``."""
    return [(value, f"{param}[{index}]") for index, value in enumerate(ids)]


def _refuse_missing(named: Sequence[Named], found: set[str], kind: str) -> None:
    # The first missing id in the body's order, so the answer does not depend on the database's order.
    for value, param in named:
        if value not in found:
            raise InvalidRequestError(f"No {kind} found with id '{value}'.", param=param)


async def require_files(session: AsyncSession, tenant: str, named: Sequence[Named]) -> None:
    """Refuse (400) the first id that is not a file of ``tenant``'s that is still there."""
    if not named:
        return
    ids = {value for value, _ in named}
    statement = select(FileRow.id).where(FileRow.id.in_(ids), *visible_files(tenant))
    _refuse_missing(named, set((await session.scalars(statement)).all()), "file")


async def require_vector_stores(session: AsyncSession, tenant: str, named: Sequence[Named]) -> None:
    """Refuse (400) the first id that is not a vector store of ``tenant``'s."""
    if not named:
        return
    ids = {value for value, _ in named}
    statement = select(VectorStoreRow.id).where(VectorStoreRow.id.in_(ids), VectorStoreRow.tenant == tenant)
    _refuse_missing(named, set((await session.scalars(statement)).all()), "vector store")


async def check_tool_resources(
    session: AsyncSession, tenant: str, resources: ToolResources | None, at: str = "tool_resources"
) -> None:
    """Every vector store and file ``resources`` names (``at`` is where they are in the body), including
    the files of stores the ``file_search.vector_stores`` helper is asked to make."""
    if resources is None:
        return
    files: list[Named] = []
    if resources.code_interpreter is not None:
        files += indexed(resources.code_interpreter.file_ids, f"{at}.code_interpreter.file_ids")
    search = resources.file_search
    if search is not None:
        await require_vector_stores(
            session, tenant, indexed(search.vector_store_ids, f"{at}.file_search.vector_store_ids")
        )
        for index, spec in enumerate(search.vector_stores or []):
            # The helper's specs are validated when their stores are made; a malformed one is refused there.
            file_ids = spec.get("file_ids")
            if isinstance(file_ids, list) and all(isinstance(value, str) for value in file_ids):
                files += indexed(file_ids, f"{at}.file_search.vector_stores[{index}].file_ids")
    await require_files(session, tenant, files)


def _within(at: str, field: str) -> str:
    return f"{at}.{field}" if at else field


def message_files(params: MessageCreateParams, at: str = "") -> list[Named]:
    """The files a message names: its attachments and its image_file parts (``at``: the message's place in
    the body, e.g. ``messages[1]``; empty for a message that is the body)."""
    named = [
        (attachment.file_id, _within(at, f"attachments[{index}].file_id"))
        for index, attachment in enumerate(params.attachments or [])
    ]
    if not isinstance(params.content, str):
        named += [
            (part.image_file.file_id, _within(at, f"content[{index}].image_file.file_id"))
            for index, part in enumerate(params.content)
            if isinstance(part, ImageFilePartParam)
        ]
    return named


async def check_message(
    session: AsyncSession, tenant: str, params: MessageCreateParams, at: str = ""
) -> None:
    await require_files(session, tenant, message_files(params, at))
