"""The dashboard's reads (``/ui`` and its JSON under ``/api/v1``), from the rollups kept at ingest only.

A course's assignments, an assignment's students and their heat strips read ``student_rollup``,
``file_state`` and ``activity_hour`` (a row per student, or per student and hour), never the events, so
an assignment of 400,000 events answers as fast as one of 400. A student's timeline is the paged
``/timeline`` route. Flags are raw numbers in the rollups; the thresholds apply here, so a changed
threshold needs no rebuild.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import BigInteger, String, and_, func, literal_column, select
from sqlalchemy.orm import Session

from watcher_core import wire
from watcher_core.redact import redact_argv

from . import rollups, store
from .models import ACTIVITY_HOUR_TABLE as HOURS
from .models import EVENT_TABLE as EVENT
from .models import STUDENT_ROLLUP_TABLE as ROLLUP

_HOUR = timedelta(hours=1)


@dataclass(frozen=True)
class Thresholds:
    """When a student is flagged: ``stuck_compiles`` failing compiles in a row (none successful since), a
    ``paste_bytes`` growth of one file in one save."""

    stuck_compiles: int
    paste_bytes: int

    def as_dict(self) -> dict[str, int]:
        return {"stuck_compiles": self.stuck_compiles, "paste_bytes": self.paste_bytes}


def _aware(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):  # SQLite returns aggregates of datetimes as text
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


HEAT_BINS = 120  # a heat strip's cells at most: an assignment of three weeks has about 500 hours


def _int(n: int):
    """A whole number of ours as SQL text: the same expression in a select and its GROUP BY is then the
    same SQL (bound parameters would differ, which PostgreSQL refuses)."""
    return literal_column(str(int(n)), BigInteger)


def _heat(
    session: Session, course: str, section: str, assignment: str, span: tuple[Any, Any] = (None, None)
) -> tuple[datetime | None, int, int, dict[str, list[list[int]]]]:
    """Each student's events in bins of ``per`` hours from the assignment's first hour: (first hour, hours
    from it to the last one with activity, per, student -> [[bin, events], ...]). Binned in SQL: an
    assignment of 200 students holds tens of thousands of student-hours, a strip needs 120 numbers.
    ``span``: the assignment's first and last event if known (the summary has them), else read here."""
    where = and_(HOURS.c.course == course, HOURS.c.section == section, HOURS.c.assignment == assignment)
    if span[0] is not None and span[1] is not None:  # their hours are the table's least and greatest
        first, last = rollups.hour_of(span[0]), rollups.hour_of(span[1])
    else:  # an index scan of every student-hour of the assignment
        first, last = session.execute(select(func.min(HOURS.c.hour), func.max(HOURS.c.hour)).where(where)).one()
    if first is None or last is None:
        return None, 0, 1, {}
    first, last = int(first), int(last)
    hours = last - first + 1
    per = -(-hours // HEAT_BINS)  # whole hours per bin, so at most HEAT_BINS bins
    # hours are whole numbers (revision 0012): integer division in both dialects, never negative here
    bin_ = ((HOURS.c.hour - _int(first)) // _int(per)).label("bin")
    cells = (
        select(HOURS.c.student_id, bin_, func.sum(HOURS.c.events).label("n"))
        .where(where)
        .group_by(HOURS.c.student_id, bin_)
        .subquery()
    )
    # Each student's cells come back as one JSON array built in SQL: 200 rows parsed by json.loads instead
    # of ~20,000 (student, bin, events) rows through the driver (that was half the assignment page's time).
    if session.get_bind().dialect.name == "postgresql":
        strip = func.json_agg(func.json_build_array(cells.c.bin, cells.c.n.cast(BigInteger)))
    else:
        strip = func.json_group_array(func.json_array(cells.c.bin, cells.c.n))
    heat: dict[str, list[list[int]]] = {}
    for student, text in session.execute(select(cells.c.student_id, strip.cast(String)).group_by(cells.c.student_id)):
        heat[student] = sorted(json.loads(text))  # an aggregate's input order is not promised
    return rollups.EPOCH + first * _HOUR, hours, per, heat


def _local_day(offset: timedelta):
    """SQL for the day of ``activity_hour.hour`` shifted by ``offset``, as whole days since the epoch
    (``_day_text`` names it). Integer arithmetic on whole hours, the same in both dialects."""
    minutes = int(offset.total_seconds() // 60)
    # floor division: the shifted minutes are positive for any hour after 1970-01-02
    return (HOURS.c.hour * _int(60) + _int(minutes)) // _int(24 * 60)


def _day_text(days: int) -> str:
    return (_EPOCH_DAY + timedelta(days=int(days))).isoformat()


_EPOCH_DAY = date(1970, 1, 1)


def sections_of(session: Session, course: str) -> list[str]:
    """The sections of a course that have activity."""
    q = select(ROLLUP.c.section).where(ROLLUP.c.course == course).distinct().order_by(ROLLUP.c.section)
    return list(session.execute(q).scalars())


def course_view(session: Session, course: str, zone_name: str, sections: set[str] | None = None) -> dict[str, Any]:
    """Every assignment of a course with its totals and, per day in the platform's zone, its active
    students, saves, compiles (and successes) and runs. ``sections``: only these (a scoped reader)."""
    scope = (ROLLUP.c.section, ROLLUP.c.assignment)
    q = select(
        *scope,
        func.count().label("students"),
        *(func.sum(ROLLUP.c[name]).label(name) for name in ("events", "saves", "compiles", "compile_successes")),
        func.sum(ROLLUP.c.runs).label("runs"),
        func.min(ROLLUP.c.first_activity).label("first_activity"),
        func.max(ROLLUP.c.last_activity).label("last_activity"),
    ).where(ROLLUP.c.course == course)
    if sections is not None:
        q = q.where(ROLLUP.c.section.in_(sorted(sections)))
    totals = list(session.execute(q.group_by(*scope).order_by(*scope)).mappings())

    # Days are counted in SQL (a course holds a row per student and hour: hundreds of thousands), with the
    # zone's offset of today: exact for zones without daylight saving time, such as Asia/Seoul.
    day = _local_day(datetime.now(ZoneInfo(zone_name)).utcoffset() or timedelta(0))
    hq = select(
        HOURS.c.section,
        HOURS.c.assignment,
        day.label("day"),
        func.count(HOURS.c.student_id.distinct()),
        *(func.sum(HOURS.c[n]) for n in _DAY_COUNTS),
    ).where(HOURS.c.course == course)
    if sections is not None:
        hq = hq.where(HOURS.c.section.in_(sorted(sections)))
    hq = hq.group_by(HOURS.c.section, HOURS.c.assignment, day)
    days: dict[tuple[str, str], dict[str, list[int]]] = defaultdict(dict)
    for section, assignment, when, students, *counts in session.execute(hq):
        days[(section, assignment)][_day_text(when)] = [int(students), *(int(n or 0) for n in counts)]

    assignments = []
    for row in totals:
        key = (row["section"], row["assignment"])
        compiles, ok = int(row["compiles"] or 0), int(row["compile_successes"] or 0)
        assignments.append(
            {
                "section": row["section"],
                "assignment": row["assignment"],
                "students": int(row["students"]),
                "events": int(row["events"] or 0),
                "saves": int(row["saves"] or 0),
                "compiles": compiles,
                "compile_successes": ok,
                "compile_success_rate": rollups.success_rate(ok, compiles),
                "runs": int(row["runs"] or 0),
                "first_activity": _aware(row["first_activity"]),
                "last_activity": _aware(row["last_activity"]),
                "days": [
                    {"day": day, "active_students": v[0]} | dict(zip(_DAY_COUNTS, v[1:]))
                    for day, v in sorted(days.get(key, {}).items())
                ],
            }
        )
    return {"course": course, "time_zone": zone_name, "assignments": assignments}


_DAY_COUNTS = ("saves", "compiles", "compile_successes", "runs")


def assignment_view(
    session: Session,
    course: str,
    section: str,
    assignment: str,
    *,
    idle_gap_seconds: int,
    thresholds: Thresholds,
    zone_name: str,
) -> dict[str, Any]:
    """An assignment's students: the summary's row of each, failed compiles, the flags with the numbers
    behind them, and each student's events per hour (the heat strip) from the assignment's first hour."""
    summary = store.summary(session, course, section, assignment, idle_gap_seconds=idle_gap_seconds)
    where = and_(ROLLUP.c.course == course, ROLLUP.c.section == section, ROLLUP.c.assignment == assignment)
    flags = {
        r.student_id: r
        for r in session.execute(select(ROLLUP.c.student_id, *(ROLLUP.c[c] for c in rollups.FLAG_COLUMNS)).where(where))
    }
    span = (summary["first_activity"], summary["last_activity"])
    start, hours, per, heat = _heat(session, course, section, assignment, span)

    students = []
    for row in summary["per_student"]:
        f = flags.get(row["student_id"])
        fail_streak = int(f.fail_streak) if f else 0
        max_growth = int(f.max_growth) if f else 0
        students.append(
            row
            | {
                "failed_compiles": row["compiles"] - row["compile_successes"],
                "fail_streak": fail_streak,
                "max_fail_streak": int(f.max_fail_streak) if f else 0,
                "max_growth": max_growth,
                "max_growth_path": f.max_growth_path if f else None,
                "max_growth_at": _aware(f.max_growth_at) if f else None,
                "stuck": fail_streak >= thresholds.stuck_compiles,
                "large_paste": max_growth >= thresholds.paste_bytes,
                "heat": heat.get(row["student_id"], []),
            }
        )
    totals = {k: v for k, v in summary.items() if k != "per_student"}
    return totals | {
        "time_zone": zone_name,
        "thresholds": thresholds.as_dict(),
        "heat_start": start,
        "heat_hours": hours,
        "heat_bin_hours": per,
        "per_student": students,
    }


# ------------------------------------------------------------------------------------------ timeline

# The student page's events, compact: one array per event instead of an object of every field (a save's
# object in /timeline is about 700 bytes of JSON, this about 120), so a page of 1,000 events is fetched,
# parsed and drawn well within the timeline's 300 ms. Paths are sent once, events refer to them by index.
TIMELINE_COLUMNS = ("id", "time_ms", "type", "path", "size", "sha256", "exit_code", "signal", "argv", "error")
_TYPE_INDEX = {t: i for i, t in enumerate(wire.EVENT_TYPES)}


def timeline_page(
    session: Session,
    course: str,
    section: str,
    assignment: str,
    student_id: str,
    *,
    limit: int,
    cursor: str | None,
) -> dict[str, Any]:
    """One page of a student's events in one assignment, oldest first (``store.timeline``'s order and
    cursor), as ``TIMELINE_COLUMNS`` arrays. Raises ``store.BadCursor``."""
    e = EVENT.c
    q = select(e.id, e.timestamp, e.type, e.path, e.size, e.sha256, e.exit_code, e.signal, e.argv, e.error)
    q = q.where(store.events_of(course, section, assignment, student_id))
    after = store.after_cursor(cursor)
    if after is not None:
        q = q.where(after)
    rows = list(session.execute(q.order_by(e.timestamp, e.id).limit(limit + 1)))
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = store.encode_cursor(rows[-1].timestamp, rows[-1].id)
    paths: dict[str, int] = {}
    # A student runs the same few command lines again and again: each distinct one is parsed and redacted
    # once per page (a page of 1,000 events holds hundreds of command lines).
    argvs: dict[str, list[str]] = {}
    events = []
    for r in rows:
        path = paths.setdefault(r.path, len(paths))
        argv = None
        if r.argv:
            argv = argvs.get(r.argv)
            if argv is None:
                # known secrets replaced, as everywhere a command line leaves the backend (docs/security.md)
                argv = argvs[r.argv] = redact_argv(json.loads(r.argv))
        ms = int(r.timestamp.timestamp() * 1000)
        events.append([r.id, ms, _TYPE_INDEX[r.type], path, r.size, r.sha256, r.exit_code, r.signal, argv, r.error])
    return {
        "course": course,
        "section": section,
        "assignment": assignment,
        "student_id": student_id,
        "types": list(wire.EVENT_TYPES),
        "columns": list(TIMELINE_COLUMNS),
        "paths": list(paths),
        "events": events,
        "next_cursor": next_cursor,
    }
