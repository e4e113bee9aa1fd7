"""Bearer keys: each configured key is its own tenant, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac

from fastapi import Request

from ..errors import AuthenticationError
from .rate_limit import RateLimiter

NO_KEYS_TENANT = "default"


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


class KeyRing:
    def __init__(self, keys: list[str]) -> None:
        # Only digests are kept; the tenant id is derived from the digest so it never reveals the key.
        self._digests = [(_digest(key), "t_" + hashlib.sha256(key.encode()).hexdigest()[:24]) for key in keys]

    @property
    def enabled(self) -> bool:
        return bool(self._digests)

    def tenant_for(self, authorization: str | None) -> str:
        if not self._digests:
            return NO_KEYS_TENANT
        if not authorization:
            raise AuthenticationError(
                "You didn't provide an API key. Provide it in an Authorization header: 'Bearer YOUR_KEY'.",
                code=None,
            )
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthenticationError("The Authorization header must be 'Bearer YOUR_KEY'.")
        offered = _digest(token.strip())
        tenant = None
        for digest, candidate in self._digests:
            # No early exit: every key is compared, so timing reveals nothing about which one matched.
            if hmac.compare_digest(digest, offered):
                tenant = candidate
        if tenant is None:
            raise AuthenticationError("Incorrect API key provided.")
        return tenant


async def tenant(request: Request) -> str:
    """FastAPI dependency: the tenant of the request's key, within its request rate limit."""
    keyring: KeyRing = request.app.state.keyring
    tenant_id = keyring.tenant_for(request.headers.get("authorization"))
    limiter: RateLimiter = request.app.state.limiter
    limiter.check(tenant_id)
    return tenant_id
