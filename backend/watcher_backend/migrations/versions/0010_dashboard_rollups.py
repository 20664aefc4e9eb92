"""The dashboard's rollups: activity_hour (a student's events per hour) and the flag columns of
student_rollup (failing-compile streaks, the largest growth of one save).

Rollups are derived data, so this revision backfills by rebuilding: it recreates student_rollup with the
new columns, empties the other rollups and removes rollup_state's row, and the backend's start-up
(``rollups.ensure_built``) recomputes every rollup, the new ones included, from the events, logging its
progress. Until then queries scan the events, as before revision 0007 was built.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

from watcher_backend.models import UtcDateTime

revision = "0010"
down_revision = "0009"
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
HOUR_COUNTERS = ("events", "saves", "compiles", "compile_successes", "runs")


def _scope(*extra: sa.Column) -> list[sa.Column]:
    return [
        sa.Column("course", sa.String(64), primary_key=True),
        sa.Column("section", sa.String(16), primary_key=True),
        sa.Column("assignment", sa.String(64), primary_key=True),
        *extra,
    ]


def _student_rollup(with_flags: bool) -> None:
    flags = (
        [
            sa.Column("fail_streak", sa.BigInteger(), nullable=False),
            sa.Column("max_fail_streak", sa.BigInteger(), nullable=False),
            sa.Column("max_growth", sa.BigInteger(), nullable=False),
            sa.Column("max_growth_path", sa.String(1024), nullable=True),
            sa.Column("max_growth_at", UtcDateTime(), nullable=True),
        ]
        if with_flags
        else []
    )
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
        *flags,
    )


def _unbuild() -> None:
    """Forget the rollups: the next start-up rebuilds all of them from the events."""
    for table in ("rollup_state", "snap_size", "file_state"):
        op.execute(sa.text(f"DELETE FROM {table}"))


def upgrade() -> None:
    _unbuild()
    # Recreated rather than altered: NOT NULL columns cannot be added to a SQLite table without a default,
    # and every row is rebuilt anyway.
    op.drop_table("student_rollup")
    _student_rollup(with_flags=True)
    op.create_table(
        "activity_hour",
        *_scope(
            sa.Column("student_id", sa.String(32), primary_key=True),
            sa.Column("hour", UtcDateTime(), primary_key=True),
        ),
        *(sa.Column(name, sa.BigInteger(), nullable=False) for name in HOUR_COUNTERS),
    )


def downgrade() -> None:
    _unbuild()
    op.drop_table("activity_hour")
    op.drop_table("student_rollup")
    _student_rollup(with_flags=False)
