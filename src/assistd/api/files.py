"""/v1/files"""

from __future__ import annotations

import mimetypes
import re
from typing import Annotated, Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse
from pydantic import ValidationError

from ..errors import InsufficientStorageError, InvalidRequestError, NotFoundError
from ..protocol.files import FileCreateFields, FileDeleted
from ..storage import FileStorage, StorageFull, StoredBlob, UploadTooLarge
from ..store import files as store
from ..store.pagination import PageQuery
from . import quotas
from .deps import AppSettings, CallerKey, Db, Storage, Tenant
from .multipart import MultipartReader
from .render import json_response

router = APIRouter(prefix="/v1/files", tags=["files"])

MAX_FILENAME = 512  # the width of files.filename
_NESTED = re.compile(r"([^\[\]]+)\[([^\[\]]+)\]")


async def file_page_query(
    limit: Annotated[int, Query(ge=1, le=10_000)] = 10_000,
    order: Annotated[Literal["asc", "desc"], Query()] = "desc",
    after: Annotated[str | None, Query()] = None,
) -> PageQuery:
    # Files page like other lists but by OpenAI's own bounds: up to 10,000, all of them by default.
    return PageQuery(limit=limit, order=order, after=after or None)


def _put_field(fields: dict[str, Any], name: str, value: str) -> None:
    """Form names as the SDK writes nested objects: ``expires_after[seconds]`` is expires_after.seconds."""
    target, key = fields, name
    if nested := _NESTED.fullmatch(name):
        outer, key = nested.groups()
        inner = fields.setdefault(outer, {})
        if not isinstance(inner, dict):
            raise InvalidRequestError(
                f"Invalid '{outer}': given both as a value and as an object.", param=outer
            )
        target = inner
    if key in target:
        raise InvalidRequestError(f"Duplicate parameter: '{name}'.", param=name)
    target[key] = value


def _validated(fields: dict[str, Any]) -> FileCreateFields:
    try:
        return FileCreateFields.model_validate(fields)
    except ValidationError as exc:
        # Rendered by the one handler of invalid bodies, so form fields are named like JSON ones.
        raise RequestValidationError(exc.errors()) from None


def _check_filename(filename: str | None) -> str:
    if not filename:
        raise InvalidRequestError(
            "Invalid 'file': expected a file upload (a part with a filename).", param="file"
        )
    if "\x00" in filename:
        raise InvalidRequestError("Invalid 'file': the filename contains a NUL character.", param="file")
    if len(filename) > MAX_FILENAME:
        raise InvalidRequestError(
            f"Invalid 'file': the filename may be at most {MAX_FILENAME} characters long.", param="file"
        )
    return filename


async def _receive(
    reader: MultipartReader, storage: FileStorage, limit: int
) -> tuple[FileCreateFields, str, StoredBlob]:
    """Read the whole form, storing the file as it arrives; on any refusal, keep none of it."""
    fields: dict[str, Any] = {}
    upload: tuple[str, StoredBlob] | None = None
    try:
        while (part := await reader.next_part()) is not None:
            if part.name != "file":
                _put_field(fields, part.name, await reader.field(part.name))
                continue
            if upload is not None:
                raise InvalidRequestError("Only one 'file' may be uploaded at a time.", param="file")
            filename = _check_filename(part.filename)
            if "purpose" in fields:
                # The SDK sends the fields first: refuse a bad purpose before storing anything.
                _validated(fields)
            try:
                blob = await storage.save(reader.chunks(), max_bytes=limit)
            except UploadTooLarge:
                raise InvalidRequestError(
                    f"Invalid 'file': files may be at most {limit} bytes.",
                    param="file",
                    code="file_too_large",
                ) from None
            except StorageFull:
                raise InsufficientStorageError(
                    "The server has no space left to store this file; nothing of it was kept. "
                    "Try again once space has been freed."
                ) from None
            upload = (filename, blob)
        if upload is None:
            raise InvalidRequestError("Missing required parameter: 'file'.", param="file")
        return _validated(fields), *upload
    except BaseException as exc:
        if upload is not None:
            await storage.delete(upload[1].key)
        if isinstance(exc, Exception):
            await reader.drain()
        raise


def _download_name(filename: str) -> str:
    """The last part of an uploaded name: a name like ``../../etc/passwd`` is kept as the file's label,
    but a client saving a download must not be offered a path that climbs out of its folder."""
    last = re.split(r"[/\\]", filename)[-1].strip()
    return last if last.strip(".") else "download"


def _content_disposition(filename: str) -> str:
    # A plain-ASCII name for old clients, the exact one (RFC 6266) for the rest.
    filename = _download_name(filename)
    fallback = "".join(c if 0x20 <= ord(c) < 0x7F and c not in '"\\' else "_" for c in filename)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


@router.post("")
async def upload_file(
    request: Request, caller: CallerKey, db: Db, storage: Storage, settings: AppSettings
) -> Response:
    reader = await MultipartReader.of(request, "file")
    fields, filename, blob = await _receive(reader, storage, settings.max_upload_bytes)
    try:
        async with db.write() as session:
            await quotas.check_storage(session, caller, blob.size)
            uploader = caller.fingerprint if caller.managed else None
            created = await store.create(session, caller.tenant, fields, filename, blob, uploader)
    except BaseException:
        await storage.delete(blob.key)
        raise
    return json_response(created)


@router.get("")
async def list_files(
    tenant: Tenant,
    db: Db,
    query: Annotated[PageQuery, Depends(file_page_query)],
    purpose: Annotated[str | None, Query()] = None,
) -> Response:
    async with db.read() as session:
        return json_response(await store.list_page(session, tenant, query, purpose or None))


@router.get("/{file_id}")
async def retrieve_file(file_id: str, tenant: Tenant, db: Db) -> Response:
    async with db.read() as session:
        return json_response(store.to_wire(await store.get_row(session, tenant, file_id)))


@router.get("/{file_id}/content")
async def download_file(file_id: str, tenant: Tenant, db: Db, storage: Storage) -> Response:
    async with db.read() as session:
        row = await store.get_row(session, tenant, file_id)
    try:
        chunks = await storage.open(row.storage_key)
    except FileNotFoundError:
        # Deleted between the read above and now.
        raise NotFoundError(f"No file found with id '{file_id}'.", param="file_id") from None
    media_type = mimetypes.guess_type(row.filename)[0] or "application/octet-stream"
    headers = {"content-length": str(row.bytes), "content-disposition": _content_disposition(row.filename)}
    return StreamingResponse(chunks, media_type=media_type, headers=headers)


@router.delete("/{file_id}")
async def delete_file(file_id: str, tenant: Tenant, db: Db, storage: Storage) -> Response:
    async with db.write() as session:
        row = await store.remove(session, tenant, file_id)
    # Only after the commit: a failed transaction must not leave a row whose bytes are gone.
    await storage.delete(row.storage_key)
    return json_response(FileDeleted(id=row.id))
