"""Merge the student timeline and student file indexes into one (course, section, assignment, student, path, time).

Each secondary index costs ingest time; the two overlapped. The merged index serves the timeline (sorting one
student's events), a file's snapshots, latest sizes, summaries and the course listing.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_event_student_file", "event", ["course", "section", "assignment", "student_id", "path", "timestamp"]
    )
    op.drop_index("ix_event_student_time", table_name="event")
    op.drop_index("ix_event_student_path", table_name="event")


def downgrade() -> None:
    op.create_index("ix_event_student_time", "event", ["course", "section", "assignment", "student_id", "timestamp"])
    op.create_index(
        "ix_event_student_path", "event", ["course", "section", "student_id", "assignment", "path", "timestamp"]
    )
    op.drop_index("ix_event_student_file", table_name="event")
