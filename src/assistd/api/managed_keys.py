"""Who is calling, by static keys and the keys managed in the database, with a short in-process cache.

A request's key is first compared with the static keys (``KeyRing``, no I/O). Any other key is looked up
by its SHA-256 (an indexed equality: the time taken depends on the digest, never on how much of the key
matched), and the digest read is compared again with ``hmac.compare_digest``. What a lookup finds, or
that it found nothing, is cached in this process for ``ASSISTD_KEY_CACHE_SECONDS``: a request costs at
most that one read, and most cost none. So a key revoked or expired in the database stops working on
every replica and process within that many seconds (at once in the process that revoked it).

Keys are required once there are any: static keys, an admin key, or a key ever created in the database.
Without any of them the server keeps its no-key default (every key is the one ``default`` tenant).
"""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass
from typing import Final

from sqlalchemy.exc import IntegrityError

from ..protocol.api_keys import ApiKeyCreateParams, CreatedApiKey
from ..store import api_keys as store
from ..store.clock import now
from ..store.database import Database
from ..store.models import ApiKeyRow
from .auth import (
    NO_KEYS_TENANT,
    Caller,
    KeyRing,
    Quotas,
    bearer_token,
    named_tenant,
    plain_tenant,
    unknown_key,
)

# Lookups remembered at most; past it the cache starts again (a flood of wrong keys cannot grow it).
_MAX_CACHED: Final = 10_000
# A key's last use is written at most this often (by each process; the write is a no-op when another
# replica wrote it within the same interval).
LAST_USED_EVERY_SECONDS: Final = 60


@dataclass(frozen=True)
class ManagedKey:
    id: str
    digest: bytes
    tenant: str
    expires_at: int | None
    revoked: bool
    quotas: Quotas

    @classmethod
    def of(cls, row: ApiKeyRow) -> ManagedKey:
        quotas = Quotas(row.requests_per_minute, row.tokens_per_day, row.storage_bytes)
        return cls(row.id, bytes(row.digest), row.tenant, row.expires_at, row.revoked_at is not None, quotas)

    def valid(self, at: float) -> bool:
        return not self.revoked and (self.expires_at is None or at < self.expires_at)


async def issue(db: Database, params: ApiKeyCreateParams) -> CreatedApiKey:
    """Create a key: the one answer that shows it. Its tenant is derived as a static key's would be
    (``name:key`` or a plain key), so a managed and a static key of one tenant name share its objects."""
    for _ in range(3):
        key = store.new_key()
        name = params.tenant_name
        spec = store.NewKey(
            tenant=named_tenant(name) if name is not None else plain_tenant(key),
            tenant_name=name,
            description=params.description,
            expires_at=params.expires_at,
            requests_per_minute=params.requests_per_minute,
            tokens_per_day=params.tokens_per_day,
            storage_bytes=params.storage_bytes,
        )
        try:
            async with db.write() as session:
                row = await store.create(session, key, spec)
        except IntegrityError:
            continue  # its 48-bit fingerprint is another key's: draw again
        return CreatedApiKey(**store.to_wire(row).model_dump(), key=key)
    raise RuntimeError("could not draw a key with a fingerprint of its own")


class ManagedKeys:
    def __init__(self, keyring: KeyRing, *, admin_key_set: bool, cache_seconds: float) -> None:
        self.keyring = keyring
        self.cache_seconds = cache_seconds
        # With static keys or an admin key, keys are required whatever the database holds.
        self._required = keyring.enabled or admin_key_set
        self._by_digest: dict[bytes, tuple[float, ManagedKey | None]] = {}
        self._any_checked_at = -float("inf")
        self._touched: dict[str, float] = {}

    async def identify(self, db: Database, authorization: str | None) -> Caller:
        """The caller, or the 401 of a missing, unknown, revoked or expired key."""
        if not self._required and not await self._any_keys(db):
            return Caller(NO_KEYS_TENANT, None)
        token = bearer_token(authorization)
        static = self.keyring.match(token)
        if static is not None:
            return static
        offered = store.digest_of(token)
        found = await self._lookup(db, offered)
        at = time.time()
        if found is None or not hmac.compare_digest(found.digest, offered) or not found.valid(at):
            raise unknown_key()
        await self._note_use(db, found.id)
        return Caller(found.tenant, found.id, managed=True, quotas=found.quotas)

    def forget(self, key_id: str) -> None:
        """Drop what the cache holds of ``key_id``: revoked here, it stops working in this process at once."""
        for digest, (_, found) in list(self._by_digest.items()):
            if found is not None and found.id == key_id:
                del self._by_digest[digest]

    def created(self, digest: bytes) -> None:
        """A key was created here: a lookup that found nothing before must not keep refusing it, and keys
        are required from now on."""
        self._by_digest.pop(digest, None)
        self._required = True

    async def _any_keys(self, db: Database) -> bool:
        # Once a key exists keys stay required (revoked ones count), so only "none" is read again.
        at = time.monotonic()
        if at - self._any_checked_at < self.cache_seconds:
            return False
        async with db.read() as session:
            found = await store.any_keys(session)
        self._any_checked_at = at
        if found:
            self._required = True
        return found

    async def _lookup(self, db: Database, digest: bytes) -> ManagedKey | None:
        at = time.monotonic()
        cached = self._by_digest.get(digest)
        if cached is not None and at - cached[0] < self.cache_seconds:
            return cached[1]
        async with db.read() as session:
            row = await store.find(session, digest)
        found = None if row is None else ManagedKey.of(row)
        if len(self._by_digest) >= _MAX_CACHED:
            self._by_digest.clear()
        self._by_digest[digest] = (at, found)
        return found

    async def _note_use(self, db: Database, key_id: str) -> None:
        at = time.monotonic()
        if at - self._touched.get(key_id, -float("inf")) < LAST_USED_EVERY_SECONDS:
            return
        self._touched[key_id] = at
        if len(self._touched) >= _MAX_CACHED:
            self._touched = {key_id: at}
        wall = now()
        async with db.write() as session:
            await store.touch(session, key_id, wall, not_since=wall - LAST_USED_EVERY_SECONDS)
