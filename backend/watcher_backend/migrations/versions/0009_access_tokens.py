"""Add access_token (named read/admin tokens limited to courses and sections, stored as sha256) and
read_audit (who read whose code: snapshot contents, diffs, exports).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

from watcher_backend.models import BigId, UtcDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "access_token",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("token_sha256", sa.String(64), nullable=False),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("grants", sa.Text(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("expires_at", UtcDateTime(), nullable=True),
        sa.Column("last_used_at", UtcDateTime(), nullable=True),
        sa.Column("revoked_at", UtcDateTime(), nullable=True),
        sa.UniqueConstraint("name", name="uq_access_token_name"),
        sa.UniqueConstraint("token_sha256", name="uq_access_token_sha256"),
    )
    op.create_table(
        "read_audit",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("at", UtcDateTime(), nullable=False),
        sa.Column("reader", sa.String(300), nullable=False),
        sa.Column("route", sa.String(200), nullable=False),
        sa.Column("course", sa.String(64), nullable=True),
        sa.Column("section", sa.String(16), nullable=True),
        sa.Column("assignment", sa.String(64), nullable=True),
        sa.Column("student_id", sa.String(32), nullable=True),
        sa.Column("path", sa.String(1024), nullable=True),
        sa.Column("sha256", sa.String(64), nullable=True),
        sa.Column("to_sha256", sa.String(64), nullable=True),
    )
    op.create_index("ix_read_audit_at", "read_audit", ["at"])
    op.create_index("ix_read_audit_student", "read_audit", ["student_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_read_audit_student", table_name="read_audit")
    op.drop_index("ix_read_audit_at", table_name="read_audit")
    op.drop_table("read_audit")
    op.drop_table("access_token")
