"""The shared rate-limit bucket: exact counts across two engines (two replicas) hitting one key."""

from __future__ import annotations

import asyncio

from assistd.store import rate_buckets
from assistd.store.database import Database


async def _spend(
    db: Database, key: str, now: float, capacity: float = 5, rate: float = 1.0
) -> rate_buckets.Spent:
    async with db.write() as session:
        return await rate_buckets.spend(session, key, capacity=capacity, per_second=rate, now=now)


def test_a_bucket_gives_its_capacity_then_refills_with_time(migrated_url: str) -> None:
    async def main() -> None:
        db = Database(migrated_url)
        try:
            t = 1000.0
            results = [await _spend(db, "k", t) for _ in range(7)]
            assert [r.allowed for r in results] == [True] * 5 + [False] * 2
            assert [r.remaining for r in results[:5]] == [4, 3, 2, 1, 0]
            # Refused requests took nothing: half a second later, half a token; a second later, one.
            assert not (await _spend(db, "k", t + 0.5)).allowed
            assert (await _spend(db, "k", t + 1.0)).allowed
            # A replica whose clock is behind neither refills nor drains the bucket.
            assert not (await _spend(db, "k", t - 30)).allowed
            assert (await _spend(db, "k", t + 2.0)).allowed
            # Another key has its own bucket.
            assert (await _spend(db, "other", t)).allowed
        finally:
            await db.close()

    asyncio.run(main())


def test_two_replicas_share_one_bucket_exactly(migrated_url: str) -> None:
    async def main() -> None:
        dbs = [Database(migrated_url), Database(migrated_url)]
        try:
            spends = [_spend(dbs[n % 2], "shared", 5000.0, capacity=10, rate=0.001) for n in range(30)]
            results = await asyncio.gather(*spends)
            assert sum(r.allowed for r in results) == 10
        finally:
            for db in dbs:
                await db.close()

    asyncio.run(main())
