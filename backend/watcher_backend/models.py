"""Database tables (SQLModel). API schemas live apart, in ``schemas.py``.

One ``event`` table holds every event type: the common wire fields are columns, and the fields of each
type are nullable columns (a file.save has sha256/size, a process.compile has compiler/argv/...).
One table keeps the timeline a single indexed range scan and the ingest a single bulk insert.

Times are stored as naive UTC (``UtcDateTime`` converts on the way in and out), so SQLite and PostgreSQL
compare and sort them the same way. ``argv`` and ``sources`` are JSON text.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import BigInteger, Boolean, Column, DateTime, Index, Integer, String, Table, Text, UniqueConstraint
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

# SQLite only auto-increments an "INTEGER PRIMARY KEY"; PostgreSQL gets a 64-bit key.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UtcDateTime(TypeDecorator):
    """Aware datetimes in, aware UTC datetimes out; stored as naive UTC."""

    impl = DateTime(timezone=False)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime; the backend stores UTC only")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=UTC)


class Event(SQLModel, table=True):
    """Every event an agent (or the legacy API) reported. ``event_id`` is the idempotency key."""

    __tablename__ = "event"
    __table_args__ = (
        UniqueConstraint("event_id", name="uq_event_event_id"),
        # One index serves a student's timeline (sorted per student: hundreds of rows), one file's snapshots,
        # the latest size per file, per-assignment summaries and counts by type, and the course listing.
        # Every secondary index costs ingest time (each batch dirties a page per insertion point), and ingest
        # is the hot path: revision 0003 merged two per-student indexes into this one, and revision 0004
        # dropped (course, section, assignment, type, timestamp), whose queries scan one assignment's rows
        # through this index in a few milliseconds (bench/results/backend.md).
        Index("ix_event_student_file", "course", "section", "assignment", "student_id", "path", "timestamp"),
        # retention purge (timestamps arrive nearly in order, so this index is cheap to maintain)
        Index("ix_event_timestamp", "timestamp"),
    )

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    event_id: str = Field(sa_column=Column(String(128), nullable=False))
    type: str = Field(sa_column=Column(String(32), nullable=False))
    timestamp: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    received_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    node: str = Field(sa_column=Column(String(253), nullable=False))
    source: str = Field(sa_column=Column(String(16), nullable=False))
    course: str = Field(sa_column=Column(String(64), nullable=False))
    section: str = Field(sa_column=Column(String(16), nullable=False))
    student_id: str = Field(sa_column=Column(String(32), nullable=False))
    assignment: str = Field(sa_column=Column(String(64), nullable=False))
    path: str = Field(sa_column=Column(String(1024), nullable=False))
    # file.save / file.too_large
    sha256: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))
    size: int | None = Field(default=None, sa_column=Column(BigInteger(), nullable=True))
    limit: int | None = Field(default=None, sa_column=Column("limit", BigInteger(), nullable=True))
    # process.compile / process.run
    argv: str | None = Field(default=None, sa_column=Column(Text(), nullable=True))  # JSON list
    argv_truncated: bool | None = Field(default=None, nullable=True)
    cwd: str | None = Field(default=None, sa_column=Column(String(1024), nullable=True))
    exit_code: int | None = Field(default=None, nullable=True)
    signal: int | None = Field(default=None, nullable=True)
    started_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime(), nullable=True))
    ended_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime(), nullable=True))
    duration_ms: float | None = Field(default=None, nullable=True)
    pid: int | None = Field(default=None, nullable=True)
    compiler: str | None = Field(default=None, sa_column=Column(String(255), nullable=True))
    sources: str | None = Field(default=None, sa_column=Column(Text(), nullable=True))  # JSON list
    output: str | None = Field(default=None, sa_column=Column(String(1024), nullable=True))
    kind: str | None = Field(default=None, sa_column=Column(String(16), nullable=True))
    target: str | None = Field(default=None, sa_column=Column(String(1024), nullable=True))
    # what a compiler or the Python interpreter wrote to stderr (process.compile / process.run); revision 0008
    stderr: str | None = Field(default=None, sa_column=Column(Text(), nullable=True))
    stderr_truncated: bool | None = Field(default=None, nullable=True)
    # notebook.cell (also started_at / ended_at / duration_ms); revision 0006
    error: str | None = Field(default=None, sa_column=Column(String(128), nullable=True))
    cell_id: str | None = Field(default=None, sa_column=Column(String(255), nullable=True))
    cell_index: int | None = Field(default=None, nullable=True)
    execution_count: int | None = Field(default=None, nullable=True)


class Agent(SQLModel, table=True):
    """One reporting agent (node + source) and when it last reported; feeds ``watcher status``."""

    __tablename__ = "agent"

    node: str = Field(sa_column=Column(String(253), primary_key=True))
    source: str = Field(sa_column=Column(String(16), primary_key=True))
    first_seen: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    last_seen: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    events_received: int = Field(default=0, sa_column=Column(BigInteger(), nullable=False, default=0))
    # Events the agent said it still had queued (X-Watcher-Backlog header) at its last report.
    backlog: int | None = Field(default=None, sa_column=Column(BigInteger(), nullable=True))


class ErasedContent(SQLModel, table=True):
    """A snapshot content (sha256) whose events were erased (a student's records, the retention purge).

    filemon owns the snapshot store: it asks which of these no event refers to any more, removes those
    files, and reports them gone (``routers/snapshot_gc.py``). Kept apart from ``event`` so the ingest
    path carries no index on sha256; the reference check is one query per page of erased contents.
    """

    __tablename__ = "erased_content"
    __table_args__ = (Index("ix_erased_content_queued_at", "queued_at"),)

    sha256: str = Field(sa_column=Column(String(64), primary_key=True))
    queued_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))


class AccessToken(SQLModel, table=True):
    """A named read or admin token (``watcher tokens``, ``/api/v1/admin/tokens``; ``tokens.py``).

    Only the sha256 of the secret is stored: the secret is shown once, at creation. ``grants``: JSON list
    of ``course`` or ``course/section`` a read token may see; NULL = every course (admin tokens always).
    A revoked token keeps its row (who had it, when it was last used), so its name is never reused.
    """

    __tablename__ = "access_token"
    __table_args__ = (
        UniqueConstraint("name", name="uq_access_token_name"),
        UniqueConstraint("token_sha256", name="uq_access_token_sha256"),  # the lookup of every request
    )

    id: int | None = Field(default=None, sa_column=Column(Integer(), primary_key=True, autoincrement=True))
    name: str = Field(sa_column=Column(String(64), nullable=False))
    token_sha256: str = Field(sa_column=Column(String(64), nullable=False))
    scope: str = Field(sa_column=Column(String(16), nullable=False))
    grants: str | None = Field(default=None, sa_column=Column(Text(), nullable=True))
    created_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    expires_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime(), nullable=True))
    last_used_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime(), nullable=True))
    revoked_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime(), nullable=True))


class ReadAudit(SQLModel, table=True):
    """Who read whose code: one row per snapshot content, diff or export served (``audit.py``), read by
    admins at ``/api/v1/admin/audit``. The student columns are what the request named (a reader of every
    course may fetch a content by its hash alone: then they are NULL). Kept when a student is erased or
    events expire: it is the record of access, and names no code."""

    __tablename__ = "read_audit"
    __table_args__ = (
        Index("ix_read_audit_at", "at"),
        Index("ix_read_audit_student", "student_id", "id"),
    )

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    reader: str = Field(sa_column=Column(String(300), nullable=False))
    route: str = Field(sa_column=Column(String(200), nullable=False))
    course: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))
    section: str | None = Field(default=None, sa_column=Column(String(16), nullable=True))
    assignment: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))
    student_id: str | None = Field(default=None, sa_column=Column(String(32), nullable=True))
    path: str | None = Field(default=None, sa_column=Column(String(1024), nullable=True))
    sha256: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))
    to_sha256: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))


# ------------------------------------------------------------------------------------------- rollups
# Kept by ingest (``rollups.py``) so an assignment's summary, the old API's assignment statistics and the
# course listing read one row per student instead of every event (revision 0007). The events stay the
# truth: ``rollups.rebuild`` recomputes these tables from them.

# The per-student counters: column -> (the event type it counts, or None for every event; only successes).
# The scan summary and the rollups both derive their counts from this one table.
COUNTERS: dict[str, tuple[str | None, bool]] = {
    "events": (None, False),
    "saves": ("file.save", False),
    "deletes": ("file.delete", False),
    "too_large": ("file.too_large", False),
    "compiles": ("process.compile", False),
    "compile_successes": ("process.compile", True),
    "runs": ("process.run", False),
    "run_successes": ("process.run", True),
    "cells": ("notebook.cell", False),
    "cell_successes": ("notebook.cell", True),
}


def _scope_columns(*extra: Column) -> list[Column]:
    return [
        Column("course", String(64), primary_key=True),
        Column("section", String(16), primary_key=True),
        Column("assignment", String(64), primary_key=True),
        *extra,
    ]


STUDENT_ROLLUP_TABLE = Table(
    "student_rollup",
    SQLModel.metadata,
    *_scope_columns(Column("student_id", String(32), primary_key=True)),
    *(Column(name, BigInteger(), nullable=False, default=0) for name in COUNTERS),
    Column("first_activity", UtcDateTime(), nullable=True),
    Column("last_activity", UtcDateTime(), nullable=True),
    # Time on task in microseconds (integers add up exactly), for rollup_state.idle_gap_seconds.
    Column("active_us", BigInteger(), nullable=False, default=0),
    # The old API's "snapshots" (saves, too-large saves, deletes as size 0): their total size and the
    # latest one by (time, path), for /api/assignment's averages and top 7.
    Column("snap_bytes", BigInteger(), nullable=False, default=0),
    Column("latest_snap_at", UtcDateTime(), nullable=True),
    Column("latest_snap_path", String(1024), nullable=True),
    Column("latest_snap_size", BigInteger(), nullable=True),
    # The dashboard's flags (revision 0010), raw numbers: the thresholds (WATCHER_STUCK_COMPILES,
    # WATCHER_PASTE_BYTES) are applied when read, so changing them needs no rebuild.
    # Failing compiles since the last successful one (the current streak), and the longest streak.
    Column("fail_streak", BigInteger(), nullable=False, default=0),
    Column("max_fail_streak", BigInteger(), nullable=False, default=0),
    # The most bytes one save added to one file (a new file counts from empty), which file and when.
    Column("max_growth", BigInteger(), nullable=False, default=0),
    Column("max_growth_path", String(1024), nullable=True),
    Column("max_growth_at", UtcDateTime(), nullable=True),
)

# A student's events per hour (UTC, truncated): the dashboard's heat strips and its charts over time, read
# without scanning the events (revision 0010). ``hour`` is whole hours since the Unix epoch (revision 0012),
# so binning a strip or counting days is integer arithmetic in SQL, not date parsing of every row. Zones
# whose offset is not whole hours see shifted buckets.
HOUR_COUNTERS = ("events", "saves", "compiles", "compile_successes", "runs")
ACTIVITY_HOUR_TABLE = Table(
    "activity_hour",
    SQLModel.metadata,
    *_scope_columns(
        Column("student_id", String(32), primary_key=True),
        Column("hour", BigInteger(), primary_key=True, autoincrement=False),
    ),
    *(Column(name, BigInteger(), nullable=False, default=0) for name in HOUR_COUNTERS),
)

# The latest file event of each file: the summary's code size and file count.
FILE_STATE_TABLE = Table(
    "file_state",
    SQLModel.metadata,
    *_scope_columns(Column("student_id", String(32), primary_key=True), Column("path", String(1024), primary_key=True)),
    Column("type", String(32), nullable=False),
    Column("size", BigInteger(), nullable=True),
    Column("timestamp", UtcDateTime(), nullable=False),
)

# How many of an assignment's old-API snapshots have each size: exact percentiles without reading them.
SNAP_SIZE_TABLE = Table(
    "snap_size",
    SQLModel.metadata,
    *_scope_columns(Column("size", BigInteger(), primary_key=True, autoincrement=False)),
    Column("count", BigInteger(), nullable=False),
)

# One row once the rollups are built: the idle gap their active time uses. No row: not built (queries scan).
ROLLUP_STATE_TABLE = Table(
    "rollup_state",
    SQLModel.metadata,
    Column("id", Integer(), primary_key=True, autoincrement=False),
    Column("idle_gap_seconds", Integer(), nullable=False),
    Column("built_at", UtcDateTime(), nullable=False),
)


# ----------------------------------------------------------------------------------------- diagnostics
# What a compiler or Python told the student, parsed from a process event's stderr at ingest
# (``diagnosis.py``, ``watcher_core.diagnostics``; revision 0011): one row per diagnostic, in the order
# printed (``seq``). The stderr stays the truth: the rows can be rebuilt from it. The event's scope, student
# and time are repeated here so an assignment's frequent errors and the research measures read this table
# alone, by its own index, instead of every event of the assignment.
DIAGNOSTIC_TABLE = Table(
    "diagnostic",
    SQLModel.metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("event_id", String(128), nullable=False),
    Column("seq", Integer(), nullable=False),
    Column("course", String(64), nullable=False),
    Column("section", String(16), nullable=False),
    Column("assignment", String(64), nullable=False),
    Column("student_id", String(32), nullable=False),
    Column("timestamp", UtcDateTime(), nullable=False),
    Column("kind", String(16), nullable=False),  # error | warning | note | exception
    Column("file", String(1024), nullable=True),  # relative to the assignment folder when in_assignment
    Column("line", Integer(), nullable=True),
    Column("col", Integer(), nullable=True),
    Column("message", Text(), nullable=False),
    Column("error_class", String(512), nullable=False),
    # the warning option (-Wunused-variable), or the exception's type (NameError)
    Column("flag", String(128), nullable=True),
    Column("in_assignment", Boolean(), nullable=False),
    Index("ix_diagnostic_event", "event_id"),
    Index("ix_diagnostic_scope", "course", "section", "assignment", "student_id", "timestamp"),
)

# The SQLAlchemy tables behind the models, typed (SQLModel does not declare __table__ to type checkers).
EVENT_TABLE: Table = Event.__table__  # type: ignore[attr-defined]
AGENT_TABLE: Table = Agent.__table__  # type: ignore[attr-defined]
ERASED_TABLE: Table = ErasedContent.__table__  # type: ignore[attr-defined]
TOKEN_TABLE: Table = AccessToken.__table__  # type: ignore[attr-defined]
AUDIT_TABLE: Table = ReadAudit.__table__  # type: ignore[attr-defined]


def sqlite_text(value: datetime | None) -> str | None:
    """The text UtcDateTime stores on SQLite (naive UTC, microseconds), for statements on the driver's cursor."""
    if value is None:
        return None
    if value.tzinfo is UTC:  # what the wire models hold: drop the "+00:00" (the hot path of ingest)
        return value.isoformat(" ", "microseconds")[:-6]
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def naive_utc(value: datetime | None) -> datetime | None:
    """What UtcDateTime stores on PostgreSQL ("timestamp without time zone" holding UTC). An aware value
    would be shifted by the session's TimeZone."""
    return None if value is None else value.astimezone(UTC).replace(tzinfo=None)


def utc(dt: datetime) -> datetime:
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)
