"""The request rate limit, per key and shared by replicas: OpenAI's 429 body and x-ratelimit-* headers,
and the SDK waiting out ``retry-after``."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import httpx
import openai
import pytest
from openai import OpenAI
from openai.types import ErrorObject

from assistd.api.auth import fingerprint
from conftest import Databases, make_client, start_server
from fake_upstream import FakeUpstream
from server import KEYS, AssistdServer

_DURATION = re.compile(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?")


def _seconds(duration: str) -> float:
    """OpenAI's ``x-ratelimit-reset-*`` value (``"17ms"``, ``"8.64s"``, ``"6m0s"``) in seconds."""
    if duration.endswith("ms") and duration[:-2].isdigit():
        return int(duration[:-2]) / 1000
    match = _DURATION.fullmatch(duration)
    assert match is not None and duration, duration
    hours, minutes, seconds = match.groups()
    return int(hours or 0) * 3600 + int(minutes or 0) * 60 + float(seconds or 0)


def _remaining(headers: httpx.Headers) -> int:
    return int(headers["x-ratelimit-remaining-requests"])


def _listed(client: OpenAI) -> httpx.Headers:
    """The headers of an allowed request."""
    raw = client.beta.assistants.with_raw_response.list()
    raw.parse()
    return raw.headers


def _refused(client: OpenAI) -> tuple[httpx.Response, dict[str, object]]:
    with pytest.raises(openai.RateLimitError) as refused:
        client.beta.assistants.list()
    response = refused.value.response
    assert response.status_code == 429
    body = response.json()
    # The SDK's own model of an error, and the fields it exposes on the exception, agree with the body.
    error = ErrorObject.model_validate(body["error"])
    assert (refused.value.type, refused.value.code, refused.value.param) == (error.type, error.code, None)
    return response, body


def _expected_body(key: str, per_minute: int, wait: int) -> dict[str, object]:
    return {
        "error": {
            "message": f"Rate limit reached for key {fingerprint(key)} on requests per min (RPM): "
            f"Limit {per_minute}, Requested 1. Please try again in {wait}s.",
            "type": "requests",
            "param": None,
            "code": "rate_limit_exceeded",
        }
    }


@pytest.fixture
def limited(
    tmp_path_factory: pytest.TempPathFactory, databases: Databases, fake: FakeUpstream
) -> Iterator[AssistdServer]:
    srv = start_server(tmp_path_factory, databases, fake, rate_limit_per_minute="60", rate_limit_burst="3")
    yield srv
    srv.stop()


def test_rate_limit_answers_429_with_openai_body_and_headers_per_key(limited: AssistdServer) -> None:
    with make_client(limited, KEYS[0]) as alpha, make_client(limited, KEYS[1]) as beta:
        allowed = [_listed(alpha) for _ in range(3)]
        assert [_remaining(h) for h in allowed] == [2, 1, 0]
        for headers in allowed:
            assert headers["x-ratelimit-limit-requests"] == "3"
            # Full again once the requests taken are refilled, at one a second.
            assert 0 < _seconds(headers["x-ratelimit-reset-requests"]) <= 3
        response, body = _refused(alpha)
        assert body == _expected_body(KEYS[0], 60, 1)
        assert response.headers["retry-after"] == "1"
        assert response.headers["x-ratelimit-limit-requests"] == "3"
        assert response.headers["x-ratelimit-remaining-requests"] == "0"
        assert 2 < _seconds(response.headers["x-ratelimit-reset-requests"]) <= 3
        # Another key has its own budget.
        assert _remaining(_listed(beta)) == 2
        # A counted request that fails for another reason still says where its key stands.
        with pytest.raises(openai.NotFoundError) as missing:
            beta.beta.assistants.retrieve("asst_missing")
        assert _remaining(missing.value.response.headers) == 1


def test_rate_limit_is_shared_by_replicas_on_one_database(
    tmp_path_factory: pytest.TempPathFactory, databases: Databases, fake: FakeUpstream
) -> None:
    """Two servers on one database allow the key 6 requests a minute together, not 6 each."""
    url = databases.new()
    env = {
        "ASSISTD_UPSTREAM_BASE_URL": fake.base_url,
        "ASSISTD_UPSTREAM_API_KEY": "sk-upstream-secret",
        "ASSISTD_RATE_LIMIT_PER_MINUTE": "6",
        "ASSISTD_RATE_LIMIT_BURST": "6",
    }
    replicas = [AssistdServer(tmp_path_factory.mktemp(f"replica{n}"), url, env) for n in range(2)]
    try:
        for replica in replicas:
            replica.start()
        a, b = (make_client(replica) for replica in replicas)
        with a, b:
            allowed = [_listed(client) for client in (a, b, a, b, a, b)]
            # One bucket: each request, whichever replica it reached, took from what the last one left.
            assert [_remaining(h) for h in allowed] == [5, 4, 3, 2, 1, 0]
            assert {h["x-ratelimit-limit-requests"] for h in allowed} == {"6"}
            for client in (a, b):
                response, body = _refused(client)
                wait = int(response.headers["retry-after"])
                # A token every 10 s, and the last was taken moments ago.
                assert 5 <= wait <= 10
                assert body == _expected_body(KEYS[0], 6, wait)
                assert response.headers["x-ratelimit-limit-requests"] == "6"
                assert response.headers["x-ratelimit-remaining-requests"] == "0"
                assert 50 < _seconds(response.headers["x-ratelimit-reset-requests"]) <= 60
    finally:
        for replica in replicas:
            replica.stop()


def test_rate_limit_keys_of_one_tenant_have_separate_budgets(
    tmp_path_factory: pytest.TempPathFactory, databases: Databases, fake: FakeUpstream
) -> None:
    one, two = "sk-team-one", "sk-team-two"
    srv = start_server(
        tmp_path_factory,
        databases,
        fake,
        api_keys=f"team:{one},team:{two}",
        rate_limit_per_minute="60",
        rate_limit_burst="2",
    )
    try:
        with make_client(srv, one) as first, make_client(srv, two) as second:
            assistant = first.beta.assistants.create(model="fake-model", name="shared by the team")
            assert _remaining(_listed(first)) == 0
            response, body = _refused(first)
            assert body == _expected_body(one, 60, 1)
            assert response.headers["retry-after"] == "1"
            # The same tenant (it sees the first key's assistant), with a budget of its own.
            raw = second.beta.assistants.with_raw_response.retrieve(assistant.id)
            assert raw.parse() == assistant
            assert _remaining(raw.headers) == 1
    finally:
        srv.stop()


def test_rate_limit_sdk_retries_after_retry_after(
    tmp_path_factory: pytest.TempPathFactory, databases: Databases, fake: FakeUpstream
) -> None:
    srv = start_server(tmp_path_factory, databases, fake, rate_limit_per_minute="60", rate_limit_burst="1")
    try:
        with OpenAI(base_url=srv.base_url, api_key=KEYS[0], max_retries=2, timeout=30) as client:
            assert _remaining(_listed(client)) == 0
            started = time.monotonic()
            raw = client.beta.assistants.with_raw_response.list()
            waited = time.monotonic() - started
        # Refused once, then retried once after the 1 s the server asked for. The SDK's own first
        # backoff (at most 0.5 s) would have been refused again and needed a second retry.
        assert raw.retries_taken == 1
        assert waited >= 1.0
        assert _remaining(raw.headers) == 0
    finally:
        srv.stop()


def test_rate_limit_off_sends_no_rate_limit_headers(client: OpenAI) -> None:
    headers = _listed(client)
    assert not [name for name in headers if name.startswith("x-ratelimit-")]
