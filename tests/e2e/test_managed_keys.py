"""Keys managed in the database: ``assistd keys create|list|revoke`` and ``/admin/keys``, shown once and
stored hashed, refused once revoked (within the cache bound) or expired, sharing a named tenant with static
``name:key`` keys, and each quota answered with OpenAI's 429 body and headers; static keys unchanged."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI

from assistd.api.auth import fingerprint
from conftest import Databases, make_client, start_server
from fake_upstream import FakeUpstream, Text
from server import AssistdServer

ADMIN_KEY = "sk-admin-of-keys"
STATIC_ACME, STATIC_SOLO = "sk-static-acme", "sk-static-solo"
CACHE_SECONDS = 1.0


@pytest.fixture(scope="module")
def managed(
    tmp_path_factory: pytest.TempPathFactory, databases: Databases, fake: FakeUpstream
) -> Iterator[AssistdServer]:
    srv = start_server(
        tmp_path_factory,
        databases,
        fake,
        api_keys=f"acme:{STATIC_ACME},{STATIC_SOLO}",
        admin_key=ADMIN_KEY,
        key_cache_seconds=str(CACHE_SECONDS),
    )
    yield srv
    srv.stop()


def admin(server: AssistdServer, key: str = ADMIN_KEY) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=60)


def create_key(server: AssistdServer, **body: Any) -> dict[str, Any]:
    with admin(server) as client:
        response = client.post("/admin/keys", json=body)
    assert response.status_code == 200, response.text
    created: dict[str, Any] = response.json()
    return created


def keys_cli(server: AssistdServer, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASSISTD_")}
    env |= {
        "ASSISTD_DATABASE_URL": server.database_url,
        "ASSISTD_DATA_DIR": str(server.data_dir),
        "ASSISTD_API_KEYS": f"acme:{STATIC_ACME},{STATIC_SOLO}",
    }
    return subprocess.run(
        [sys.executable, "-m", "assistd", "keys", *args], env=env, capture_output=True, text=True, timeout=120
    )


def refused(client: OpenAI) -> openai.APIStatusError:
    with pytest.raises(openai.APIStatusError) as caught:
        client.beta.assistants.list()
    return caught.value


def assert_unknown_key(client: OpenAI) -> None:
    error = refused(client)
    assert error.status_code == 401
    assert error.response.json() == {
        "error": {
            "message": "Incorrect API key provided.",
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_api_key",
        }
    }


def test_admin_api_shows_the_key_once_lists_pages_and_revokes(managed: AssistdServer) -> None:
    created = create_key(managed, description="ci")
    key = created["key"]
    assert key.startswith("sk-") and len(key) >= 40
    assert created["id"] == fingerprint(key) and created["object"] == "api_key"
    assert created["description"] == "ci" and created["revoked_at"] is None
    more = [create_key(managed)["id"] for _ in range(2)]

    with admin(managed) as client:
        listed = client.get("/admin/keys", params={"limit": 2, "order": "asc"})
        assert listed.status_code == 200
        # The secret appears nowhere but in the create's answer.
        assert key not in listed.text and "key" not in listed.json()["data"][0]
        ids = [item["id"] for item in listed.json()["data"]]
        assert listed.json()["has_more"] is True
        while listed.json()["has_more"]:
            listed = client.get("/admin/keys", params={"limit": 2, "order": "asc", "after": ids[-1]})
            ids += [item["id"] for item in listed.json()["data"]]
        assert ids.index(created["id"]) < ids.index(more[0]) < ids.index(more[1])
        assert len(ids) == len(set(ids))
        one = client.get(f"/admin/keys/{created['id']}")
        assert one.status_code == 200 and key not in one.text
        assert one.json() == {k: v for k, v in created.items() if k != "key"} | {
            "last_used_at": one.json()["last_used_at"]
        }
        missing = client.get("/admin/keys/key_000000000000")
        assert missing.status_code == 404 and missing.json()["error"]["type"] == "invalid_request_error"

    with make_client(managed, key) as tenant:
        made = tenant.beta.assistants.create(model="fake-model", name="managed")
        assert tenant.beta.assistants.retrieve(made.id).name == "managed"
        with admin(managed) as client:
            # Its first use is written at once (then at most once a minute).
            assert client.get(f"/admin/keys/{created['id']}").json()["last_used_at"] is not None
            revoked = client.delete(f"/admin/keys/{created['id']}")
            assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
        # Revoked on the process that serves it: refused at once, as an unknown key.
        assert_unknown_key(tenant)
    with admin(managed) as client:
        assert client.get(f"/admin/keys/{created['id']}").json()["revoked_at"] == revoked.json()["revoked_at"]


def test_cli_creates_lists_and_revokes_within_the_cache_bound(managed: AssistdServer) -> None:
    made = keys_cli(managed, "create", "--tenant", "acme", "--description", "from the cli")
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    assert key.startswith("sk-") and "\n" not in key and fingerprint(key) in made.stderr

    listed = keys_cli(managed, "list")
    assert listed.returncode == 0, listed.stderr
    assert fingerprint(key) in listed.stdout and key not in listed.stdout and STATIC_ACME not in listed.stdout
    row = next(line.split() for line in listed.stdout.splitlines() if line.startswith(fingerprint(key)))
    assert row[2:4] == ["acme", "active"]

    with make_client(managed, key) as managed_client, make_client(managed, STATIC_ACME) as static_client:
        # A managed key of tenant "acme" and the static acme:key share the tenant's objects.
        mine = managed_client.beta.assistants.create(model="fake-model", name="made-by-managed")
        theirs = static_client.beta.assistants.create(model="fake-model", name="made-by-static")
        assert static_client.beta.assistants.retrieve(mine.id).name == "made-by-managed"
        assert managed_client.beta.assistants.retrieve(theirs.id).name == "made-by-static"
        with make_client(managed, STATIC_SOLO) as solo, pytest.raises(openai.NotFoundError):
            solo.beta.assistants.retrieve(mine.id)

        revoked = keys_cli(managed, "revoke", fingerprint(key))
        assert revoked.returncode == 0, revoked.stderr
        # Revoked by another process: the server's cached lookup of the key lasts at most CACHE_SECONDS.
        time.sleep(CACHE_SECONDS + 0.5)
        assert_unknown_key(managed_client)
        assert static_client.beta.assistants.retrieve(theirs.id).id == theirs.id

    again = keys_cli(managed, "revoke", "key_000000000000")
    assert again.returncode == 2 and "key_000000000000" in again.stderr
    assert keys_cli(managed, "list").stdout.count("revoked") >= 1


def test_expired_key_is_refused_as_an_unknown_key(managed: AssistdServer) -> None:
    created = create_key(managed, expires_at=int(time.time()) + 2)
    with make_client(managed, created["key"]) as client:
        assert client.beta.assistants.list().data == []
        time.sleep(max(0.0, created["expires_at"] - time.time()) + 0.2)
        assert_unknown_key(client)


def test_admin_api_takes_only_the_admin_key(managed: AssistdServer, server: AssistdServer) -> None:
    tenant_key = create_key(managed)["key"]
    for key in (STATIC_ACME, tenant_key):
        with admin(managed, key) as client:
            for response in (client.get("/admin/keys"), client.post("/admin/keys", json={})):
                assert response.status_code == 403
                error = response.json()["error"]
                assert set(error) == {"message", "type", "param", "code"}
                assert error["type"] == "invalid_request_error" and "admin key" in error["message"]
    with admin(managed, "sk-nobody") as client:
        assert client.get("/admin/keys").status_code == 401
    assert httpx.get(f"{managed.url}/admin/keys", timeout=60).status_code == 401
    # Without ASSISTD_ADMIN_KEY there is no admin API at all.
    with admin(server) as client:
        gone = client.get("/admin/keys")
        assert gone.status_code == 404 and gone.json()["error"]["code"] == "unknown_url"
    # A quota below 1 is refused, naming the parameter.
    with admin(managed) as client:
        bad = client.post("/admin/keys", json={"tokens_per_day": 0})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "tokens_per_day"


def test_requests_per_minute_quota(managed: AssistdServer) -> None:
    created = create_key(managed, requests_per_minute=2)
    with make_client(managed, created["key"]) as client, make_client(managed, STATIC_SOLO) as other:
        for left in (1, 0):
            raw = client.beta.assistants.with_raw_response.list()
            assert raw.headers["x-ratelimit-limit-requests"] == "2"
            assert raw.headers["x-ratelimit-remaining-requests"] == str(left)
        with pytest.raises(openai.RateLimitError) as caught:
            client.beta.assistants.list()
        response = caught.value.response
        wait = int(response.headers["retry-after"])
        assert 1 <= wait <= 30
        assert response.headers["x-ratelimit-limit-requests"] == "2"
        assert response.headers["x-ratelimit-remaining-requests"] == "0"
        assert response.json() == {
            "error": {
                "message": f"Rate limit reached for key {created['id']} on requests per min (RPM): Limit 2, "
                f"Requested 1. Please try again in {wait}s.",
                "type": "requests",
                "param": None,
                "code": "rate_limit_exceeded",
            }
        }
        # Another key (no server-wide limit here) is not limited.
        for _ in range(4):
            other.beta.assistants.list()


def test_tokens_per_day_quota(managed: AssistdServer, fake: FakeUpstream) -> None:
    created = create_key(managed, tokens_per_day=100)
    with make_client(managed, created["key"]) as client:
        assistant = client.beta.assistants.create(model="fake-model")
        fake.push(Text("A long answer.", prompt_tokens=80, completion_tokens=40))
        raw = client.beta.threads.with_raw_response.create_and_run(assistant_id=assistant.id)
        assert raw.headers["x-ratelimit-limit-tokens"] == "100"
        assert raw.headers["x-ratelimit-remaining-tokens"] == "100"
        run = raw.parse()
        done = client.beta.threads.runs.poll(run.id, thread_id=run.thread_id, poll_interval_ms=50)
        assert done.status == "completed" and done.usage is not None and done.usage.total_tokens == 120

        with pytest.raises(openai.RateLimitError) as caught:
            client.beta.threads.runs.create(thread_id=run.thread_id, assistant_id=assistant.id)
        response = caught.value.response
        wait = int(response.headers["retry-after"])
        # Until the next UTC midnight.
        assert 1 <= wait <= 86_400 and abs(wait - (86_400 - time.time() % 86_400)) < 60
        assert response.headers["x-ratelimit-limit-tokens"] == "100"
        assert response.headers["x-ratelimit-remaining-tokens"] == "0"
        assert response.headers["x-ratelimit-reset-tokens"]
        assert response.json() == {
            "error": {
                "message": f"Rate limit reached for key {created['id']} on tokens per day (TPD): Limit 100, "
                f"Used 120. Please try again in {wait}s.",
                "type": "tokens",
                "param": None,
                "code": "rate_limit_exceeded",
            }
        }
        # Reading is not spending: the key still works for everything else.
        assert client.beta.threads.runs.retrieve(run.id, thread_id=run.thread_id).id == run.id


def test_tokens_per_day_counts_and_refuses_ask_too(managed: AssistdServer, fake: FakeUpstream) -> None:
    created = create_key(managed, tokens_per_day=10)
    with admin(managed, created["key"]) as client:
        fake.push(Text("Short.", prompt_tokens=8, completion_tokens=5))
        answered = client.post("/ask", json={"session_id": "s1", "user_input": "Hello?"})
        assert answered.status_code == 200, answered.text
        assert answered.headers["x-ratelimit-remaining-tokens"] == "10"
        over = client.post("/ask", json={"session_id": "s1", "user_input": "Again?"})
        assert over.status_code == 429 and int(over.headers["retry-after"]) >= 1
        assert over.headers["x-ratelimit-remaining-tokens"] == "0"
        assert over.json()["error"]["type"] == "tokens" and "Used 13." in over.json()["error"]["message"]


def test_storage_quota(managed: AssistdServer) -> None:
    created = create_key(managed, storage_bytes=100)
    with make_client(managed, created["key"]) as client:
        first = client.files.create(file=("a.txt", b"a" * 60), purpose="assistants")
        with pytest.raises(openai.RateLimitError) as caught:
            client.files.create(file=("b.txt", b"b" * 60), purpose="assistants")
        response = caught.value.response
        assert response.headers["retry-after"] == "60"
        assert response.headers["x-ratelimit-limit-storage-bytes"] == "100"
        assert response.headers["x-ratelimit-remaining-storage-bytes"] == "40"
        assert response.json() == {
            "error": {
                "message": f"Storage limit reached for key {created['id']}: Limit 100 bytes, Used 60, "
                "Requested 60. Delete files to free space.",
                "type": "storage",
                "param": None,
                "code": "rate_limit_exceeded",
            }
        }
        assert [f.id for f in client.files.list().data] == [first.id]
        client.files.delete(first.id)
        assert client.files.create(file=("b.txt", b"b" * 60), purpose="assistants").bytes == 60


def test_storage_quota_counts_the_keys_own_uploads_in_a_shared_tenant(managed: AssistdServer) -> None:
    """Two keys of one tenant: each one's quota counts what it uploaded, not what the other did; uploads
    of one key at the same instant cannot both pass the last free bytes."""
    tenant = f"shared-{uuid.uuid4().hex[:8]}"
    small = create_key(managed, tenant_name=tenant, storage_bytes=100)
    large = create_key(managed, tenant_name=tenant, storage_bytes=1000)
    with make_client(managed, large["key"]) as big, make_client(managed, small["key"]) as little:
        big.files.create(file=("big.txt", b"x" * 500), purpose="assistants")
        mine = little.files.create(file=("mine.txt", b"y" * 60), purpose="assistants")
        assert {f.id for f in big.files.list().data} >= {mine.id}, "the tenant's files are shared"

        def upload(n: int) -> int:
            try:
                little.files.create(file=(f"race{n}.txt", b"z" * 30), purpose="assistants")
            except openai.RateLimitError:
                return 0
            return 1

        with ThreadPoolExecutor(4) as pool:
            stored = sum(pool.map(upload, range(4)))
    assert stored == 1, "60 of 100 bytes used: one more upload of 30 fits, not two"


def test_static_keys_and_the_no_key_default_are_unchanged(
    tmp_path_factory: pytest.TempPathFactory, databases: Databases, fake: FakeUpstream, managed: AssistdServer
) -> None:
    with make_client(managed, STATIC_SOLO) as solo, make_client(managed, STATIC_ACME) as acme:
        made = solo.beta.assistants.create(model="fake-model")
        assert solo.beta.assistants.retrieve(made.id).id == made.id
        with pytest.raises(openai.NotFoundError):
            acme.beta.assistants.retrieve(made.id)

    open_server = start_server(
        tmp_path_factory, databases, fake, api_keys="", key_cache_seconds=str(CACHE_SECONDS)
    )
    try:
        with make_client(open_server, "anything") as one, make_client(open_server, "else") as two:
            made = one.beta.assistants.create(model="fake-model")
            assert two.beta.assistants.retrieve(made.id).id == made.id
            # Once a key is created in the database, keys are required (within the cache bound).
            created = keys_cli(open_server, "create")
            assert created.returncode == 0, created.stderr
            time.sleep(CACHE_SECONDS + 0.5)
            assert_unknown_key(two)
            with make_client(open_server, created.stdout.strip()) as keyed:
                assert keyed.beta.assistants.list().data == []
    finally:
        open_server.stop()
