"""Taking a test database's schema back to an older revision, as an older release left it."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection

from assistd import store as store_package
from assistd.store.database import Database


def _downgrade(connection: Connection, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(Path(store_package.__file__).parent / "migrations"))
    config.attributes["connection"] = connection
    command.downgrade(config, revision)


async def downgrade(database_url: str, revision: str) -> None:
    """Run the migrations' downgrades to ``revision``: the tables and columns added since are gone."""
    db = Database(database_url)
    try:
        async with db.engine.begin() as connection:
            await connection.run_sync(_downgrade, revision)
    finally:
        await db.close()
