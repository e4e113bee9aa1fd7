"""one vector store: repair rows that attached two through file_search

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 01:10:00.000000

Before requests were checked for it, ``vector_store_ids`` plus the ``vector_stores`` helper attached
two stores to an assistant or thread, a row its response model (at most one store) could not render:
every read of it answered 500. The id the client named comes first (helper stores were appended), so
that one stays attached; the helper's store is detached, not deleted, and stays listed under
/v1/vector_stores with its files.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# The limit OpenAI's schema, and assistd's response models, put on file_search.vector_store_ids.
_MAX_VECTOR_STORES = 1


def _trimmed(resources: Any) -> dict[str, Any] | None:
    """The resources with at most one vector store, or None when they need no repair."""
    if not isinstance(resources, dict):
        return None
    search = resources.get("file_search")
    if not isinstance(search, dict):
        return None
    ids = search.get("vector_store_ids")
    if not isinstance(ids, list) or len(ids) <= _MAX_VECTOR_STORES:
        return None
    return {**resources, "file_search": {**search, "vector_store_ids": ids[:_MAX_VECTOR_STORES]}}


def upgrade() -> None:
    bind = op.get_bind()
    for name in ("assistants", "threads"):
        table = sa.table(name, sa.column("id", sa.String), sa.column("tool_resources", sa.JSON))
        rows = bind.execute(
            sa.select(table.c.id, table.c.tool_resources).where(table.c.tool_resources.is_not(None))
        )
        for row_id, resources in rows.all():
            repaired = _trimmed(resources)
            if repaired is not None:
                bind.execute(table.update().where(table.c.id == row_id).values(tool_resources=repaired))


def downgrade() -> None:
    # Nothing to undo: the detached stores are still there, and two attached stores was the defect.
    pass
