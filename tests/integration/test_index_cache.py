"""The in-memory index of a vector store (retrieval/index.py) against the real database, when its chunks
change in the ways several processes can change them: on PostgreSQL two ingestions commit in any order, so
chunks may appear below the pk the index was read up to, in the same refresh as a removal."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from sqlalchemy import delete, insert, select, update

from assistd.retrieval.index import StoreIndex, VectorCache
from assistd.store.database import Database
from assistd.store.models import ChunkRow, VectorStoreFileRow, VectorStoreRow

DIMS = 4
STORE = "vs_cache"


def _run(scenario: Callable[[Database], Awaitable[None]], url: str) -> None:
    async def main() -> None:
        db = Database(url)
        try:
            await scenario(db)
        finally:
            await db.close()

    asyncio.run(main())


async def _setup(db: Database) -> None:
    async with db.write() as session:
        await session.execute(
            insert(VectorStoreRow).values(
                id=STORE, tenant="t", created_at=0, meta={}, generation=0, expired=False
            )
        )


async def _add(db: Database, file_id: str, pk: int, *, bump: bool = True) -> None:
    """``file_id`` joins the store with one chunk numbered ``pk`` (as an ingestion that took that pk)."""
    async with db.write() as session:
        await session.execute(
            insert(VectorStoreFileRow).values(
                vector_store_id=STORE,
                file_id=file_id,
                tenant="t",
                created_at=0,
                status="completed",
                chunking_strategy={},
                attributes={},
            )
        )
        await session.execute(
            insert(ChunkRow).values(
                pk=pk, vector_store_id=STORE, file_id=file_id, seq=0, text=f"text of {file_id}", embedding=b""
            )
        )
        if bump:
            await _bump(session)


async def _remove(db: Database, file_id: str) -> None:
    async with db.write() as session:
        await session.execute(delete(ChunkRow).where(ChunkRow.file_id == file_id))
        await session.execute(delete(VectorStoreFileRow).where(VectorStoreFileRow.file_id == file_id))
        await _bump(session)


async def _bump(session: object) -> None:
    await session.execute(  # type: ignore[attr-defined]
        update(VectorStoreRow)
        .where(VectorStoreRow.id == STORE)
        .values(generation=VectorStoreRow.generation + 1)
    )


async def _index(db: Database, cache: VectorCache) -> StoreIndex:
    async with db.read() as session:
        generation = await session.scalar(select(VectorStoreRow.generation).where(VectorStoreRow.id == STORE))
        assert generation is not None
        return await cache.get(session, STORE, generation, DIMS)


def _texts(index: StoreIndex) -> set[str]:
    return {text for segment in index.segments for text in segment.texts}


def test_a_file_added_then_one_removed(migrated_url: str) -> None:
    async def scenario(db: Database) -> None:
        await _setup(db)
        cache = VectorCache()
        await _add(db, "file_a", 10)
        first = await _index(db, cache)
        assert _texts(first) == {"text of file_a"}
        await _add(db, "file_b", 20)
        assert _texts(await _index(db, cache)) == {"text of file_a", "text of file_b"}
        await _remove(db, "file_a")
        assert _texts(await _index(db, cache)) == {"text of file_b"}

    _run(scenario, migrated_url)


def test_a_late_ingestion_below_the_last_pk_is_not_missed_beside_a_removal(migrated_url: str) -> None:
    """The index was read up to pk 40 while an ingestion that took pk 20 had not committed yet. It commits,
    and a file with as many chunks leaves: the chunks at or below pk 40 are as many as before, but not the
    same ones."""

    async def scenario(db: Database) -> None:
        await _setup(db)
        cache = VectorCache()
        for file_id, pk in (("file_a", 10), ("file_b", 30), ("file_c", 40)):
            await _add(db, file_id, pk)
        assert _texts(await _index(db, cache)) == {"text of file_a", "text of file_b", "text of file_c"}

        await _add(db, "file_late", 20)
        await _remove(db, "file_b")
        assert _texts(await _index(db, cache)) == {"text of file_a", "text of file_c", "text of file_late"}

    _run(scenario, migrated_url)


def test_a_file_removed_and_added_again_between_two_searches_is_read_again(migrated_url: str) -> None:
    """The store's files are the same before and after (file_c left and came back, its chunk now pk 50),
    and a late ingestion (pk 20) makes the count below the last pk what it was."""

    async def scenario(db: Database) -> None:
        await _setup(db)
        cache = VectorCache()
        for file_id, pk in (("file_a", 10), ("file_b", 30), ("file_c", 40)):
            await _add(db, file_id, pk)
        await _index(db, cache)

        await _add(db, "file_late", 20)
        await _remove(db, "file_c")
        await _add(db, "file_c", 50)
        index = await _index(db, cache)
        assert _texts(index) == {"text of file_a", "text of file_b", "text of file_c", "text of file_late"}
        assert sorted(int(pk) for segment in index.segments for pk in segment.pks) == [10, 20, 30, 50]

    _run(scenario, migrated_url)
