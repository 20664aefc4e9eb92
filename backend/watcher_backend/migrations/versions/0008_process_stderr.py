"""Add the process columns stderr and stderr_truncated to event: what a compiler or Python wrote to stderr.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

COLUMNS = (
    ("stderr", sa.Text()),
    ("stderr_truncated", sa.Boolean()),
)


def upgrade() -> None:
    # Nullable columns without defaults: SQLite and PostgreSQL add them without rewriting the table.
    for name, type_ in COLUMNS:
        op.add_column("event", sa.Column(name, type_, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("event") as batch:
        for name, _ in reversed(COLUMNS):
            batch.drop_column(name)
