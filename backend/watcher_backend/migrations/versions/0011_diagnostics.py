"""Add the diagnostic table (what compilers and Python told students) and fill it from stored stderr.

Every process event stored since revision 0008 with a captured stderr is parsed now, so the frequent errors
and the research measures cover what was recorded before this version. The parse is the current one of
``watcher_core.diagnostics`` (pure; a later revision may parse again after an improvement of it).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

import logging

import sqlalchemy as sa
from alembic import op

from watcher_backend import diagnosis
from watcher_backend.models import BigId, UtcDateTime

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

log = logging.getLogger("watcher_backend.migrate")


def upgrade() -> None:
    op.create_table(
        "diagnostic",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(128), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("course", sa.String(64), nullable=False),
        sa.Column("section", sa.String(16), nullable=False),
        sa.Column("assignment", sa.String(64), nullable=False),
        sa.Column("student_id", sa.String(32), nullable=False),
        sa.Column("timestamp", UtcDateTime(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("file", sa.String(1024), nullable=True),
        sa.Column("line", sa.Integer(), nullable=True),
        sa.Column("col", sa.Integer(), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("error_class", sa.String(512), nullable=False),
        sa.Column("flag", sa.String(128), nullable=True),
        sa.Column("in_assignment", sa.Boolean(), nullable=False),
    )
    op.create_index("ix_diagnostic_event", "diagnostic", ["event_id"])
    op.create_index("ix_diagnostic_scope", "diagnostic", ["course", "section", "assignment", "student_id", "timestamp"])
    written = diagnosis.backfill(op.get_bind())
    if written:
        log.info("Parsed the stored stderr of process events: %d diagnostics", written)


def downgrade() -> None:
    op.drop_table("diagnostic")
