"""activity_hour.hour becomes whole hours since the Unix epoch (an integer) instead of a timestamp.

The dashboard bins an assignment's heat strips and counts a course's days from this table: with a
timestamp, SQLite parsed the date text of every row (tens of thousands for an assignment, hundreds of
thousands for a course) on each page load; with a number it is integer arithmetic, in both dialects.

The rows are converted in place (same counts, same keys), so no rollup is rebuilt: the table is copied
into one with the new column and renamed, since SQLite cannot change a primary key column's type.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

from watcher_backend.models import UtcDateTime

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

HOUR_COUNTERS = ("events", "saves", "compiles", "compile_successes", "runs")
KEY = ("course", "section", "assignment", "student_id")

# (timestamp -> hours since the epoch, hours -> timestamp) per dialect. The timestamps are naive UTC:
# PostgreSQL's timestamp without time zone, SQLite's text in models.sqlite_text's format.
TO_NUMBER = {
    "postgresql": "CAST(floor(extract(epoch FROM hour) / 3600) AS BIGINT)",
    "sqlite": "CAST(round((julianday(hour) - 2440587.5) * 24) AS INTEGER)",
}
TO_TIME = {
    "postgresql": "CAST(to_timestamp(hour * 3600) AT TIME ZONE 'UTC' AS TIMESTAMP WITHOUT TIME ZONE)",
    "sqlite": "strftime('%Y-%m-%d %H:%M:%S.000000', hour * 3600, 'unixepoch')",
}


def _create(name: str, hour_type: sa.types.TypeEngine) -> None:
    op.create_table(
        name,
        sa.Column("course", sa.String(64), primary_key=True),
        sa.Column("section", sa.String(16), primary_key=True),
        sa.Column("assignment", sa.String(64), primary_key=True),
        sa.Column("student_id", sa.String(32), primary_key=True),
        sa.Column("hour", hour_type, primary_key=True, autoincrement=False),
        *(sa.Column(c, sa.BigInteger(), nullable=False) for c in HOUR_COUNTERS),
    )


def _convert(hour_type: sa.types.TypeEngine, expressions: dict[str, str]) -> None:
    dialect = op.get_bind().dialect.name
    _create("activity_hour_new", hour_type)
    columns = ", ".join((*KEY, "hour", *HOUR_COUNTERS))
    converted = ", ".join((*KEY, expressions[dialect], *HOUR_COUNTERS))
    op.execute(sa.text(f"INSERT INTO activity_hour_new ({columns}) SELECT {converted} FROM activity_hour"))
    op.drop_table("activity_hour")
    op.rename_table("activity_hour_new", "activity_hour")
    if dialect == "postgresql":  # the primary key's index keeps the name it was made with
        op.execute(sa.text("ALTER TABLE activity_hour RENAME CONSTRAINT activity_hour_new_pkey TO activity_hour_pkey"))


def upgrade() -> None:
    _convert(sa.BigInteger(), TO_NUMBER)


def downgrade() -> None:
    _convert(UtcDateTime(), TO_TIME)
