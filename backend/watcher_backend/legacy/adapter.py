"""The old platform API on top of the event store: legacy requests -> wire events, events -> legacy facts.

Writes become ordinary wire events (source ``legacy``) and go through ``store.ingest``, so a legacy
write is visible to the v1 API and a v1 event (filemon, procmon) to the legacy API. Their ``event_id``
is derived from every fact of the request, so an exact retry is stored once.

Paths: the old agents sent absolute paths as seen in the student pod (``/home/coder/project/hw1/a.c``).
They are stored relative to the assignment folder (``a.c``); a path outside the assignment folder
becomes ``.`` (cwd) or is dropped (target), and legacy reads rebuild pod paths from the stored ones.
"""

from __future__ import annotations

import functools
import json
import posixpath
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from watcher_core import identity, wire
from watcher_core.redact import redact_argv

from ..models import EVENT_TABLE
from . import timezones
from .schemas import BuildLogCreate, RunLogCreate
from .stats import Snap

EVENT = EVENT_TABLE
NODE = "legacy-api"
FILE_TYPES = (wire.FILE_SAVE, wire.FILE_DELETE, wire.FILE_TOO_LARGE)
# The old runlog held program runs and the IPython hook's cell runs (target_path "ipykernel"); its buildlog compiles.
BUILD_TYPES = (wire.PROCESS_COMPILE,)
RUN_TYPES = (wire.PROCESS_RUN, wire.NOTEBOOK_CELL)
NOTEBOOK_TARGET = "ipykernel"
NOTEBOOK_CMDLINE = "<unknown>"  # what the old hook sent: a cell has no command line
RULES = identity.LayoutRules()
# An old API hw_name (the assignment folder): what its URLs and the old database hold.
ASSIGNMENT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")

# The old API's integer ``exit_code`` for a process whose end was not seen (procmon lost its exit, or it was
# still running when procmon stopped). The platform's field is a non-null Int and its frontend reads 0 as
# success, so "unknown" must be an integer that is neither 0-255 (an exit status) nor -1..-64 (a signal).
UNKNOWN_EXIT_CODE = 256


@dataclass(frozen=True)
class Scope:
    """Who and which assignment a legacy URL names."""

    course: str
    section: str
    assignment: str
    student_id: str | None = None

    @property
    def class_div(self) -> str:
        return f"{self.course}-{self.section}"


# ------------------------------------------------------------------------------------------ paths


@functools.lru_cache(maxsize=8192)  # a pure function of strings; a student sends the same folder again and again
def relative_in_assignment(raw: str, student: identity.Student, assignment: str) -> str | None:
    """A legacy path -> a path relative to the assignment folder, or None if it is not inside it.

    Accepts pod paths (``/home/coder/project/hw1/src/a.c``), paths relative to the project folder
    (``hw1/src/a.c``), and as a last resort any absolute path with a component equal to the assignment
    (``/watcher/codes/os-1-2020/hw1/a.c``). ``..`` is never followed.
    """
    text = raw.strip()
    if not text:
        return None
    below = identity.relative_to(text, identity.POD_WORKSPACE_MOUNT) if text.startswith("/") else text
    if below is not None:
        try:
            found = RULES.assignment_dir(student, below)
        except identity.IdentityError:
            found = None
        if found is not None and found[0] == assignment:
            return found[1]
        return None  # inside the project folder but not in this assignment (or in an ignored folder)
    parts = [p for p in text.split("/") if p not in ("", ".")]
    if ".." in parts or assignment not in parts:
        return None
    inner = parts[parts.index(assignment) + 1 :]
    try:
        return identity.check_relative_path("/".join(inner) or ".")
    except identity.IdentityError:
        return None


def pod_path(assignment: str, rel: str | None) -> str:
    """The inverse for responses: ``a.c`` in hw1 -> ``/home/coder/project/hw1/a.c``."""
    base = f"{identity.POD_WORKSPACE_MOUNT}/{assignment}"
    if not rel or rel == ".":
        return base
    return f"{base}/{rel}"


def _argv(cmdline: str) -> tuple[list[str], bool]:
    words = cmdline.split()
    truncated = len(words) > wire.MAX_ARGV_ITEMS or any(len(w) > wire.MAX_ARG_LENGTH for w in words)
    return [w[: wire.MAX_ARG_LENGTH] for w in words[: wire.MAX_ARGV_ITEMS]], truncated


def _exit(code: int) -> tuple[int | None, int | None]:
    """(exit_code, signal): a negative legacy code -N means "killed by signal N" (Python's convention)."""
    return (None, -code) if code < 0 else (code, None)


def _event_id(kind: str, scope: Scope, facts: dict[str, Any]) -> str:
    canonical = json.dumps(facts, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=False)
    return wire.make_event_id(
        "legacy", kind, scope.course, scope.section, scope.student_id, scope.assignment, canonical
    )


