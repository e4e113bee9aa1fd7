"""/admin/keys: keys managed in the database (an assistd extension), for the holder of
``ASSISTD_ADMIN_KEY`` only. Without that setting the routes do not exist (404, as any unknown URL); a
tenant's key gets 403, an unknown key 401.

``DELETE /admin/keys/{id}`` revokes: the key is refused from then on (within the cache bound on other
processes) but stays listed, with its ``revoked_at``, for the record.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from ..errors import PermissionDeniedError
from ..protocol.api_keys import ApiKey, ApiKeyCreateParams
from ..protocol.common import ListPage
from ..store import api_keys as store
from ..store.pagination import PageQuery
from .auth import bearer_token
from .deps import AppSettings, Db, get_managed_keys
from .managed_keys import ManagedKeys, issue
from .pagination import page_query
from .render import json_response

router = APIRouter(prefix="/admin/keys", tags=["admin"])

Keys = Annotated[ManagedKeys, Depends(get_managed_keys)]


async def require_admin(request: Request, settings: AppSettings, keys: Keys, db: Db) -> None:
    """Let the admin key through; 403 for a tenant's key, 401 for any other."""
    token = bearer_token(request.headers.get("authorization"))
    assert settings.admin_key is not None  # the router is only mounted with one
    admin = hashlib.sha256(settings.admin_key.get_secret_value().encode()).digest()
    if hmac.compare_digest(admin, hashlib.sha256(token.encode()).digest()):
        return
    await keys.identify(db, request.headers.get("authorization"))  # 401 unless a tenant's key
    raise PermissionDeniedError(
        "You have insufficient permissions for this operation: managing keys takes the admin key."
    )


Admin = Annotated[None, Depends(require_admin)]


@router.post("")
async def create_key(params: ApiKeyCreateParams, _: Admin, db: Db, keys: Keys) -> Response:
    created = await issue(db, params)
    keys.created(store.digest_of(created.key))
    return json_response(created)


@router.get("")
async def list_keys(_: Admin, db: Db, query: Annotated[PageQuery, Depends(page_query)]) -> Response:
    async with db.read() as session:
        rows, has_more = await store.list_page(session, query)
    items = [store.to_wire(row) for row in rows]
    page = ListPage[ApiKey](
        data=items,
        first_id=items[0].id if items else None,
        last_id=items[-1].id if items else None,
        has_more=has_more,
    )
    return json_response(page)


@router.get("/{key_id}")
async def retrieve_key(key_id: str, _: Admin, db: Db) -> Response:
    async with db.read() as session:
        return json_response(store.to_wire(await store.get(session, key_id)))


@router.delete("/{key_id}")
async def revoke_key(key_id: str, _: Admin, db: Db, keys: Keys) -> Response:
    async with db.write() as session:
        row = await store.revoke(session, key_id)
    keys.forget(key_id)
    return json_response(store.to_wire(row))
