from __future__ import annotations

import httpx2
import openai

from assistd.llm.retry import backoff_seconds, is_retryable, retry_after_seconds


def _status_error(status: int, headers: dict[str, str] | None = None) -> openai.APIStatusError:
    request = httpx2.Request("POST", "http://upstream/v1/chat/completions")
    response = httpx2.Response(status, headers=headers or {}, request=request)
    return openai.APIStatusError("failed", response=response, body=None)


def test_retryable_statuses_and_connection_errors() -> None:
    assert is_retryable(_status_error(429))
    assert is_retryable(_status_error(500))
    assert is_retryable(_status_error(503))
    assert not is_retryable(_status_error(400))
    assert not is_retryable(_status_error(401))
    request = httpx2.Request("POST", "http://upstream")
    assert is_retryable(openai.APITimeoutError(request=request))
    assert is_retryable(openai.APIConnectionError(request=request))
    assert not is_retryable(ValueError("not a transport problem"))


def test_retry_after_header_forms() -> None:
    assert retry_after_seconds(_status_error(429, {"retry-after": "2"})) == 2.0
    assert retry_after_seconds(_status_error(429, {"retry-after-ms": "250"})) == 0.25
    assert retry_after_seconds(_status_error(429, {"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"})) == 0.0
    assert retry_after_seconds(_status_error(429, {"retry-after": "soon"})) is None
    assert retry_after_seconds(_status_error(500)) is None


def test_backoff_grows_and_is_capped() -> None:
    for attempt in range(1, 10):
        wait = backoff_seconds(attempt, base=0.5, cap=4.0)
        assert 0.0 <= wait <= min(4.0, 0.5 * 2 ** (attempt - 1))
