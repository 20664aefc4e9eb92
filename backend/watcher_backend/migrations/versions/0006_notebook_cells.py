"""Add the notebook.cell columns to event: error, cell_id, cell_index, execution_count.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

COLUMNS = (
    ("error", sa.String(128)),
    ("cell_id", sa.String(255)),
    ("cell_index", sa.Integer()),
    ("execution_count", sa.Integer()),
)


def upgrade() -> None:
    # Nullable columns without defaults: SQLite and PostgreSQL add them without rewriting the table.
    for name, type_ in COLUMNS:
        op.add_column("event", sa.Column(name, type_, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("event") as batch:
        for name, _ in reversed(COLUMNS):
            batch.drop_column(name)
