"""File rows: create, read, delete, list; mapped to ``protocol.FileObject``.

The bytes are not here: a row names them by ``storage_key`` in a ``FileStorage``. Callers store the bytes
before the row is written and forget them after the row is deleted, so a committed row always has bytes.
"""

from __future__ import annotations

import secrets
import string

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from ..errors import NotFoundError
from ..protocol.common import ListPage
from ..protocol.files import BATCH_EXPIRY_SECONDS, FileCreateFields, FileObject
from ..storage import StoredBlob
from . import vector_stores
from .clock import now
from .models import FileRow
from .pagination import PageQuery, fetch_page, page_of
from .references import visible_files

_ID_ALPHABET = string.ascii_letters + string.digits


def new_file_id() -> str:
    # OpenAI's file ids take a hyphen ("file-…") where every other id has an underscore.
    return "file-" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(22))


def to_wire(row: FileRow) -> FileObject:
    return FileObject.model_validate(
        {
            "id": row.id,
            "bytes": row.bytes,
            "created_at": row.created_at,
            "filename": row.filename,
            "purpose": row.purpose,
            "status": row.status,
            "expires_at": row.expires_at,
        }
    )


async def get_row(session: AsyncSession, tenant: str, file_id: str) -> FileRow:
    row = await session.scalar(select(FileRow).where(FileRow.id == file_id, *visible_files(tenant)))
    if row is None:
        raise NotFoundError(f"No file found with id '{file_id}'.", param="file_id")
    return row


async def create(
    session: AsyncSession,
    tenant: str,
    fields: FileCreateFields,
    filename: str,
    blob: StoredBlob,
    api_key_id: str | None = None,
) -> FileObject:
    created_at = now()
    if fields.expires_after is not None:
        expires_at: int | None = created_at + fields.expires_after.seconds
    elif fields.purpose == "batch":
        expires_at = created_at + BATCH_EXPIRY_SECONDS
    else:
        expires_at = None
    return await insert(session, tenant, fields.purpose, filename, blob, created_at, expires_at, api_key_id)


async def insert(
    session: AsyncSession,
    tenant: str,
    purpose: str,
    filename: str,
    blob: StoredBlob,
    created_at: int | None = None,
    expires_at: int | None = None,
    api_key_id: str | None = None,
) -> FileObject:
    """A file row for stored bytes: an upload's, or one the server made (``assistants_output``)."""
    row = FileRow(
        id=new_file_id(),
        tenant=tenant,
        created_at=created_at or now(),
        meta={},
        filename=filename,
        purpose=purpose,
        bytes=blob.size,
        sha256=blob.sha256,
        storage_key=blob.key,
        status="processed",
        expires_at=expires_at,
        api_key_id=api_key_id,
    )
    session.add(row)
    await session.flush()
    return to_wire(row)


async def remove(session: AsyncSession, tenant: str, file_id: str) -> FileRow:
    """Delete the row and return it; the caller forgets its bytes once this transaction has committed.

    The file leaves every vector store in the same transaction, so no store keeps searching a deleted file.
    """
    row = await get_row(session, tenant, file_id)
    await vector_stores.detach_everywhere(session, tenant, file_id)
    await session.execute(delete(FileRow).where(FileRow.pk == row.pk))
    return row


async def list_page(
    session: AsyncSession, tenant: str, query: PageQuery, purpose: str | None = None
) -> ListPage[FileObject]:
    # ``purpose`` narrows the page only: a cursor may be any of the tenant's files.
    narrowing = [] if purpose is None else [FileRow.purpose == purpose]
    rows, has_more = await fetch_page(session, FileRow, visible_files(tenant), query, narrowing=narrowing)
    return page_of([to_wire(row) for row in rows], has_more)
