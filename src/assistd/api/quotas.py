"""A managed key's token and storage quotas, answered as the request rate limit is: OpenAI's 429 with
``retry-after`` and ``x-ratelimit-*`` headers (its requests per minute are the rate limiter's own bucket).

Tokens per day are counted per key and UTC day as its runs' turns are recorded (engine/executor.py), and
checked when a run is created or continued: a run under way is not cut off, so a day may end up to one
run's usage past the limit. Storage is the bytes of the files the key uploaded that are still stored,
checked on each upload; deleting files frees it, so its ``retry-after`` is only a nominal wait.
"""

from __future__ import annotations

import math
import time
from typing import Final

from sqlalchemy.ext.asyncio import AsyncSession

from ..errors import StorageLimitError, TokenRateLimitError
from ..store import api_keys as store
from ..store.database import Database
from .auth import Caller
from .rate_limit import go_duration

_DAY: Final = 86_400
STORAGE_RETRY_SECONDS: Final = 60


async def check_tokens(db: Database, caller: Caller, *, at: float | None = None) -> dict[str, str]:
    """The ``x-ratelimit-*-tokens`` headers of a key within its tokens per day (none for a key without
    that quota), or ``TokenRateLimitError`` when its runs used them all today."""
    limit = caller.quotas.tokens_per_day
    if not caller.managed or limit is None or caller.fingerprint is None:
        return {}
    wall = time.time() if at is None else at
    async with db.read() as session:
        used = await store.tokens_on(session, caller.fingerprint, store.day_of(wall))
    reset = _DAY - wall % _DAY
    left = max(0, limit - used)
    headers = {
        "x-ratelimit-limit-tokens": str(limit),
        "x-ratelimit-remaining-tokens": str(left),
        "x-ratelimit-reset-tokens": go_duration(reset),
    }
    if left > 0:
        return headers
    wait = max(1, math.ceil(reset))
    raise TokenRateLimitError(
        f"Rate limit reached for key {caller.fingerprint} on tokens per day (TPD): Limit {limit}, "
        f"Used {used}. Please try again in {wait}s.",
        headers={"retry-after": str(wait), **headers},
    )


async def check_storage(session: AsyncSession, caller: Caller, adding: int) -> None:
    """Refuse (``StorageLimitError``) an upload of ``adding`` bytes that would take the files the key
    uploaded past its storage quota; in the transaction that stores the file."""
    limit = caller.quotas.storage_bytes
    if not caller.managed or limit is None or caller.fingerprint is None:
        return
    used = await store.key_file_bytes(session, caller.fingerprint)
    if used + adding <= limit:
        return
    raise StorageLimitError(
        f"Storage limit reached for key {caller.fingerprint}: Limit {limit} bytes, Used {used}, "
        f"Requested {adding}. Delete files to free space.",
        headers={
            "retry-after": str(STORAGE_RETRY_SECONDS),
            "x-ratelimit-limit-storage-bytes": str(limit),
            "x-ratelimit-remaining-storage-bytes": str(max(0, limit - used)),
        },
    )
