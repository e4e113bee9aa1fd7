"""What one SQL statement costs assistd's process in CPU, on SQLite and on PostgreSQL, layer by layer.

A run's cycle (thread + message + run to completion) sends about 28 statements on PostgreSQL. On this
2-core machine one `assistd serve` process is bound by its one core, so the CPU each statement costs the
process, not the database server's time, decides runs/s. This measures, for the same primary-key select
of one `threads` row, in one process with uvloop (as the server runs):

- SQLite through ``Database`` (SQLAlchemy's ORM session on the inline driver, ``store/sqlite_inline.py``);
- PostgreSQL through ``Database`` (the ORM session on asyncpg), through a plain SQLAlchemy Core
  connection, through Core inside one ``run_sync`` greenlet, and through asyncpg alone (no SQLAlchemy).

    python bench/statement_cost.py [--pg postgresql://postgres@127.0.0.1:5432/postgres] [--n 5000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import uvloop
from sqlalchemy import Connection, select

from assistd.store.database import Database
from assistd.store.models import ThreadRow
from bench.common import pg_database

_TABLE = ThreadRow.__table__
_SELECT = select(_TABLE).where(_TABLE.c.id == "thread_bench")
_RAW_SQL = "SELECT * FROM threads WHERE id = $1"


async def _per_call(n: int, call: Callable[[], Awaitable[Any]]) -> float:
    """Microseconds of this process's CPU per ``call``, the best of three rounds of ``n``."""
    for _ in range(200):
        await call()
    best = float("inf")
    for _ in range(3):
        started = time.process_time()
        for _ in range(n):
            await call()
        best = min(best, (time.process_time() - started) / n)
    return best * 1e6


async def _database(url: str) -> Database:
    db = Database(url)
    await db.migrate()
    async with db.write() as session:
        session.add(ThreadRow(id="thread_bench", tenant="bench", created_at=0, meta={}))
    return db


async def _measure(sqlite_url: str, pg_url: str, n: int) -> list[tuple[str, float]]:
    rows: list[tuple[str, float]] = []
    sqlite_db = await _database(sqlite_url)
    async with sqlite_db.read() as session:
        cost = await _per_call(n, lambda: session.execute(_SELECT))
        rows.append(("SQLite: ORM session (Database.read)", cost))
    await sqlite_db.close()

    pg_db = await _database(pg_url)
    async with pg_db.read() as session:
        cost = await _per_call(n, lambda: session.execute(_SELECT))
        rows.append(("PostgreSQL: ORM session (Database.read)", cost))
    async with pg_db.read_engine.connect() as connection:
        cost = await _per_call(n, lambda: connection.execute(_SELECT))
        rows.append(("PostgreSQL: SQLAlchemy Core connection", cost))

        def many(sync: Connection) -> None:
            for _ in range(n):
                sync.execute(_SELECT).first()

        started = time.process_time()
        await connection.run_sync(many)
        rows.append(("PostgreSQL: Core, all in one greenlet", (time.process_time() - started) / n * 1e6))
        driver = (await connection.get_raw_connection()).driver_connection
        assert driver is not None
        prepared = await driver.prepare(_RAW_SQL)
        cost = await _per_call(n, lambda: prepared.fetch("thread_bench"))
        rows.append(("PostgreSQL: asyncpg alone (prepared)", cost))
    await pg_db.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--n", type=int, default=5000, help="statements per round (best of three)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, pg_database(args.pg) as pg_url:
        rows = uvloop.run(_measure(f"sqlite:///{tmp}/bench.db", pg_url, args.n))
    width = max(len(label) for label, _ in rows)
    print(f"{'one primary-key select of one row':{width}}  CPU of this process")
    for label, micros in rows:
        print(f"{label:{width}}  {micros:6.1f} µs")


if __name__ == "__main__":
    main()
