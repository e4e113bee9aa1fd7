"""ask defaults: each tenant's built-in /ask assistant

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 10:12:41.204417
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The primary key on tenant is what keeps concurrent first /ask calls from making two defaults.
    op.create_table(
        "ask_defaults",
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("assistant_id", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("tenant"),
    )


def downgrade() -> None:
    op.drop_table("ask_defaults")
