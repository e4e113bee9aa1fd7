"""The request rate limit: a token bucket per API key, kept in the database so that every replica (and
every process of one) spends from the same bucket, and N replicas together allow the configured rate.

Answers follow OpenAI's: a refused request is a 429 with ``retry-after`` (whole seconds) and the
``x-ratelimit-*-requests`` headers, and an allowed one carries those headers too. The headers are left in
the request's state by the caller dependency and added to the response by ``RateLimitHeaders``, because
most routes build their own ``Response``, which FastAPI would not merge a dependency's headers into.

SQLite uses the same database bucket: one implementation, and it is what keeps ``--processes N`` on one
SQLite file to the configured rate. The price, only while limiting is on, is one short write transaction
per request, which on SQLite takes its turn on the write lock.
"""

from __future__ import annotations

import math
import time
from typing import Final

from fastapi import FastAPI
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import RateLimitError
from ..store import rate_buckets
from ..store.database import Database
from .auth import Caller

# Where the caller dependency leaves an allowed request's headers for ``RateLimitHeaders``.
STATE_KEY: Final = "rate_limit_headers"
# Buckets are named by what they limit, so a later limit (tokens, say) cannot share a row with this one.
_BUCKET_PREFIX: Final = "requests:"


def go_duration(seconds: float) -> str:
    """``seconds`` as OpenAI writes ``x-ratelimit-reset-*`` (Go's duration format, to the millisecond):
    ``"17ms"``, ``"1s"``, ``"8.64s"``, ``"6m0s"``, ``"1h0m0s"``."""
    ms = max(0, round(seconds * 1000))
    if ms == 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    whole, fraction = divmod(ms, 1000)
    secs = f"{whole}.{fraction:03d}".rstrip("0") if fraction else str(whole)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


class RateLimiter:
    """``per_minute`` requests a minute per key (0: no limit), in bursts of up to ``burst`` (default: the
    per-minute rate)."""

    def __init__(self, per_minute: int, burst: int | None = None) -> None:
        self.per_minute = per_minute
        self.rate = per_minute / 60.0
        self.capacity = float(burst if burst else max(1, per_minute))

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def for_key(self, per_minute: int | None) -> RateLimiter:
        """The limit of a key with its own requests per minute (a managed key's quota, its bucket as
        large), else this one."""
        if per_minute is None or per_minute == self.per_minute:
            return self
        return RateLimiter(per_minute)

    def install(self, app: FastAPI) -> RateLimiter:
        """Add the middleware that puts the headers on allowed responses; returns the limiter. It is
        added even without a server-wide limit, because a managed key may carry its own (and its token
        quota's headers go the same way); with nothing to add it passes responses through untouched."""
        app.add_middleware(RateLimitHeaders)
        return self

    async def check(self, db: Database, caller: Caller, *, now: float | None = None) -> dict[str, str]:
        """Spend one request from the caller's bucket, shared with every replica on ``db``: the
        ``x-ratelimit-*`` headers for the response, or ``RateLimitError`` (429) when the bucket is empty.

        The bucket is the key's, by its fingerprint (the key itself is never stored). Without configured
        keys no key identifies anyone, so all requests share the one tenant's bucket.
        """
        key = caller.fingerprint or caller.tenant
        # Wall-clock time, not monotonic: the buckets are shared by processes and hosts.
        at = time.time() if now is None else now
        async with db.write() as session:
            spent = await rate_buckets.spend(
                session, _BUCKET_PREFIX + key, capacity=self.capacity, per_second=self.rate, now=at
            )
        return self.verdict(spent, caller.fingerprint)

    def verdict(self, spent: rate_buckets.Spent, fingerprint: str | None) -> dict[str, str]:
        """The answer to a spend from a bucket: its headers when allowed, else a ``RateLimitError``."""
        left = max(0.0, spent.remaining)
        headers = {
            # The most requests allowed at once (the bucket's size), the whole ones left now, and how
            # long until the bucket is full again.
            "x-ratelimit-limit-requests": str(int(self.capacity)),
            "x-ratelimit-remaining-requests": str(math.floor(left)),
            "x-ratelimit-reset-requests": go_duration((self.capacity - left) / self.rate),
        }
        if spent.allowed:
            return headers
        # Whole seconds, rounded up: a client that waits this long finds a token (unless another of the
        # key's requests took it first).
        wait = max(1, math.ceil((1.0 - left) / self.rate))
        whose = f" for key {fingerprint}" if fingerprint else ""
        raise RateLimitError(
            f"Rate limit reached{whose} on requests per min (RPM): Limit {self.per_minute}, Requested 1. "
            f"Please try again in {wait}s.",
            headers={"retry-after": str(wait), **headers},
        )


class RateLimitHeaders:
    """Adds the ``x-ratelimit-*`` headers the caller dependency left in the request's state to the
    response. A 429 carries its own (``RateLimitError.headers``); none is sent twice."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # ``request.state`` is this dict: made here, the dependency's writes land where this reads.
        state: dict[str, object] = scope.setdefault("state", {})

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                found = state.get(STATE_KEY)
                if isinstance(found, dict):
                    headers = MutableHeaders(scope=message)
                    for name, value in found.items():
                        if name not in headers:
                            headers.append(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)
