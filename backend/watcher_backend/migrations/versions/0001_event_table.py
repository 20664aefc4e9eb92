"""The event table: every event type in one table, unique event_id, an index per query path.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

from watcher_backend.models import BigId, UtcDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "event",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(128), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("timestamp", UtcDateTime(), nullable=False),
        sa.Column("received_at", UtcDateTime(), nullable=False),
        sa.Column("node", sa.String(253), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("course", sa.String(64), nullable=False),
        sa.Column("section", sa.String(16), nullable=False),
        sa.Column("student_id", sa.String(32), nullable=False),
        sa.Column("assignment", sa.String(64), nullable=False),
        sa.Column("path", sa.String(1024), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("limit", sa.BigInteger(), nullable=True),
        sa.Column("argv", sa.Text(), nullable=True),
        sa.Column("argv_truncated", sa.Boolean(), nullable=True),
        sa.Column("cwd", sa.String(1024), nullable=True),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("signal", sa.Integer(), nullable=True),
        sa.Column("started_at", UtcDateTime(), nullable=True),
        sa.Column("ended_at", UtcDateTime(), nullable=True),
        sa.Column("duration_ms", sa.Float(), nullable=True),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("compiler", sa.String(255), nullable=True),
        sa.Column("sources", sa.Text(), nullable=True),
        sa.Column("output", sa.String(1024), nullable=True),
        sa.Column("kind", sa.String(16), nullable=True),
        sa.Column("target", sa.String(1024), nullable=True),
        sa.UniqueConstraint("event_id", name="uq_event_event_id"),
    )
    op.create_index("ix_event_student_time", "event", ["course", "section", "assignment", "student_id", "timestamp"])
    op.create_index("ix_event_assignment_type", "event", ["course", "section", "assignment", "type", "timestamp"])
    op.create_index(
        "ix_event_student_path", "event", ["course", "section", "student_id", "assignment", "path", "timestamp"]
    )
    op.create_index("ix_event_timestamp", "event", ["timestamp"])


def downgrade() -> None:
    op.drop_table("event")
