"""Keys managed in the database: created, listed, revoked, looked up by the SHA-256 of the key, and the
tokens each key's runs use per UTC day.

The key is a random 256-bit secret, so its SHA-256 is as hard to invert as the key is to guess: a slow
password hash (bcrypt, argon2) protects low-entropy secrets and would only add CPU to every lookup here.
A plain digest also lets a key be found by an indexed equality, in one read, whatever the number of keys.
"""

from __future__ import annotations

import datetime
import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from ..errors import NotFoundError
from ..protocol.api_keys import ApiKey
from .clock import now
from .models import ApiKeyRow, ApiKeyUsageRow, FileRow
from .pagination import PageQuery, fetch_page

KEY_PREFIX = "sk-"


def digest_of(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def fingerprint_of(key: str) -> str:
    # The same public name a static key has (api/auth.fingerprint), so ask_allowed_keys and the rate
    # limit's buckets name both kinds alike.
    return "key_" + hashlib.sha256(key.encode()).hexdigest()[:12]


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class NewKey:
    """What creating a key asks for; the tenant is already derived (api/auth: plain or named)."""

    tenant: str
    tenant_name: str | None = None
    description: str | None = None
    expires_at: int | None = None
    requests_per_minute: int | None = None
    tokens_per_day: int | None = None
    storage_bytes: int | None = None


async def create(session: AsyncSession, key: str, spec: NewKey) -> ApiKeyRow:
    """Store ``key`` (hashed) with ``spec``. Raises sqlalchemy's ``IntegrityError`` when its fingerprint
    or digest is taken (a fingerprint is 48 bits: the caller draws another key)."""
    row = ApiKeyRow(
        id=fingerprint_of(key),
        digest=digest_of(key),
        tenant=spec.tenant,
        tenant_name=spec.tenant_name,
        description=spec.description,
        created_at=now(),
        expires_at=spec.expires_at,
        requests_per_minute=spec.requests_per_minute,
        tokens_per_day=spec.tokens_per_day,
        storage_bytes=spec.storage_bytes,
    )
    session.add(row)
    await session.flush()
    return row


async def find(session: AsyncSession, digest: bytes) -> ApiKeyRow | None:
    """The key whose SHA-256 is ``digest``, revoked or expired or not (the caller decides)."""
    row: ApiKeyRow | None = await session.scalar(select(ApiKeyRow).where(ApiKeyRow.digest == digest))
    return row


async def any_keys(session: AsyncSession) -> bool:
    """Whether any key was ever created here (revoked ones count: revoking the last key must not open
    the server to every key)."""
    return (await session.scalar(select(ApiKeyRow.pk).limit(1))) is not None


async def get(session: AsyncSession, key_id: str) -> ApiKeyRow:
    row: ApiKeyRow | None = await session.scalar(select(ApiKeyRow).where(ApiKeyRow.id == key_id))
    if row is None:
        raise NotFoundError(f"No API key found with id '{key_id}'.", param="key_id")
    return row


async def list_page(session: AsyncSession, query: PageQuery) -> tuple[list[ApiKeyRow], bool]:
    return await fetch_page(session, ApiKeyRow, [], query)


async def revoke(session: AsyncSession, key_id: str) -> ApiKeyRow:
    """Revoke the key (again: its first revocation time stays)."""
    row = await get(session, key_id)
    if row.revoked_at is None:
        row.revoked_at = now()  # written as the session flushes
        await session.flush()
    return row


async def touch(session: AsyncSession, key_id: str, at: int, *, not_since: int) -> None:
    """Set the key's last use to ``at`` unless some replica already set it at ``not_since`` or later."""
    await session.execute(
        update(ApiKeyRow)
        .where(ApiKeyRow.id == key_id)
        .where((ApiKeyRow.last_used_at.is_(None)) | (ApiKeyRow.last_used_at < not_since))
        .values(last_used_at=at)
    )


def day_of(at: float) -> str:
    """The UTC day a token count belongs to."""
    return datetime.datetime.fromtimestamp(at, datetime.UTC).strftime("%Y-%m-%d")


async def add_tokens(session: AsyncSession, key_id: str, day: str, tokens: int) -> None:
    """Add ``tokens`` to the key's count for ``day``, in one UPSERT."""
    if tokens <= 0:
        return
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    statement = (
        insert(ApiKeyUsageRow)
        .values(key_id=key_id, day=day, tokens=tokens)
        .on_conflict_do_update(
            index_elements=["key_id", "day"], set_={"tokens": ApiKeyUsageRow.__table__.c.tokens + tokens}
        )
    )
    await session.execute(statement)


async def tokens_on(session: AsyncSession, key_id: str, day: str) -> int:
    used = await session.scalar(
        select(ApiKeyUsageRow.tokens).where(ApiKeyUsageRow.key_id == key_id, ApiKeyUsageRow.day == day)
    )
    return int(used or 0)


async def key_file_bytes(session: AsyncSession, key_id: str) -> int:
    """Bytes of the files the key uploaded and that are still stored: what its storage quota limits.
    The key's row is locked first (PostgreSQL; SQLite writes one at a time anyway), so that two uploads of
    one key at the same instant are counted one after the other, not both against the same total."""
    await session.execute(select(ApiKeyRow.pk).where(ApiKeyRow.id == key_id).with_for_update())
    used = await session.scalar(
        select(func.coalesce(func.sum(FileRow.bytes), 0)).where(FileRow.api_key_id == key_id)
    )
    return int(used or 0)


def to_wire(row: ApiKeyRow) -> ApiKey:
    return ApiKey(
        id=row.id,
        tenant=row.tenant,
        tenant_name=row.tenant_name,
        description=row.description,
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        last_used_at=row.last_used_at,
        requests_per_minute=row.requests_per_minute,
        tokens_per_day=row.tokens_per_day,
        storage_bytes=row.storage_bytes,
    )
