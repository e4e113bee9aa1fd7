"""When and how long to wait before asking an upstream again."""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from time import monotonic, time

import httpx2 as httpx
import openai

from ..errors import UpstreamError

log = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})


class TransientUpstreamError(Exception):
    """A failure of one answer that asking again may not repeat (a garbled stream, as a dropped
    connection can be): retried like a 5xx."""


def is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in RETRYABLE_STATUS or exc.status_code >= 500
    return isinstance(exc, openai.APIConnectionError | httpx.TransportError | TransientUpstreamError)


def retry_after_seconds(exc: BaseException) -> float | None:
    """The wait the upstream asked for in ``retry-after-ms`` or ``Retry-After``, if any."""
    if not isinstance(exc, openai.APIStatusError):
        return None
    headers = exc.response.headers
    if (ms := headers.get("retry-after-ms")) is not None:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time())
    except (TypeError, ValueError):
        return None


def backoff_seconds(attempt: int, base: float, cap: float = 20.0) -> float:
    """Exponential backoff with full jitter for the ``attempt``-th retry (1-based)."""
    return random.uniform(0, min(cap, base * 2 ** (attempt - 1)))


def next_wait(
    exc: BaseException, attempt: int, base: float, max_retries: int, deadline: float
) -> float | None:
    """Seconds to wait before retry number ``attempt`` (1-based), or None once retries or time run out.
    ``deadline`` is on the ``time.monotonic()`` clock."""
    wait = retry_after_seconds(exc)
    if wait is None:
        wait = backoff_seconds(attempt, base)
    if attempt > max_retries or monotonic() + wait > deadline:
        return None
    return wait


def describe(exc: BaseException) -> str:
    if isinstance(exc, openai.APIStatusError):
        return f"HTTP {exc.status_code}"
    if isinstance(exc, openai.APITimeoutError | httpx.TimeoutException | TimeoutError):
        # httpx's read timeouts carry no message: without this a stalled stream reads "ReadTimeout: ".
        return f"timed out ({type(exc).__name__})"
    return type(exc).__name__


def upstream_error(
    exc: BaseException, service: str, secret: str, *, exhausted: bool, asked_wait: float | None = None
) -> UpstreamError:
    """What the run or file reports of a failed upstream call: the kind of failure, never the key.
    ``asked_wait``: the retry-after the upstream asked for, when it alone ran past the retry budget."""
    status = exc.status_code if isinstance(exc, openai.APIStatusError) else None
    code = "rate_limit_exceeded" if status == 429 else "server_error"
    detail = str(exc).replace(secret, "***") if len(secret) >= 4 else str(exc)
    if asked_wait is not None:
        prefix = f"{service} asked to wait {asked_wait:g}s before a retry, past the retry budget"
    elif exhausted:
        prefix = f"{service} kept failing after retries"
    else:
        prefix = f"{service} failed"
    message = f"{prefix}: {describe(exc)}: {detail}" if detail else f"{prefix}: {describe(exc)}"
    return UpstreamError(message[:1000], code=code)


def upstream_status(exc: UpstreamError) -> int | None:
    """The HTTP status the upstream answered with, for an ``UpstreamError`` made of its answer (None for a
    failure with no answer: a timeout, a dropped connection)."""
    cause = exc.__cause__
    return cause.status_code if isinstance(cause, openai.APIStatusError) else None


@dataclass(frozen=True)
class RetryPolicy:
    """How one upstream service is retried: at most ``max_retries`` times within ``budget`` seconds per
    request, backing off from ``base`` seconds. ``service`` names it in errors and logs."""

    service: str
    secret: str
    max_retries: int
    budget: float
    base: float

    def start(self) -> Attempts:
        """The retry state of one request, its time budget starting now."""
        return Attempts(self, monotonic() + self.budget)

    def error(
        self, exc: BaseException, *, exhausted: bool = False, asked_wait: float | None = None
    ) -> UpstreamError:
        return upstream_error(exc, self.service, self.secret, exhausted=exhausted, asked_wait=asked_wait)


@dataclass
class Attempts:
    policy: RetryPolicy
    deadline: float
    failures: int = field(default=0)

    async def failed(self, exc: BaseException, *, retryable: bool = True) -> None:
        """Wait before trying again, or raise what the caller reports when it must not or cannot."""
        policy = self.policy
        if not retryable or not is_retryable(exc):
            raise policy.error(exc) from exc
        self.failures += 1
        wait = next_wait(exc, self.failures, policy.base, policy.max_retries, self.deadline)
        if wait is None:
            # Retries left but a retry-after past the deadline: say that, not "kept failing after retries".
            asked = retry_after_seconds(exc) if self.failures <= policy.max_retries else None
            raise policy.error(exc, exhausted=True, asked_wait=asked) from exc
        log.warning(
            "%s: attempt %d failed (%s); retrying in %.2fs",
            policy.service,
            self.failures,
            describe(exc),
            wait,
        )
        await asyncio.sleep(wait)