def _common(scope: Scope, kind: str, when: datetime, facts: dict[str, Any]) -> dict[str, Any]:
    return {
        "event_id": _event_id(kind, scope, facts),
        "timestamp": when,
        "node": NODE,
        "source": "legacy",
        "course": scope.course,
        "section": scope.section,
        "student_id": scope.student_id,
        "assignment": scope.assignment,
    }


# ------------------------------------------------------------------------------------------ writes


def snapshot_event(scope: Scope, path: str, when: datetime, size: int) -> wire.FileSave:
    """``POST .../{filename}/{timestamp}`` -> file.save without content (the old API never sent it)."""
    facts = {"path": path, "timestamp": when.isoformat(), "bytes": size}
    return wire.FileSave(**_common(scope, "snapshot", when, facts), path=path, size=size, sha256=None)


def build_event(scope: Scope, body: BuildLogCreate, when: datetime) -> wire.ProcessCompile:
    student = identity.Student(scope.course, scope.section, scope.student_id or "")
    cwd = relative_in_assignment(body.cwd, student, scope.assignment) or "."
    target = relative_in_assignment(body.target_path, student, scope.assignment)
    argv, truncated = _argv(body.cmdline)
    exit_code, signal = _exit(body.exit_code)
    # The old procmon sent the compiler's full path (/usr/bin/x86_64-linux-gnu-gcc-12): kept as sent, so the
    # old API reads it back; only a path longer than the column keeps just its name.
    binary = body.binary_path.strip()
    if len(binary) > 255 or "\x00" in binary:
        binary = posixpath.basename(binary.replace("\x00", ""))[:255]
    compiler = binary or (posixpath.basename(argv[0]) if argv else "") or "unknown"
    facts = body.model_dump(mode="json") | {"timestamp": when.isoformat()}
    return wire.ProcessCompile(
        **_common(scope, "build", when, facts),
        path=target if target and target != "." else cwd,
        argv=argv,
        argv_truncated=truncated,
        cwd=cwd,
        exit_code=exit_code,
        signal=signal,
        started_at=when,
        compiler=compiler[:255],
        sources=[target] if target and target != "." else [],
    )


def run_event(scope: Scope, body: RunLogCreate, when: datetime) -> wire.ProcessRun | wire.NotebookCell:
    """``POST .../logs/run`` -> process.run; the old IPython hook's rows (target_path "ipykernel") -> notebook.cell."""
    student = identity.Student(scope.course, scope.section, scope.student_id or "")
    cwd = relative_in_assignment(body.cwd, student, scope.assignment) or "."
    facts = body.model_dump(mode="json") | {"timestamp": when.isoformat()}
    if body.target_path.strip() == NOTEBOOK_TARGET:
        # The hook sent exit_code 0 or 1 and no notebook, cell or exception: 1 reads as "raised something".
        return wire.NotebookCell(
            **_common(scope, "run", when, facts),
            path=".",
            cwd=cwd,
            started_at=when,
            ended_at=when,
            error=None if body.exit_code == 0 else "Exception",
        )
    target = relative_in_assignment(body.target_path, student, scope.assignment)
    if target == ".":
        target = None
    argv, truncated = _argv(body.cmdline)
    exit_code, signal = _exit(body.exit_code)
    kind: Literal["python", "binary", "other"] = (
        "python" if body.process_type == "python" else "binary" if body.process_type == "binary" else "other"
    )
    return wire.ProcessRun(
        **_common(scope, "run", when, facts),
        path=target or cwd,
        argv=argv,
        argv_truncated=truncated,
        cwd=cwd,
        exit_code=exit_code,
        signal=signal,
        started_at=when,
        kind=kind,
        target=target,
    )


# ------------------------------------------------------------------------------------------ reads


def _where(scope: Scope):
    conds = [EVENT.c.course == scope.course, EVENT.c.section == scope.section, EVENT.c.assignment == scope.assignment]
    if scope.student_id is not None:
        conds.append(EVENT.c.student_id == scope.student_id)
    return and_(*conds)


class AmbiguousStudent(LookupError):
    """A numeric id the platform sent matches several stored ids (``0123`` and ``00123``)."""

    def __init__(self, asked: str, stored: list[str]):
        super().__init__(f"{asked} matches several stored ids ({', '.join(stored)}); ask for one of them")
        self.stored = stored


def numeric_matches(student_id: str) -> list[str]:
    """Every id that equals ``student_id`` as a number: the platform sends ``studentNum: Int``, so a folder
    ``000123`` is asked for as ``123``. Ids are at most 32 characters, so this is at most 32 index lookups."""
    if not student_id.isdigit():
        return [student_id]
    core = student_id.lstrip("0") or "0"
    return ["0" * zeros + core for zeros in range(0, identity.MAX_STUDENT_ID_LENGTH - len(core) + 1)]


