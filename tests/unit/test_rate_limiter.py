"""The limiter's answers to a spend from a bucket, and OpenAI's duration format (no database here)."""

from __future__ import annotations

import pytest

from assistd.api.rate_limit import RateLimiter, go_duration
from assistd.errors import RateLimitError
from assistd.store.rate_buckets import Spent


def test_go_duration_writes_openai_reset_values() -> None:
    cases = {
        0.0: "0s",
        0.0004: "0s",
        0.017: "17ms",
        0.9994: "999ms",
        1.0: "1s",
        8.64: "8.64s",
        59.9996: "1m0s",
        90.5: "1m30.5s",
        360.0: "6m0s",
        3600.0: "1h0m0s",
        3723.25: "1h2m3.25s",
        -1.0: "0s",
    }
    assert {seconds: go_duration(seconds) for seconds in cases} == cases


def test_rate_limiter_allowed_spend_gives_openai_headers() -> None:
    limiter = RateLimiter(per_minute=60)
    # OpenAI's documented example: a limit of 60, 59 left, full again in a second.
    assert limiter.verdict(Spent(allowed=True, remaining=59.0), "key_0123456789ab") == {
        "x-ratelimit-limit-requests": "60",
        "x-ratelimit-remaining-requests": "59",
        "x-ratelimit-reset-requests": "1s",
    }


def test_rate_limiter_burst_is_the_limit_and_partial_tokens_round_down() -> None:
    limiter = RateLimiter(per_minute=6, burst=3)
    assert limiter.verdict(Spent(allowed=True, remaining=1.5), None) == {
        "x-ratelimit-limit-requests": "3",
        "x-ratelimit-remaining-requests": "1",
        "x-ratelimit-reset-requests": "15s",
    }


def test_rate_limiter_refusal_is_openai_429_with_retry_after() -> None:
    limiter = RateLimiter(per_minute=6, burst=6)
    with pytest.raises(RateLimitError) as refused:
        limiter.verdict(Spent(allowed=False, remaining=0.25), "key_0123456789ab")
    error = refused.value
    assert error.status_code == 429
    assert error.body() == {
        "error": {
            "message": "Rate limit reached for key key_0123456789ab on requests per min (RPM): Limit 6, "
            "Requested 1. Please try again in 8s.",
            "type": "requests",
            "param": None,
            "code": "rate_limit_exceeded",
        }
    }
    assert error.headers == {
        "retry-after": "8",  # 0.75 of a token at one per 10 s: 7.5 s, rounded up
        "x-ratelimit-limit-requests": "6",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "57.5s",
    }


def test_rate_limiter_refusal_without_keys_names_no_key() -> None:
    with pytest.raises(RateLimitError) as refused:
        RateLimiter(per_minute=120).verdict(Spent(allowed=False, remaining=0.999), None)
    assert refused.value.message == (
        "Rate limit reached on requests per min (RPM): Limit 120, Requested 1. Please try again in 1s."
    )
    # Never "0": a client told to wait 0 s would come straight back.
    assert refused.value.headers["retry-after"] == "1"


def test_rate_limiter_off_by_default() -> None:
    assert not RateLimiter(per_minute=0).enabled
    assert RateLimiter(per_minute=1).enabled
