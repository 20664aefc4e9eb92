"""The agent table: which node + source reported, when, and its backlog (for ``watcher status``).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

from watcher_backend.models import UtcDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "agent",
        sa.Column("node", sa.String(253), primary_key=True),
        sa.Column("source", sa.String(16), primary_key=True),
        sa.Column("first_seen", UtcDateTime(), nullable=False),
        sa.Column("last_seen", UtcDateTime(), nullable=False),
        sa.Column("events_received", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("backlog", sa.BigInteger(), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("agent")
