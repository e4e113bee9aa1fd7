from __future__ import annotations

import pytest

from assistd.api.rate_limit import RateLimiter
from assistd.errors import RateLimitError


def test_rate_limiter_allows_a_burst_then_refuses_with_retry_after() -> None:
    limiter = RateLimiter(per_minute=60, burst=3)
    for _ in range(3):
        limiter.check("t1")
    with pytest.raises(RateLimitError) as refused:
        limiter.check("t1")
    assert refused.value.status_code == 429
    assert refused.value.headers == {"Retry-After": "1"}
    assert refused.value.body()["error"]["code"] == "rate_limit_exceeded"


def test_rate_limiter_keeps_tenants_apart() -> None:
    limiter = RateLimiter(per_minute=60, burst=1)
    limiter.check("t1")
    limiter.check("t2")
    with pytest.raises(RateLimitError):
        limiter.check("t1")


def test_rate_limiter_off_by_default() -> None:
    limiter = RateLimiter(per_minute=0)
    assert not limiter.enabled
    for _ in range(1000):
        limiter.check("t1")