def match_student(session: Session, scope: Scope) -> Scope:
    """The scope of the student a read names: the exact stored id when there is one, else the one stored id
    that is equal as a number (``123`` finds ``000123``). Several such ids raise AmbiguousStudent; none
    leaves the scope as asked (an empty answer)."""
    if scope.student_id is None or not scope.student_id.isdigit():
        return scope
    q = (
        select(EVENT.c.student_id)
        .where(
            EVENT.c.course == scope.course,
            EVENT.c.section == scope.section,
            EVENT.c.assignment == scope.assignment,
            EVENT.c.student_id.in_(numeric_matches(scope.student_id)),
        )
        .distinct()
    )
    stored = sorted(session.execute(q).scalars())
    if scope.student_id in stored or not stored:
        return scope
    if len(stored) > 1:
        raise AmbiguousStudent(scope.student_id, stored)
    return Scope(scope.course, scope.section, scope.assignment, stored[0])


def snaps(session: Session, scope: Scope, path: str | None = None) -> list[Snap]:
    """The old API's "snapshots": saves (their size), too-large saves (their size) and deletions (size 0),
    oldest first."""
    q = select(EVENT.c.timestamp, EVENT.c.path, EVENT.c.size, EVENT.c.type, EVENT.c.student_id).where(
        _where(scope), EVENT.c.type.in_(FILE_TYPES)
    )
    if path is not None:
        q = q.where(EVENT.c.path == path)
    q = q.order_by(EVENT.c.timestamp, EVENT.c.id)
    return [
        Snap(r.timestamp, r.path, 0 if r.type == wire.FILE_DELETE else int(r.size or 0), r.student_id)
        for r in session.execute(q)
    ]


def filenames(session: Session, scope: Scope) -> list[str]:
    q = select(EVENT.c.path).where(_where(scope), EVENT.c.type.in_(FILE_TYPES)).distinct()
    return sorted(legacy_name(p) for p in session.execute(q).scalars())


def legacy_name(path: str) -> str:
    return path.replace("/", "@")


@dataclass(frozen=True)
class LogRow:
    type: str
    timestamp: datetime
    argv: list[str]
    cwd: str
    exit_code: int | None
    signal: int | None
    compiler: str | None
    sources: list[str]
    kind: str | None
    target: str | None
    path: str
    error: str | None = None

    @property
    def is_cell(self) -> bool:
        return self.type == wire.NOTEBOOK_CELL

    @property
    def legacy_exit_code(self) -> int:
        """0-255 an exit status, -N killed by signal N, UNKNOWN_EXIT_CODE (256) when neither is known;
        a notebook cell 0 or 1 (it raised), as the old hook sent."""
        if self.is_cell:
            return 0 if self.error is None else 1
        if self.exit_code is not None:
            return self.exit_code
        return -self.signal if self.signal is not None else UNKNOWN_EXIT_CODE

    @property
    def file_path(self) -> str | None:
        """The file the old API's ``target_path`` named, relative to the assignment folder."""
        if self.sources:
            return self.sources[0]
        if self.target:
            return self.target
        return self.path if self.path != "." else None


def logs(session: Session, scope: Scope, event_types: tuple[str, ...]) -> list[LogRow]:
    """Compiles (BUILD_TYPES) or runs (RUN_TYPES) of one student, newest first (as the old API listed them)."""
    q = (
        select(EVENT)
        .where(_where(scope), EVENT.c.type.in_(event_types))
        .order_by(EVENT.c.timestamp.desc(), EVENT.c.id.desc())
    )
    out = []
    for r in session.execute(q):
        m = r._mapping
        out.append(
            LogRow(
                type=m["type"],
                timestamp=m["timestamp"],
                argv=redact_argv(json.loads(m["argv"])) if m["argv"] else [],  # known secrets replaced
                cwd=m["cwd"] or ".",
                exit_code=m["exit_code"],
                signal=m["signal"],
                compiler=m["compiler"],
                sources=json.loads(m["sources"]) if m["sources"] else [],
                kind=m["kind"],
                target=m["target"],
                path=m["path"],
                error=m["error"],
            )
        )
    return out


def log_counts(session: Session, scope: Scope, event_types: tuple[str, ...]) -> tuple[int, int]:
    """(number of events, number of distinct students with one) in an assignment."""
    q = select(func.count(), func.count(func.distinct(EVENT.c.student_id))).where(
        _where(scope), EVENT.c.type.in_(event_types)
    )
    n, students = session.execute(q).one()
    return int(n or 0), int(students or 0)


def snapshot_times(items: Iterable[Snap]) -> list[str]:
    """Ascending, distinct ``YYYYMMDD_HHMMSS`` KST strings."""
    seen: dict[str, None] = {}
    for s in sorted(items, key=lambda s: s.time):
        seen.setdefault(timezones.snapshot_string(s.time), None)
    return list(seen)
