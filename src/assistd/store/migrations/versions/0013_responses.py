"""responses: the Responses API's records over runs; runs and run steps without an assistant (a
response's run has none)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04 11:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "responses",
        sa.Column(
            "pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("thread_id", sa.String(length=64), nullable=False),
        sa.Column("conversation_id", sa.String(length=64), nullable=True),
        sa.Column("previous_response_id", sa.String(length=64), nullable=True),
        sa.Column("request", sa.JSON(), nullable=False),
        sa.Column("input_message_ids", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("pk"),
        sa.UniqueConstraint("id"),
    )
    op.create_index("ix_responses_run", "responses", ["run_id"])
    # batch_alter_table: SQLite cannot change a column's nullability in place (the table is copied).
    for table in ("runs", "run_steps"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column("assistant_id", existing_type=sa.String(length=64), nullable=True)


def downgrade() -> None:
    for table in ("runs", "run_steps"):
        # Runs of responses have no assistant to give back.
        op.execute(sa.text(f"UPDATE {table} SET assistant_id = '' WHERE assistant_id IS NULL"))
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column("assistant_id", existing_type=sa.String(length=64), nullable=False)
    op.drop_index("ix_responses_run", table_name="responses")
    op.drop_table("responses")
