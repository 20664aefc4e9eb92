"""Add the rollups: student_rollup, file_state, snap_size and rollup_state.

They are empty after this revision and rollup_state has no row, so queries keep scanning the events until
the backend's start-up builds them (``rollups.ensure_built``), which logs its progress.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

from watcher_backend.models import UtcDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

COUNTERS = (
    "events",
    "saves",
    "deletes",
    "too_large",
    "compiles",
    "compile_successes",
    "runs",
    "run_successes",
    "cells",
    "cell_successes",
)


def _scope(*extra: sa.Column) -> list[sa.Column]:
    return [
        sa.Column("course", sa.String(64), primary_key=True),
        sa.Column("section", sa.String(16), primary_key=True),
        sa.Column("assignment", sa.String(64), primary_key=True),
        *extra,
    ]


def upgrade() -> None:
    op.create_table(
        "student_rollup",
        *_scope(sa.Column("student_id", sa.String(32), primary_key=True)),
        *(sa.Column(name, sa.BigInteger(), nullable=False) for name in COUNTERS),
        sa.Column("first_activity", UtcDateTime(), nullable=True),
        sa.Column("last_activity", UtcDateTime(), nullable=True),
        sa.Column("active_us", sa.BigInteger(), nullable=False),
        sa.Column("snap_bytes", sa.BigInteger(), nullable=False),
        sa.Column("latest_snap_at", UtcDateTime(), nullable=True),
        sa.Column("latest_snap_path", sa.String(1024), nullable=True),
        sa.Column("latest_snap_size", sa.BigInteger(), nullable=True),
    )
    op.create_table(
        "file_state",
        *_scope(
            sa.Column("student_id", sa.String(32), primary_key=True),
            sa.Column("path", sa.String(1024), primary_key=True),
        ),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("timestamp", UtcDateTime(), nullable=False),
    )
    op.create_table(
        "snap_size",
        *_scope(sa.Column("size", sa.BigInteger(), primary_key=True, autoincrement=False)),
        sa.Column("count", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "rollup_state",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("idle_gap_seconds", sa.Integer(), nullable=False),
        sa.Column("built_at", UtcDateTime(), nullable=False),
    )


def downgrade() -> None:
    for table in ("rollup_state", "snap_size", "file_state", "student_rollup"):
        op.drop_table(table)
