"""Drop ix_event_assignment_type: it cost a quarter of the ingest time on SQLite and no query needs it.

Counts of one type in an assignment (summary, the old API's build/run averages, the course listing) read
the assignment's rows through ix_event_student_file, a few milliseconds for thousands of events.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_event_assignment_type", table_name="event")


def downgrade() -> None:
    op.create_index("ix_event_assignment_type", "event", ["course", "section", "assignment", "type", "timestamp"])
