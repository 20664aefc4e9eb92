"""The wire format: every event an agent sends to ``POST /api/v1/events``, as pydantic models.

This module is the single definition of what crosses the wire between the agents (filemon, procmon)
and the backend. Agents build these models and send ``model_dump(mode="json")``; the backend validates
each element of a batch with ``parse_event`` and answers with a ``BatchResult``.

Rules every event follows:

* ``event_id`` is made by the client and is the idempotency key: sending it twice stores it once.
  Agents derive it deterministically where they can (see ``make_event_id``) so a resend after a
  crash reuses the same id.
* ``timestamp`` is RFC 3339 with an offset; it is normalised to UTC. A naive time is rejected
  (the old system guessed time zones and was off by nine hours).
* Every path field is relative to the assignment folder, without ``..`` (see identity.check_relative_path).
* A field this version does not know (sent by a newer agent) is accepted and not stored; the answer lists
  it (``BatchResult.ignored``), so an upgrade in the wrong order loses a field, never the event.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from watcher_core import identity

MAX_BATCH_EVENTS = 1000  # events in one POST
MAX_BATCH_BYTES = 4 * 1024 * 1024  # body size of one POST; larger -> 413
MAX_ARGV_ITEMS = 256
MAX_ARG_LENGTH = 8192
# What a compiler or the Python interpreter wrote to its standard error, as procmon captured it: at most this
# many characters (procmon reads at most this many bytes per process and flags the rest as cut).
MAX_STDERR_BYTES = 16384

FILE_SAVE: Final = "file.save"
FILE_DELETE: Final = "file.delete"
FILE_TOO_LARGE: Final = "file.too_large"
PROCESS_COMPILE: Final = "process.compile"
PROCESS_RUN: Final = "process.run"
NOTEBOOK_CELL: Final = "notebook.cell"
# Every event type, in the order the API and docs list them. Everything that names event types (query
# filters, metric labels, the docs) derives from this tuple and the models below.
EVENT_TYPES = (FILE_SAVE, FILE_DELETE, FILE_TOO_LARGE, PROCESS_COMPILE, PROCESS_RUN, NOTEBOOK_CELL)
PROCESS_TYPES = (PROCESS_COMPILE, PROCESS_RUN)

SourceName = Literal["filemon", "procmon", "legacy", "ipynb", "import"]


def _utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+01:00 is before year 1 in UTC: a 422 naming the field, not a 500
        raise ValueError("out of range once converted to UTC (years 1 to 9999)") from None


def _rel_path(value: str) -> str:
    try:
        return identity.check_relative_path(value)
    except identity.IdentityError as exc:
        raise ValueError(str(exc)) from None


def _course(value: str) -> str:
    if not identity.COURSE_RE.fullmatch(value):
        raise ValueError("course must be letters, digits, '-' or '_' (at most 64)")
    return value


def _section(value: str) -> str:
    if not identity.SECTION_RE.fullmatch(value):
        raise ValueError("section must be 1-16 letters or digits")
    return value


def _student_id(value: str) -> str:
    if not identity.STUDENT_ID_RE.fullmatch(value):
        raise ValueError("student_id must be 1-32 letters or digits (a string: leading zeros are kept)")
    return value


UtcTime = Annotated[AwareDatetime, AfterValidator(_utc)]
RelPath = Annotated[str, AfterValidator(_rel_path)]
Course = Annotated[str, AfterValidator(_course)]
Section = Annotated[str, AfterValidator(_section)]
StudentId = Annotated[str, AfterValidator(_student_id)]
Assignment = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
EventId = Annotated[str, Field(min_length=8, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")]
NodeName = Annotated[str, Field(min_length=1, max_length=253, pattern=r"^[A-Za-z0-9._-]+$")]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
Arg = Annotated[str, Field(max_length=MAX_ARG_LENGTH)]


class _Event(BaseModel):
    """Fields common to every event."""

    # extra="allow": unknown fields land in __pydantic_extra__, which nothing stores (see unknown_fields).
    model_config = ConfigDict(extra="allow", frozen=True)

    event_id: EventId
    timestamp: UtcTime = Field(description="When it happened (RFC 3339 with offset; stored as UTC)")
    node: NodeName = Field(description="Kubernetes node (or host) that observed the event")
    source: SourceName
    course: Course
    section: Section
    student_id: StudentId
    assignment: Assignment
    path: RelPath = Field(description="Path relative to the assignment folder ('.' = the folder itself)")

    @property
    def unknown_fields(self) -> list[str]:
        """Fields this version of the wire format does not know (from a newer agent): not stored."""
        return sorted(self.__pydantic_extra__ or ())

    @property
    def student(self) -> identity.Student:
        return identity.Student(self.course, self.section, self.student_id)


class FileSave(_Event):
    """A tracked source file was saved; its content is in the snapshot store under ``sha256``.

    Only the old platform API (source ``legacy``) reports saves without content, so only there may
    ``sha256`` be missing.
    """

    type: Literal["file.save"] = FILE_SAVE
    sha256: Sha256 | None = None
    size: int = Field(ge=0)

    @model_validator(mode="after")
    def _content_known(self):
        if self.sha256 is None and self.source != "legacy":
            raise ValueError("sha256 is required (only legacy API saves may omit it)")
        return self


class FileDelete(_Event):
    """A tracked source file was deleted (or renamed away: the new name arrives as a file.save)."""

    type: Literal["file.delete"] = FILE_DELETE


class FileTooLarge(_Event):
    """A tracked file was saved but is over the size limit: recorded, content not kept."""

    type: Literal["file.too_large"] = FILE_TOO_LARGE
    size: int = Field(ge=0)
    limit: int = Field(ge=0)


class _Process(_Event):
    """Fields of every traced process. ``path`` is the main file (source, script or binary) or the cwd."""

    argv: list[Arg] = Field(max_length=MAX_ARGV_ITEMS)
    argv_truncated: bool = False
    cwd: RelPath = Field(description="Working directory relative to the assignment folder")
    exit_code: int | None = Field(None, ge=0, le=255, description="None when killed by a signal or unknown")
    signal: int | None = Field(None, ge=1, le=64, description="Terminating signal, e.g. 11 for SIGSEGV")
    started_at: UtcTime
    ended_at: UtcTime | None = None
    pid: int | None = Field(None, ge=1)
    # No NUL: PostgreSQL text cannot store it.
    stderr: str | None = Field(
        None,
        max_length=MAX_STDERR_BYTES,
        pattern=r"^[^\x00]*$",
        description="What the compiler or the Python interpreter wrote to its standard error (at most "
        f"{MAX_STDERR_BYTES} characters); None = not captured. Never a student program's output",
    )
    stderr_truncated: bool = Field(False, description="The process wrote more to stderr than `stderr` holds")

    @model_validator(mode="after")
    def _times_in_order(self):
        if self.ended_at is not None and self.ended_at < self.started_at:
            raise ValueError("ended_at is before started_at")
        return self

    @property
    def duration_ms(self) -> float | None:
        if self.ended_at is None:
            return None
        return (self.ended_at - self.started_at).total_seconds() * 1000.0

    @property
    def succeeded(self) -> bool:
        return self.succeeded_from(self.__dict__)

    @staticmethod
    def succeeded_from(values: Mapping[str, Any]) -> bool:
        """Exit status 0 and no signal (also for stored rows: ``values`` maps field names to values)."""
        return values["signal"] is None and values["exit_code"] == 0


class ProcessCompile(_Process):
    type: Literal["process.compile"] = PROCESS_COMPILE
    # No NUL: PostgreSQL text cannot store it (the insert failed with a 503 instead of a 422).
    compiler: Annotated[str, Field(min_length=1, max_length=255, pattern=r"^[^\x00]+$")]
    sources: list[RelPath] = Field(default_factory=list, max_length=MAX_ARGV_ITEMS)
    output: RelPath | None = None


class ProcessRun(_Process):
    type: Literal["process.run"] = PROCESS_RUN
    kind: Literal["python", "binary", "other"]
    target: RelPath | None = Field(None, description="Script, module or binary run, if inside the assignment")


MAX_CELL_ID_LENGTH = 255
# An exception's class name, qualified or not: ZeroDivisionError, numpy.linalg.LinAlgError.
ExceptionName = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z_][A-Za-z0-9_.]*$")]


class NotebookCell(_Event):
    """A Jupyter notebook cell ran in a student's kernel (sent by the IPython hook, core/watcher_core/notebook_hook.py).

    Never the cell's code or output: what ran where, when, for how long, and whether it raised. ``path`` is
    the notebook relative to the assignment folder (``.`` when the front end did not say which one).
    """

    type: Literal["notebook.cell"] = NOTEBOOK_CELL
    source: Literal["ipynb", "legacy", "import"] = "ipynb"
    cwd: RelPath = Field(".", description="The kernel's working directory relative to the assignment folder")
    started_at: UtcTime
    ended_at: UtcTime
    error: ExceptionName | None = Field(None, description="Class of the exception the cell raised; None = success")
    cell_id: str | None = Field(
        None,
        max_length=MAX_CELL_ID_LENGTH,
        pattern=r"^[^\x00]*$",
        description="The front end's id of the cell (stable across re-runs of it)",
    )
    cell_index: int | None = Field(None, ge=0, le=100_000, description="Position of the cell in the saved notebook")
    execution_count: int | None = Field(None, ge=0, description="The kernel's In[n] counter")

    @model_validator(mode="after")
    def _times_in_order(self):
        if self.ended_at < self.started_at:
            raise ValueError("ended_at is before started_at")
        return self

    @property
    def succeeded(self) -> bool:
        return self.succeeded_from(self.__dict__)

    @staticmethod
    def succeeded_from(values: Mapping[str, Any]) -> bool:
        """The cell raised nothing."""
        return values["error"] is None


Event = Annotated[
    FileSave | FileDelete | FileTooLarge | ProcessCompile | ProcessRun | NotebookCell,
    Field(discriminator="type"),
]
_EVENT_ADAPTER: TypeAdapter = TypeAdapter(Event)


# ----------------------------------------------------------------------- the registry of event types
# Everything that stores, reads or lists events derives from the models above: the backend's columns are
# checked against these fields at import, its insert and read paths are generic over them.

MODELS: dict[str, type[_Event]] = {
    model.model_fields["type"].default: model
    for model in (FileSave, FileDelete, FileTooLarge, ProcessCompile, ProcessRun, NotebookCell)
}
assert tuple(MODELS) == EVENT_TYPES, "EVENT_TYPES and the Event union list the same types in the same order"
COMMON_FIELDS = tuple(f for f in _Event.model_fields)
# List fields, stored as JSON text.
JSON_FIELDS = frozenset({"argv", "sources"})


def type_fields(event_type: str) -> tuple[str, ...]:
    """The fields ``event_type`` adds to the common ones, in declaration order."""
    return tuple(f for f in MODELS[event_type].model_fields if f not in COMMON_FIELDS and f != "type")


def has_duration(event_type: str) -> bool:
    """Types that know when they started and ended: their readers get ``duration_ms`` too."""
    fields = MODELS[event_type].model_fields
    return "started_at" in fields and "ended_at" in fields


def succeeded_from(event_type: str, values: Mapping[str, Any]) -> bool | None:
    """Whether a stored event of ``event_type`` succeeded; None for types without an outcome (saves)."""
    judge = getattr(MODELS[event_type], "succeeded_from", None)
    return None if judge is None else judge(values)


def parse_event(data: Any) -> Event:
    """Validate one event (a dict from JSON). Raises pydantic.ValidationError."""
    return _EVENT_ADAPTER.validate_python(data)


def describe_error(exc: ValidationError) -> str:
    """One line naming every bad field: ``sha256: String should match pattern ...; size: ...``."""
    parts = []
    for err in exc.errors(include_url=False):
        loc = [str(p) for p in err.get("loc", ())]
        # The discriminated union puts the type tag first in the location; it says nothing to a user.
        if loc and loc[0] in EVENT_TYPES:
            loc = loc[1:]
        where = ".".join(loc) or "event"
        msg = err.get("msg", "invalid")
        if err.get("type") == "union_tag_invalid":
            where, msg = "type", f"unknown event type; expected one of {', '.join(EVENT_TYPES)}"
        elif err.get("type") == "union_tag_not_found":
            where, msg = "type", "missing; expected one of " + ", ".join(EVENT_TYPES)
        parts.append(f"{where}: {msg}")
    return "; ".join(parts)


class Rejection(BaseModel):
    index: int = Field(description="Position of the event in the posted array")
    event_id: str | None = None
    error: str = Field(description="Which field is wrong and why")


class Ignored(BaseModel):
    index: int = Field(description="Position of the event in the posted array")
    event_id: str
    fields: list[str] = Field(description="Fields this backend does not know: the event was stored without them")


class BatchResult(BaseModel):
    """The answer to ``POST /api/v1/events``. Rejected events are not stored; the others are."""

    accepted: int = Field(description="Events newly stored")
    duplicates: int = Field(description="Events whose event_id was already stored (no change)")
    rejected: list[Rejection] = Field(default_factory=list)
    ignored: list[Ignored] = Field(default_factory=list, description="Stored events that carried unknown fields")


# ----------------------------------------------------------------------- snapshot garbage collection
# When events are erased (a student's records, the retention purge) the backend queues their contents'
# sha256. filemon, which owns the snapshot store, asks which of them no event refers to any more, removes
# those files, and reports back. See docs/filemon.md ("Erased contents").

MAX_GC_BATCH = 5000


class UnreferencedSnapshots(BaseModel):
    """The answer to ``GET /api/v1/snapshots/unreferenced``: contents that no stored event refers to."""

    sha256: list[Sha256] = Field(description="Contents to remove from the snapshot store, oldest erasure first")
    pending: int = Field(description="Erased contents still queued after this page (referenced or not)")


class RemovedSnapshots(BaseModel):
    """``POST /api/v1/snapshots/unreferenced/removed``: what the collector did with a page."""

    sha256: list[Sha256] = Field(
        max_length=MAX_GC_BATCH, description="Contents gone from the store (removed, or never there)"
    )
    kept: list[Sha256] = Field(
        default_factory=list,
        max_length=MAX_GC_BATCH,
        description="Contents saved within the grace period: asked about again later, after the rest of the queue",
    )


class ForgottenSnapshots(BaseModel):
    forgotten: int = Field(description="Queued contents the backend no longer tracks")


def make_event_id(*parts: object) -> str:
    """A deterministic id from the facts that make an event unique (node, path, sha, time...).

    Agents use it so that an event rebuilt after a crash gets the same id and is deduplicated.
    """
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8", "surrogateescape")).hexdigest()
    return f"ev-{digest[:40]}"


def utcnow() -> datetime:
    return datetime.now(UTC)
