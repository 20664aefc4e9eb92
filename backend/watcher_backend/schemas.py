"""API schemas (pydantic), kept apart from the tables in ``models.py``.

The ingest body and answer are the wire format's own models (``watcher_core.wire``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from watcher_core import wire


class Health(BaseModel):
    status: Literal["healthy"]
    timestamp: str = Field(description="RFC 3339 UTC, e.g. 2024-01-01T00:00:00Z")


class Ready(BaseModel):
    status: Literal["ready", "unavailable"]
    database: str
    detail: str | None = None


class DiagnosticOut(BaseModel):
    """One message a compiler printed, or the exception that ended a Python run (``watcher_core.diagnostics``)."""

    kind: Literal["error", "warning", "note", "exception"]
    file: str | None = Field(
        description="Relative to the assignment folder when in_assignment; else as the tool printed it"
    )
    line: int | None
    col: int | None
    message: str = Field(description="As printed; an exception's is 'Type: message'")
    error_class: str = Field(
        description="The message with identifiers, literals and numbers masked and types generic: the same "
        "mistake has the same class across students"
    )
    flag: str | None = Field(description="The warning's option (-Wunused-variable), or the exception's type")
    in_assignment: bool = Field(description="The file is inside the assignment folder")


class EventOut(BaseModel):
    """A stored event; only the fields of its type are present."""

    id: int = Field(description="Store row id (orders events with equal timestamps)")
    event_id: str
    type: str
    timestamp: datetime
    received_at: datetime
    node: str
    source: str
    course: str
    section: str
    student_id: str
    assignment: str
    path: str
    sha256: str | None = None
    size: int | None = None
    limit: int | None = None
    argv: list[str] | None = None
    argv_truncated: bool | None = None
    cwd: str | None = None
    exit_code: int | None = None
    signal: int | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    duration_ms: float | None = None
    pid: int | None = None
    succeeded: bool | None = None
    compiler: str | None = None
    sources: list[str] | None = None
    output: str | None = None
    kind: str | None = None
    target: str | None = None
    stderr: str | None = Field(
        None, description="Process events: what the compiler or Python wrote to stderr; null = not captured"
    )
    stderr_truncated: bool | None = Field(None, description="Process events: stderr was longer than what is kept")
    diagnostics: list[DiagnosticOut] | None = Field(
        None, description="process.compile: what the compiler reported, in order; null = stderr not captured"
    )
    exception: DiagnosticOut | None = Field(
        None, description="process.run (Python): the uncaught exception that ended it; null = none or not captured"
    )
    error: str | None = Field(None, description="notebook.cell: the exception's class; null on success")
    cell_id: str | None = None
    cell_index: int | None = None
    execution_count: int | None = None


class Timeline(BaseModel):
    course: str
    section: str
    assignment: str
    student_id: str
    events: list[EventOut]
    next_cursor: str | None = Field(None, description="Pass as ?cursor= for the next page; null on the last page")


class FileState(BaseModel):
    path: str
    state: Literal["saved", "deleted", "too_large"]
    saves: int
    latest_sha256: str | None
    latest_size: int | None
    first_seen: datetime
    last_modified: datetime


class FileList(BaseModel):
    course: str
    section: str
    assignment: str
    student_id: str
    files: list[FileState]


class SnapshotRef(BaseModel):
    id: int
    event_id: str
    timestamp: datetime
    sha256: str | None = Field(description="null for saves reported by the old API (no content)")
    size: int | None
    source: str


class SnapshotList(BaseModel):
    path: str
    snapshots: list[SnapshotRef]
    next_cursor: str | None = None


class Diff(BaseModel):
    from_sha256: str
    to_sha256: str
    identical: bool
    binary: bool = Field(description="True if either side is not valid UTF-8 (shown with replacement characters)")
    diff: str = Field(description="Unified diff")


class StudentSummary(BaseModel):
    student_id: str
    events: int
    saves: int
    deletes: int
    too_large: int
    compiles: int
    compile_successes: int
    compile_success_rate: float | None
    runs: int
    run_successes: int
    cells: int = Field(description="Notebook cell runs (notebook.cell)")
    cell_successes: int = Field(description="Cell runs that raised no exception")
    code_size: int = Field(description="Sum of each file's latest size (0 once deleted)")
    files: int
    first_activity: datetime | None
    last_activity: datetime | None
    active_seconds: float


class AssignmentSummary(BaseModel):
    course: str
    section: str
    assignment: str
    students: int
    events: int
    saves: int
    deletes: int
    too_large: int
    compiles: int
    compile_successes: int
    compile_success_rate: float | None
    runs: int
    run_successes: int
    cells: int
    cell_successes: int
    code_size: int
    first_activity: datetime | None
    last_activity: datetime | None
    active_seconds: float = Field(description="Sum over students of gaps between events up to idle_gap_seconds")
    idle_gap_seconds: float
    per_student: list[StudentSummary]


class AssignmentCounts(BaseModel):
    assignment: str
    events: int
    students: int
    saves: int
    compiles: int
    runs: int
    first_activity: datetime | None
    last_activity: datetime | None


class SectionListing(BaseModel):
    section: str
    assignments: list[AssignmentCounts]


class CourseListing(BaseModel):
    course: str
    sections: list[SectionListing]


class Courses(BaseModel):
    courses: list[CourseListing]
    next_offset: int | None = None


class AgentStatus(BaseModel):
    node: str
    source: str
    first_seen: datetime
    last_seen: datetime
    events_received: int
    backlog: int | None


class Status(BaseModel):
    events_total: int
    events_by_type: dict[str, int]
    last_received_at: datetime | None
    agents: list[AgentStatus]
    erased_contents_pending: int = Field(
        description="Snapshot contents of erased events that filemon has not yet removed from the store or "
        "found still in use (0: every erasure has left the disk)"
    )


class Deleted(BaseModel):
    student_id: str
    course: str | None
    section: str | None
    deleted: dict[str, int] = Field(description="Rows deleted per table")
    contents_queued: int = Field(description="Snapshot contents of these events queued for removal from the store")
    note: str


class Purged(BaseModel):
    retention_days: int
    cutoff: datetime
    purged: int


class ErrorExample(BaseModel):
    message: str
    file: str | None
    line: int | None


class ErrorClass(BaseModel):
    kind: Literal["error", "warning", "note", "exception"]
    error_class: str
    count: int = Field(description="Times it was printed")
    student_count: int
    students: list[str] = Field(description="The students who hit it")
    example: ErrorExample = Field(description="The first message of this class stored")
    flag: str | None = Field(description="The example's warning option or exception type")


class ErrorClasses(BaseModel):
    course: str
    section: str
    assignment: str
    kinds: list[str]
    classes: list[ErrorClass] = Field(description="Most frequent first")


class MeasureValues(BaseModel):
    compiles: int
    failed_compiles: int
    error_quotient: float | None = Field(description="Jadud (2006), 0..1; null without a pair of compilations")
    repeated_error_density: float | None = Field(
        description="Becker (2016), >= 0; null with fewer than two compilations"
    )
    watwin: float | None = Field(
        description="Watson, Li and Godwin (2013), 0..1; null without a failed compilation followed by another"
    )


class StudentMeasures(MeasureValues):
    student_id: str


class AssignmentMeasures(BaseModel):
    course: str
    section: str
    assignment: str
    students: list[StudentMeasures]


class AssignmentMeasure(MeasureValues):
    assignment: str


class StudentAssignmentsMeasures(BaseModel):
    course: str
    section: str
    student_id: str
    assignments: list[AssignmentMeasure]


class TokenCreate(BaseModel):
    """A named token to make. A read token names the courses (``os``) or sections (``os/1``) it may
    read, or says ``every_course``; an admin token names none (it sees every course)."""

    name: str = Field(min_length=1, max_length=64, description="Unique, e.g. ta-os-1 (names are never reused)")
    scope: Literal["read", "admin"] = "read"
    courses: list[str] = Field(default_factory=list, max_length=200, description='e.g. ["os/1", "db"]')
    every_course: bool = False
    expires_at: wire.UtcTime | None = Field(default=None, description="RFC 3339 with offset; none: never")
    expires_in_days: int | None = Field(default=None, ge=1, le=3660, description="Instead of expires_at")


class TokenInfo(BaseModel):
    name: str
    scope: Literal["read", "admin"]
    courses: list[str] | None = Field(description="What it may read; null: every course")
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None = Field(description="To the minute")
    revoked_at: datetime | None
    state: Literal["active", "expired", "revoked"]


class TokenCreated(TokenInfo):
    token: str = Field(description="The secret: shown this once, stored only as its sha256")


class TokenList(BaseModel):
    tokens: list[TokenInfo]


class AuditEntry(BaseModel):
    id: int
    at: datetime
    reader: str = Field(description="Who: 'read token', \"token 'ta-os-1'\", \"sso 'kim' <kim@...>\", ...")
    route: str = Field(description="Method and path template, e.g. GET /api/v1/snapshots/{sha256}")
    course: str | None
    section: str | None
    assignment: str | None
    student_id: str | None
    path: str | None
    sha256: str | None
    to_sha256: str | None = Field(description="The newer side of a diff")


class AuditPage(BaseModel):
    entries: list[AuditEntry]
    next_cursor: str | None


# ------------------------------------------------------------------------------------------ dashboard


class DayActivity(BaseModel):
    day: str = Field(description="YYYY-MM-DD in the platform's zone (WATCHER_TIME_ZONE)")
    active_students: int
    saves: int
    compiles: int
    compile_successes: int
    runs: int


class AssignmentActivity(BaseModel):
    section: str
    assignment: str
    students: int
    events: int
    saves: int
    compiles: int
    compile_successes: int
    compile_success_rate: float | None
    runs: int
    first_activity: datetime | None
    last_activity: datetime | None
    days: list[DayActivity]


class CourseActivity(BaseModel):
    """A course's assignments over time (the dashboard's course page)."""

    course: str
    time_zone: str = Field(description="IANA zone the days are counted in")
    assignments: list[AssignmentActivity]


class Thresholds(BaseModel):
    stuck_compiles: int = Field(description="Failing compiles in a row (none successful since) that flag 'stuck'")
    paste_bytes: int = Field(description="Bytes one save adds to one file that flag 'large paste'")


class StudentActivity(StudentSummary):
    failed_compiles: int
    fail_streak: int = Field(description="Failing compiles since the last successful one")
    max_fail_streak: int
    max_growth: int = Field(description="The most bytes one save added to one file (a new file counts from empty)")
    max_growth_path: str | None
    max_growth_at: datetime | None
    stuck: bool = Field(description="fail_streak >= thresholds.stuck_compiles")
    large_paste: bool = Field(description="max_growth >= thresholds.paste_bytes")
    heat: list[list[int]] = Field(
        description="[bin, events] of each bin with activity: bin n covers heat_bin_hours hours from heat_start "
        "+ n * heat_bin_hours"
    )


class AssignmentActivityView(AssignmentSummary):
    """An assignment's students with their flags and heat strips (the dashboard's assignment page)."""

    time_zone: str
    thresholds: Thresholds
    heat_start: datetime | None = Field(description="The UTC hour the heat strips start at")
    heat_hours: int = Field(description="Hours from heat_start to the last hour with activity")
    heat_bin_hours: int = Field(description="Hours per heat strip cell (at most 120 cells)")
    per_student: list[StudentActivity]  # type: ignore[assignment]


class CompactTimeline(BaseModel):
    """A page of a student's events for the dashboard: each event an array in ``columns`` order (id, time in
    ms since the epoch, index into ``types``, index into ``paths``, size, sha256, exit_code, signal, argv,
    error); the fields an event's type does not have are null."""

    course: str
    section: str
    assignment: str
    student_id: str
    types: list[str]
    columns: list[str]
    paths: list[str]
    # A list per event rather than a tuple: a tuple publishes `prefixItems`, which schemathesis (and OpenAPI
    # 3.0 tools) cannot read; `columns` names each position.
    events: list[list[int | str | list[str] | None]] = Field(
        description="One array per event in `columns` order: id, time (ms), type index, path index, size, sha256, "
        "exit_code, signal, argv, error"
    )
    next_cursor: str | None
