"""The ``diagnostic`` table: what compilers and Python told students, kept at ingest and read by the API.

Rows come from ``watcher_core.diagnostics`` (the parser) over a process event's ``stderr``; they are written
in the ingest transaction (``apply``, next to the rollups), rebuilt from stored stderr by revision 0011
(``backfill``) and deleted with their events (``forget``: a student's erasure, the retention purge).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, func, select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from watcher_core import diagnostics, wire

from . import measures
from .models import DIAGNOSTIC_TABLE as DIAG
from .models import EVENT_TABLE as EVENT

PROCESS_TYPES = (wire.PROCESS_COMPILE, wire.PROCESS_RUN)
# What the timeline shows of a diagnostic (the scope columns are the event's own).
SHOWN = ("kind", "file", "line", "col", "message", "error_class", "flag", "in_assignment")


def rows_for(values: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The ``diagnostic`` rows of one process event, from its fields (a wire event's or a stored row's)."""
    if values.get("type") not in PROCESS_TYPES or not values.get("stderr"):
        return []
    found = diagnostics.for_process(
        values["type"],
        values["stderr"],
        cwd=values.get("cwd") or ".",
        assignment=values["assignment"],
        kind=values.get("kind"),
    )
    scope = {name: values[name] for name in ("event_id", "course", "section", "assignment", "student_id", "timestamp")}
    return [
        scope
        | {
            "seq": seq,
            "kind": d.kind,
            "file": d.file[:1024] if d.file else None,
            "line": d.line,
            "col": d.col,
            "message": d.message,
            "error_class": d.error_class,
            "flag": d.flag[:128] if d.flag else None,
            "in_assignment": d.in_assignment,
        }
        for seq, d in enumerate(found)
    ]


def apply(session: Session, events: Sequence[wire.Event]) -> int:
    """Store the diagnostics of the events this transaction has just stored. Returns the rows written."""
    rows = [row for ev in events if ev.type in PROCESS_TYPES for row in rows_for(ev.__dict__ | {"type": ev.type})]
    if rows:
        session.execute(DIAG.insert(), rows)
    return len(rows)


def forget(session: Session, where) -> int:
    """Delete the diagnostics of the events ``where`` selects (before those events are deleted)."""
    result = session.execute(delete(DIAG).where(DIAG.c.event_id.in_(select(EVENT.c.event_id).where(where))))
    return max(int(getattr(result, "rowcount", 0) or 0), 0)


def backfill(connection: Connection, *, chunk: int = 1000) -> int:
    """Parse every stored process event's stderr into diagnostics (revision 0011). Returns the rows written."""
    columns = [EVENT.c[name] for name in ("id", "event_id", "type", "course", "section", "assignment")]
    columns += [EVENT.c[name] for name in ("student_id", "timestamp", "cwd", "kind", "stderr")]
    last, written = 0, 0
    while True:
        q = (
            select(*columns)
            .where(EVENT.c.id > last, EVENT.c.type.in_(PROCESS_TYPES), EVENT.c.stderr.is_not(None))
            .order_by(EVENT.c.id)
            .limit(chunk)
        )
        rows = list(connection.execute(q))
        if not rows:
            return written
        found = [row for r in rows for row in rows_for(dict(r._mapping))]
        if found:
            connection.execute(DIAG.insert(), found)
        written += len(found)
        last = rows[-1].id


# ------------------------------------------------------------------------------------------------ reads


