"""Token buckets in the database, so a rate limit holds across replicas: each request spends from its
key's bucket in one statement, an UPSERT that refills by the time passed, takes a token when a whole one
is there, and returns the outcome, whichever replica the request reached.

``now`` is the replica's clock: replicas' clocks must agree to within what the limit tolerates (NTP does).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import case, func, literal
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from .models import RateBucketRow


@dataclass(frozen=True)
class Spent:
    allowed: bool
    remaining: float  # whole or partial tokens left after this request


async def spend(session: AsyncSession, key: str, *, capacity: float, per_second: float, now: float) -> Spent:
    """Take one token from ``key``'s bucket (full at ``capacity`` when new), refilled at ``per_second``."""
    dialect = session.get_bind().dialect.name
    bucket = RateBucketRow.__table__.c
    least = func.least if dialect == "postgresql" else func.min
    # A clock a little behind another replica's must not drain the bucket: time only moves forward.
    elapsed = case((literal(now) > bucket.updated_at, literal(now) - bucket.updated_at), else_=0.0)
    refilled = least(literal(capacity), bucket.tokens + elapsed * literal(per_second))
    granted = refilled >= 1.0
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = (
        insert(RateBucketRow)
        .values(key=key, tokens=capacity - 1.0, updated_at=now, granted=True)
        .on_conflict_do_update(
            index_elements=["key"],
            set_={
                # A refused request leaves the refill in place and takes nothing.
                "tokens": case((granted, refilled - 1.0), else_=refilled),
                "updated_at": case((literal(now) > bucket.updated_at, literal(now)), else_=bucket.updated_at),
                "granted": granted,
            },
        )
        .returning(RateBucketRow.granted, RateBucketRow.tokens)
    )
    allowed, tokens = (await session.execute(statement)).one()
    return Spent(allowed=bool(allowed), remaining=float(tokens))
