"""Add erased_content: snapshot contents whose events were erased, for filemon to remove from the store.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

from watcher_backend.models import UtcDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "erased_content",
        sa.Column("sha256", sa.String(64), primary_key=True),
        sa.Column("queued_at", UtcDateTime(), nullable=False),
    )
    op.create_index("ix_erased_content_queued_at", "erased_content", ["queued_at"])


def downgrade() -> None:
    op.drop_index("ix_erased_content_queued_at", table_name="erased_content")
    op.drop_table("erased_content")
