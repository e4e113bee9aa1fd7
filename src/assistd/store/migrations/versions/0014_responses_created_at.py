"""responses.created_at indexed: retention deletes the oldest responses

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04 16:10:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_responses_created_at", "responses", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_responses_created_at", table_name="responses")
