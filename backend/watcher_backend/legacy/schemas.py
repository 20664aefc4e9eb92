"""Request and response bodies of the old platform API, with the old field names (reference §1.3).

Requests are checked more strictly than before: unknown fields, negative sizes and exit codes out of range
are 422s naming the field. Responses keep every old field and type, except that ``student_num`` is a
string (student ids keep their leading zeros). An unknown ``exit_code`` reads as 256 (legacy.adapter).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# A legacy command line is one string; it is split into at most this many words.
MAX_CMDLINE = 64 * 1024
MAX_PATH = 4096

_LOG_FIELDS = ("binary_path", "cmdline", "exit_code", "cwd", "target_path", "process_type", "timestamp")


def _not_a_snapshot_body(data: Any, route: str) -> Any:
    """``POST .../{student}/logs/build`` is the build-log route even for a file named ``logs``: a snapshot
    timestamp is always YYYYMMDD_HHMMSS, never ``build``/``run``. Say so instead of listing missing fields."""
    if isinstance(data, dict) and "bytes" in data and not any(k in data for k in _LOG_FIELDS):
        raise ValueError(
            f"this is the {route}-log route; a snapshot of a file named 'logs' is posted to "
            ".../logs/{timestamp} with a YYYYMMDD_HHMMSS timestamp"
        )
    return data


class _LegacyBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cmdline: str = Field(max_length=MAX_CMDLINE, description="Command line, words joined with spaces")
    exit_code: int = Field(
        ge=-64, le=255, description="Exit status 0-255; a negative value -N means killed by signal N"
    )
    cwd: str = Field(max_length=MAX_PATH, description="Working directory, absolute in the student pod")
    target_path: str = Field(max_length=MAX_PATH, description="Source file, script or binary")
    timestamp: datetime = Field(
        description="ISO 8601; without an offset it is read as UTC, the old agents' clock (WATCHER_LEGACY_NAIVE_TZ, docs/legacy-api.md)"
    )

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        # PostgreSQL text cannot hold NUL; no real path or command line contains one.
        if isinstance(value, str) and "\x00" in value:
            raise ValueError("must not contain NUL characters")
        return value


class BuildLogCreate(_LegacyBody):
    binary_path: str = Field(max_length=MAX_PATH, description="The compiler binary, e.g. /usr/bin/gcc")

    @model_validator(mode="before")
    @classmethod
    def _route_check(cls, data: Any) -> Any:
        return _not_a_snapshot_body(data, "build")


class RunLogCreate(_LegacyBody):
    process_type: str = Field(max_length=32, description='"python" or "binary" (anything else is stored as "other")')

    @model_validator(mode="before")
    @classmethod
    def _route_check(cls, data: Any) -> Any:
        return _not_a_snapshot_body(data, "run")


class SnapshotCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    bytes: int = Field(
        ge=0, le=2**53, description="File size in bytes; 0 is a save of an empty file (the old API's deletion)"
    )


class Message(BaseModel):
    message: str


class BuildLogResponse(BaseModel):
    binary_path: str
    cmdline: str
    exit_code: int = Field(
        description="0-255 exit status, -N killed by signal N, 256 not known (the exit was not seen)"
    )
    cwd: str
    target_path: str
    timestamp: datetime  # naive KST
    file_size: int


class RunLogResponse(BaseModel):
    cmdline: str
    exit_code: int = Field(
        description="0-255 exit status, -N killed by signal N, 256 not known (the exit was not seen)"
    )
    cwd: str
    target_path: str
    process_type: str
    timestamp: datetime  # naive KST
    file_size: int


class SnapshotAvgResponse(BaseModel):
    snapshot_avg: int | None = Field(description="Number of snapshots (the old, misleading name is kept)")
    snapshot_size_avg: float | None


class MonitoringResponse(BaseModel):
    snapshot_avg: int | None = Field(description="Number of snapshots")
    snapshot_size_avg: float | None
    first: datetime | None
    last: datetime | None
    total: float | None = Field(description="Seconds from the first to the last snapshot")
    interval: float | None = Field(description="Seconds between the last two snapshots")


class Trend(BaseModel):
    timestamp: str = Field(description="Bucket start, YYYYMMDD_HHMM (KST)")
    total_size: int
    size_change: int


class GraphResponse(BaseModel):
    trends: list[Trend]


class TopStudent(BaseModel):
    student_num: str
    timestamp: str = Field(description="Latest snapshot, YYYYMMDD_HHMMSS (KST)")
    code_size: int


class AssignmentResponse(BaseModel):
    percentile_90: float
    percentile_50: float
    avg_bytes: float
    avg_num: float
    top_7: list[TopStudent]


class StudentSizeChange(BaseModel):
    student_num: str
    size_change: int


class CodeSizeChangeResponse(BaseModel):
    results: list[StudentSizeChange]


class AvgCountResponse(BaseModel):
    avg_count: float
