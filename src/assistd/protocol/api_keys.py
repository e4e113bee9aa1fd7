"""Managed API keys, as the admin API (``/admin/keys``) shows and creates them (an assistd extension)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from .common import RequestModel, WireModel

# Quotas are stored in 64-bit columns but requests per minute in a 32-bit one.
_PerMinute = Annotated[int, Field(ge=1, le=2**31 - 1)]
_Amount = Annotated[int, Field(ge=1, le=2**62)]


class ApiKey(WireModel):
    """A key without its secret: ``id`` is its public fingerprint (``key_`` + 12 hex digits of its
    SHA-256), the same as a static key's."""

    id: str
    object: Literal["api_key"] = "api_key"
    tenant: str
    tenant_name: str | None
    description: str | None
    created_at: int
    expires_at: int | None
    revoked_at: int | None
    last_used_at: int | None
    requests_per_minute: int | None
    tokens_per_day: int | None
    storage_bytes: int | None


class CreatedApiKey(ApiKey):
    """The answer to a create: the only time the key itself is shown."""

    key: str


class ApiKeyCreateParams(RequestModel):
    # A shared named tenant (the same as a static ``name:key`` entry's); unset: the key's own tenant.
    tenant_name: Annotated[str | None, Field(min_length=1, max_length=256)] = None
    description: Annotated[str | None, Field(max_length=512)] = None
    # Unix seconds; after it the key is refused as an unknown one.
    expires_at: Annotated[int | None, Field(ge=0, le=2**62)] = None
    requests_per_minute: _PerMinute | None = None
    tokens_per_day: _Amount | None = None
    storage_bytes: _Amount | None = None
