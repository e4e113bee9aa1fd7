"""Bearer keys and tenants, compared in constant time.

An entry of ``ASSISTD_API_KEYS`` is either a plain key, its own tenant, or ``name:key``, which puts the key
in the tenant called ``name`` so that several keys share one tenant. Each key also has a public
fingerprint (``key_`` + 12 hex digits of its SHA-256) by which it can be named, e.g. in an assistant's
``ask_allowed_keys``, without revealing it.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from ..errors import AuthenticationError

NO_KEYS_TENANT = "default"


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def fingerprint(key: str) -> str:
    """The public name of a key: safe to print, log and store."""
    return "key_" + hashlib.sha256(key.encode()).hexdigest()[:12]


def plain_tenant(key: str) -> str:
    # The historical derivation: changing it would orphan every object of existing deployments.
    return "t_" + hashlib.sha256(key.encode()).hexdigest()[:24]


def named_tenant(name: str) -> str:
    # "tn_" cannot be the start of a plain key's "t_" + hex tenant, so the two kinds never collide.
    return "tn_" + hashlib.sha256(("name:" + name).encode()).hexdigest()[:24]


@dataclass(frozen=True)
class KeyEntry:
    """One configured key, without the key itself."""

    digest: bytes
    tenant: str
    fingerprint: str
    tenant_name: str | None


def parse_entry(entry: str) -> tuple[str | None, str]:
    """``"name:key"`` → ``("name", "key")``; a plain key → ``(None, key)``."""
    name, sep, key = entry.partition(":")
    if not sep:
        return None, entry.strip()
    name, key = name.strip(), key.strip()
    if not name or not key:
        raise ValueError("an ASSISTD_API_KEYS entry with ':' must be 'tenant-name:key', both non-empty")
    return name, key


def key_entries(entries: list[str]) -> list[KeyEntry]:
    parsed: list[KeyEntry] = []
    tenants: dict[bytes, str] = {}
    for entry in entries:
        name, key = parse_entry(entry)
        tenant_id = named_tenant(name) if name is not None else plain_tenant(key)
        digest = _digest(key)
        if tenants.setdefault(digest, tenant_id) != tenant_id:
            raise ValueError(f"the key {fingerprint(key)} is given to two tenants in ASSISTD_API_KEYS")
        parsed.append(KeyEntry(digest, tenant_id, fingerprint(key), name))
    return parsed


@dataclass(frozen=True)
class Quotas:
    """A managed key's own limits; None: the server's request rate limit, and no token or storage limit."""

    requests_per_minute: int | None = None
    tokens_per_day: int | None = None
    storage_bytes: int | None = None


NO_QUOTAS = Quotas()


@dataclass(frozen=True)
class Caller:
    """Who sent a request: the tenant of its key and the key's fingerprint (None when no keys are set).
    ``managed``: the key is one of the database's (api/managed_keys.py), with its ``quotas``."""

    tenant: str
    fingerprint: str | None
    managed: bool = False
    quotas: Quotas = NO_QUOTAS


def bearer_token(authorization: str | None) -> str:
    """The key of an ``Authorization: Bearer KEY`` header, or the 401 for a missing or malformed one."""
    if not authorization:
        raise AuthenticationError(
            "You didn't provide an API key. Provide it in an Authorization header: 'Bearer YOUR_KEY'.",
            code=None,
        )
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationError("The Authorization header must be 'Bearer YOUR_KEY'.")
    return token.strip()


def unknown_key() -> AuthenticationError:
    return AuthenticationError("Incorrect API key provided.")


class KeyRing:
    """The static keys of ``ASSISTD_API_KEYS``."""

    def __init__(self, keys: list[str]) -> None:
        # Only digests are kept; tenant ids and fingerprints are derived so they never reveal a key.
        self._entries = key_entries(keys)

    @property
    def enabled(self) -> bool:
        return bool(self._entries)

    def match(self, token: str) -> Caller | None:
        """The caller a static key identifies, or None when ``token`` is none of them."""
        offered = _digest(token)
        found = None
        for entry in self._entries:
            # No early exit: every key is compared, so timing reveals nothing about which one matched.
            if hmac.compare_digest(entry.digest, offered):
                found = entry
        return None if found is None else Caller(found.tenant, found.fingerprint)

    def identify(self, authorization: str | None) -> Caller:
        """The caller by static keys alone (managed keys are looked up by api/managed_keys.py)."""
        if not self._entries:
            # Any key works, so no key proves anything: none is given a fingerprint.
            return Caller(NO_KEYS_TENANT, None)
        found = self.match(bearer_token(authorization))
        if found is None:
            raise unknown_key()
        return found

    def tenant_for(self, authorization: str | None) -> str:
        return self.identify(authorization).tenant
