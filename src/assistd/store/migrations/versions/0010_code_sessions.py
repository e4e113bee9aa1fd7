"""code_sessions: which process holds each thread's code_interpreter session, and the files its code wrote;
run_jobs.session_holder: the process a queued run should go to

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04 05:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "code_sessions",
        sa.Column("thread_id", sa.String(length=64), nullable=False),
        sa.Column("process_id", sa.String(length=128), nullable=False),
        sa.Column("session_id", sa.String(length=64), nullable=False),
        sa.Column("live", sa.Boolean(), nullable=False),
        sa.Column("files", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("thread_id"),
    )
    with op.batch_alter_table("run_jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("session_holder", sa.String(length=128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("run_jobs", schema=None) as batch_op:
        batch_op.drop_column("session_holder")
    op.drop_table("code_sessions")
