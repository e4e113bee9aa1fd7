"""Alembic environment: migrations run on the connection assistd hands over at start."""

from __future__ import annotations

from alembic import context

from assistd.store.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("assistd runs migrations through assistd.store.database.migrate()")

context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
