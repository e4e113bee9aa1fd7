"""Keys and tenants: plain keys keep their historical tenant; ``name:key`` entries share a named one."""

from __future__ import annotations

import hashlib

import pytest

from assistd.api.auth import KeyRing, fingerprint, key_entries
from assistd.errors import AuthenticationError


def bearer(key: str) -> str:
    return f"Bearer {key}"


def test_plain_key_tenant_is_unchanged() -> None:
    ring = KeyRing(["sk-test-alpha", "sk-test-beta"])
    # The derivation every existing deployment's rows were stored under.
    assert (
        ring.tenant_for(bearer("sk-test-alpha")) == "t_" + hashlib.sha256(b"sk-test-alpha").hexdigest()[:24]
    )
    assert ring.tenant_for(bearer("sk-test-alpha")) != ring.tenant_for(bearer("sk-test-beta"))


def test_named_entries_share_a_tenant_apart_from_plain_keys() -> None:
    ring = KeyRing(["acme:sk-a", "acme:sk-b", "other:sk-c", "sk-d"])
    a, b = ring.identify(bearer("sk-a")), ring.identify(bearer("sk-b"))
    assert a.tenant == b.tenant and a.fingerprint != b.fingerprint
    assert ring.tenant_for(bearer("sk-c")) != a.tenant
    # A plain key spelled like the named entry's hashed text gets a different tenant all the same.
    assert KeyRing(["name:acme"]).tenant_for(bearer("acme")) != a.tenant
    assert KeyRing(["acme"]).tenant_for(bearer("acme")) != a.tenant
    with pytest.raises(AuthenticationError):
        ring.identify(bearer("acme:sk-a"))  # the entry's name is not part of the key


def test_fingerprints_are_public_and_stable() -> None:
    assert fingerprint("sk-a") == "key_" + hashlib.sha256(b"sk-a").hexdigest()[:12]
    assert KeyRing(["team:sk-a"]).identify(bearer("sk-a")).fingerprint == fingerprint("sk-a")
    assert KeyRing([]).identify(None).fingerprint is None


def test_a_key_in_two_tenants_is_refused_without_showing_it() -> None:
    with pytest.raises(ValueError) as info:
        key_entries(["a:sk-same", "b:sk-same"])
    assert "sk-same" not in str(info.value) and fingerprint("sk-same") in str(info.value)
    assert len(key_entries(["sk-same", "sk-same"])) == 2  # listed twice, one tenant: harmless


def test_malformed_named_entry() -> None:
    with pytest.raises(ValueError):
        key_entries([":sk-a"])
    with pytest.raises(ValueError):
        key_entries(["acme:"])