def by_event(session: Session, event_ids: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
    """event_id -> its diagnostics in the order printed."""
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    ids = sorted(set(event_ids))
    for start in range(0, len(ids), 500):
        q = (
            select(DIAG.c.event_id, *(DIAG.c[name] for name in SHOWN))
            .where(DIAG.c.event_id.in_(ids[start : start + 500]))
            .order_by(DIAG.c.event_id, DIAG.c.seq)
        )
        for r in session.execute(q):
            out[r.event_id].append({name: r._mapping[name] for name in SHOWN})
    return out


def attach(session: Session, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Give the timeline's process events what was parsed from their stderr: a compile its ``diagnostics``
    (a list, empty when it printed none; None when stderr was not captured), a run its ``exception``."""
    wanted = [e["event_id"] for e in events if e["type"] in PROCESS_TYPES and e.get("stderr") is not None]
    found = by_event(session, wanted) if wanted else {}
    for e in events:
        if e["type"] == wire.PROCESS_COMPILE:
            e["diagnostics"] = found.get(e["event_id"], []) if e.get("stderr") is not None else None
        elif e["type"] == wire.PROCESS_RUN:
            exceptions = [d for d in found.get(e["event_id"], []) if d["kind"] == "exception"]
            e["exception"] = exceptions[-1] if exceptions else None
    return events


def _scope(course: str, section: str, assignment: str):
    return and_(DIAG.c.course == course, DIAG.c.section == section, DIAG.c.assignment == assignment)


def _window(q, since: datetime | None, until: datetime | None):
    if since is not None:
        q = q.where(DIAG.c.timestamp >= since)
    if until is not None:
        q = q.where(DIAG.c.timestamp < until)
    return q


def top_classes(
    session: Session,
    course: str,
    section: str,
    assignment: str,
    *,
    kinds: Sequence[str] = ("error", "exception"),
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 20,
) -> list[dict[str, Any]]:
    """An assignment's most frequent error classes: how often each was printed, by how many students (who),
    and one message as an example. Ties go to the class more students hit, then alphabetically."""
    where = and_(_scope(course, section, assignment), DIAG.c.kind.in_(list(kinds)))
    students = func.count(func.distinct(DIAG.c.student_id))
    q = select(
        DIAG.c.kind,
        DIAG.c.error_class,
        func.count().label("count"),
        students.label("students"),
        func.min(DIAG.c.id).label("example_id"),
    ).where(where)
    q = _window(q, since, until).group_by(DIAG.c.kind, DIAG.c.error_class)
    q = q.order_by(func.count().desc(), students.desc(), DIAG.c.error_class, DIAG.c.kind).limit(limit)
    classes = list(session.execute(q))
    if not classes:
        return []
    examples = {
        r.id: r
        for r in session.execute(
            select(DIAG.c.id, DIAG.c.message, DIAG.c.file, DIAG.c.line, DIAG.c.flag).where(
                DIAG.c.id.in_([c.example_id for c in classes])
            )
        )
    }
    who: dict[tuple[str, str], list[str]] = defaultdict(list)
    pairs = select(DIAG.c.kind, DIAG.c.error_class, DIAG.c.student_id).where(
        where, DIAG.c.error_class.in_(sorted({c.error_class for c in classes}))
    )
    for r in session.execute(_window(pairs, since, until).distinct().order_by(DIAG.c.student_id)):
        who[(r.kind, r.error_class)].append(r.student_id)
    out = []
    for c in classes:
        example = examples[c.example_id]
        out.append(
            {
                "kind": c.kind,
                "error_class": c.error_class,
                "count": int(c._mapping["count"]),
                "student_count": int(c.students),
                "students": who[(c.kind, c.error_class)],
                "example": {"message": example.message, "file": example.file, "line": example.line},
                "flag": example.flag,
            }
        )
    return out


def compile_history(
    session: Session, course: str, section: str, assignment: str, student_id: str | None = None
) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """Per student (in student order): their compile events in time order, each with its outcome, time,
    main file and first error (class, message, file, line), for ``measures``."""
    scope = [EVENT.c.course == course, EVENT.c.section == section, EVENT.c.assignment == assignment]
    if student_id is not None:
        scope.append(EVENT.c.student_id == student_id)
    q = (
        select(
            EVENT.c.student_id,
            EVENT.c.event_id,
            EVENT.c.timestamp,
            EVENT.c.path,
            EVENT.c.sources,
            EVENT.c.exit_code,
            EVENT.c.signal,
        )
        .where(*scope, EVENT.c.type == wire.PROCESS_COMPILE)
        .order_by(EVENT.c.student_id, EVENT.c.timestamp, EVENT.c.id)
    )
    dscope = [DIAG.c.course == course, DIAG.c.section == section, DIAG.c.assignment == assignment]
    if student_id is not None:
        dscope.append(DIAG.c.student_id == student_id)
    first: dict[str, Any] = {}
    errors = (
        select(DIAG.c.event_id, DIAG.c.error_class, DIAG.c.message, DIAG.c.file, DIAG.c.line)
        .where(*dscope, DIAG.c.kind == "error")
        .order_by(DIAG.c.event_id, DIAG.c.seq)
    )
    for e in session.execute(errors):
        first.setdefault(e.event_id, e)
    current: str | None = None
    history: list[dict[str, Any]] = []
    for r in session.execute(q):
        if r.student_id != current:
            if current is not None:
                yield current, history
            current, history = r.student_id, []
        error = first.get(r.event_id)
        sources = json.loads(r.sources) if r.sources else []
        history.append(
            {
                "timestamp": r.timestamp,
                "succeeded": r.exit_code == 0 and r.signal is None,
                "file": sources[0] if sources else r.path,
                "error_class": error.error_class if error else None,
                "message": error.message if error else None,
                "error_file": error.file if error else None,
                "line": error.line if error else None,
            }
        )
    if current is not None:
        yield current, history


def assignment_measures(session: Session, course: str, section: str, assignment: str) -> list[dict[str, Any]]:
    """EQ, RED and Watwin of every student who compiled in the assignment (``measures``)."""
    histories = {
        student: measures.from_history(rows) for student, rows in compile_history(session, course, section, assignment)
    }
    return measures.student_rows(histories)


def student_measures(session: Session, course: str, section: str, student_id: str) -> list[dict[str, Any]]:
    """One student's measures in each assignment they compiled in. Watwin compares the student's times with
    the whole assignment's, so each assignment's histories are read."""
    q = (
        select(EVENT.c.assignment)
        .where(
            EVENT.c.course == course,
            EVENT.c.section == section,
            EVENT.c.student_id == student_id,
            EVENT.c.type == wire.PROCESS_COMPILE,
        )
        .distinct()
        .order_by(EVENT.c.assignment)
    )
    out = []
    for assignment in session.scalars(q):
        rows = assignment_measures(session, course, section, assignment)
        mine = next(r for r in rows if r["student_id"] == student_id)
        out.append({"assignment": assignment} | {k: v for k, v in mine.items() if k != "student_id"})
    return out
