"""Per-tenant request rate limit: a token bucket that answers 429 with Retry-After when empty."""

from __future__ import annotations

import math
import time

from ..errors import RateLimitError


class RateLimiter:
    def __init__(self, per_minute: int, burst: int | None = None) -> None:
        self.rate = per_minute / 60.0
        self.capacity = float(burst if burst else max(1, per_minute))
        self._buckets: dict[str, tuple[float, float]] = {}

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def check(self, tenant: str) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        tokens, last = self._buckets.get(tenant, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - last) * self.rate)
        if tokens < 1.0:
            wait = math.ceil((1.0 - tokens) / self.rate)
            self._buckets[tenant] = (tokens, now)
            raise RateLimitError(
                f"Rate limit reached for requests: {int(self.rate * 60)} per minute. Try again in {wait}s.",
                headers={"Retry-After": str(wait)},
            )
        self._buckets[tenant] = (tokens - 1.0, now)
