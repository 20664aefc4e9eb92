"""Rollups: per-student counts, time on task, each file's latest state and the old API's snapshot sizes,
kept up to date by every ingest, so an assignment's views read one row per student instead of every event.

The events stay the truth. ``rebuild`` recomputes the rollups from them (after an upgrade, when the idle gap
setting changes, and for the students an erasure or the retention purge touched); ``apply`` folds the events
one ingest has just stored into the rows. Both fold events through ``Fold``, so they cannot disagree, and the
tests hold every rollup answer equal to the scan in ``store.py`` it replaces, on SQLite and PostgreSQL.

Windows (``since``/``until``) and an idle gap other than the one the rollups were built for are answered
by the scans: a rollup holds one number per student, not a history.

Concurrency: on SQLite every write already runs under one lock. On PostgreSQL (several backends) ``apply``
holds an advisory lock shared, which ``rebuild`` and the deletes hold exclusive, and locks its rollup rows
FOR UPDATE in key order, so two ingests of one student's events add up instead of overwriting each other.
"""

from __future__ import annotations

import functools
import logging
import operator
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, func, or_, select
from sqlalchemy.orm import Session

from watcher_core import wire

from .models import ACTIVITY_HOUR_TABLE as HOURS
from .models import COUNTERS, HOUR_COUNTERS, naive_utc, sqlite_text
from .models import EVENT_TABLE as EVENT
from .models import FILE_STATE_TABLE as FILES
from .models import ROLLUP_STATE_TABLE as STATE
from .models import SNAP_SIZE_TABLE as SIZES
from .models import STUDENT_ROLLUP_TABLE as ROLLUP

log = logging.getLogger("watcher_backend.rollups")

FILE_TYPES = (wire.FILE_SAVE, wire.FILE_DELETE, wire.FILE_TOO_LARGE)
Key = tuple[str, str, str, str]  # course, section, assignment, student_id
_KEY = ("course", "section", "assignment", "student_id")
_US = timedelta(microseconds=1)
# The counter that counts every event of a type (for the old API's build_avg / run_avg).
COUNTER_OF_TYPE = {t: name for name, (t, only_ok) in COUNTERS.items() if t is not None and not only_ok}


def continues_work(earlier: datetime, later: datetime, gap_us: int) -> tuple[bool, int]:
    """Whether two consecutive events of one student's assignment belong to one stretch of work (the gap is
    not longer than the idle gap), and the gap in microseconds. The one definition behind time on task
    (``active_us``) and the export's SessionID, so a session is exactly a run of counted time."""
    d = (later - earlier) // _US
    return d <= gap_us, d


def active_us(ordered: Sequence[datetime], gap_us: int) -> int:
    """Time on task in microseconds: the sum of the gaps between consecutive events (``ordered`` sorted)
    that are not longer than the idle gap. A longer gap is a break and adds nothing."""
    total = 0
    for a, b in zip(ordered, ordered[1:]):
        same, d = continues_work(a, b, gap_us)
        if same:
            total += d
    return total


def snap_size(event_type: str, size: int | None) -> int:
    """The size the old API reports for a file event: a delete is a snapshot of size 0."""
    return 0 if event_type == wire.FILE_DELETE else int(size or 0)


@functools.cache
def _counted(event_type: str, ok: bool) -> tuple[str, ...]:
    """The counters an event of this type and outcome adds one to."""
    return tuple(
        name
        for name, (counted, only_ok) in COUNTERS.items()
        if (counted is None or counted == event_type) and (ok or not only_ok)
    )


@functools.cache
def _hour_counted(event_type: str, ok: bool) -> tuple[int, ...]:
    """The positions in HOUR_COUNTERS an event of this type and outcome adds one to."""
    return tuple(HOUR_COUNTERS.index(name) for name in _counted(event_type, ok) if name in HOUR_COUNTERS)


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_HOUR = timedelta(hours=1)


def hour_of(ts: datetime) -> int:
    """The UTC hour an event falls in (its bucket in activity_hour): whole hours since the Unix epoch."""
    return (ts - EPOCH) // _HOUR


# What the flags follow: (time, type, path, size, succeeded) of a compile or a file event.
Step = tuple[datetime, str, str, int | None, bool]


@dataclass
class Flags:
    """The raw numbers behind the dashboard's flags "stuck" and "large paste" (thresholds apply on read).

    ``advance`` folds steps in time order (on equal times, the order given). Ingest folds a batch after what
    is stored, so an event older than the stored ones counts as if it came last; a rebuild restores the
    time order. Both are exact for events that arrive in order, which is how agents deliver them."""

    fail_streak: int = 0
    max_fail_streak: int = 0
    max_growth: int = 0
    max_growth_path: str | None = None
    max_growth_at: datetime | None = None

    def advance(self, steps: Iterable[Step], sizes: dict[str, int]) -> None:
        """``sizes``: each file's size before these steps (absent: a new file, from empty); updated."""
        for ts, event_type, path, size, ok in sorted(steps, key=operator.itemgetter(0)):
            if event_type == wire.PROCESS_COMPILE:
                self.fail_streak = 0 if ok else self.fail_streak + 1
                self.max_fail_streak = max(self.max_fail_streak, self.fail_streak)
            elif event_type == wire.FILE_DELETE:
                sizes[path] = 0
            else:  # a save (a too-large save's size is known too)
                new = int(size or 0)
                growth = new - sizes.get(path, 0)
                sizes[path] = new
                if growth > self.max_growth:
                    self.max_growth, self.max_growth_path, self.max_growth_at = growth, path, ts

    @classmethod
    def of(cls, row: dict[str, Any]) -> Flags:
        return cls(**{name: row[name] for name in FLAG_COLUMNS})

    def values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in FLAG_COLUMNS)


FLAG_COLUMNS = ("fail_streak", "max_fail_streak", "max_growth", "max_growth_path", "max_growth_at")


@dataclass
class Fold:
    """What a run of one student's events (in the order they were stored) adds to that student's rollup."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTERS, 0))
    times: list[datetime] = field(default_factory=list)
    snap_bytes: int = 0
    latest_snap: tuple[datetime, str, int] | None = None  # the latest by (time, path); the first on a tie
    files: dict[str, tuple[datetime, str, int | None]] = field(default_factory=dict)  # path -> (time, type, size)
    sizes: Counter[int] = field(default_factory=Counter)
    hours: dict[int, list[int]] = field(default_factory=dict)  # hour_of -> HOUR_COUNTERS
    steps: list[Step] = field(default_factory=list)  # what the flags follow

    def add(self, event_type: str, ts: datetime, path: str, size: int | None, ok: bool | None) -> None:
        for name in _counted(event_type, bool(ok)):
            self.counts[name] += 1
        self.times.append(ts)
        hour = hour_of(ts)
        per_hour = self.hours.get(hour)
        if per_hour is None:
            per_hour = self.hours[hour] = [0] * len(HOUR_COUNTERS)
        for i in _hour_counted(event_type, bool(ok)):
            per_hour[i] += 1
        if event_type == wire.PROCESS_COMPILE or event_type in FILE_TYPES:
            self.steps.append((ts, event_type, path, size, bool(ok)))
        if event_type in FILE_TYPES:
            s = snap_size(event_type, size)
            self.snap_bytes += s
            self.sizes[s] += 1
            if self.latest_snap is None or (ts, path) > self.latest_snap[:2]:
                self.latest_snap = (ts, path, s)
            current = self.files.get(path)
            if current is None or ts >= current[0]:  # on a tie the later stored wins, as the scan orders by id
                self.files[path] = (ts, event_type, size)


def fold_events(events: Iterable[wire.Event]) -> dict[Key, Fold]:
    """What ``apply`` adds to each student's rollups for these events (in the order they are stored). It
    reads nothing, so ingest computes it before it takes the write lock."""
    folds: dict[Key, Fold] = {}
    for ev in events:
        values = ev.__dict__  # the fields as stored: faster than pydantic's attribute access
        key = (ev.course, ev.section, ev.assignment, ev.student_id)
        fold = folds.get(key)
        if fold is None:
            fold = folds[key] = Fold()
        fold.add(ev.type, ev.timestamp, ev.path, values.get("size"), wire.succeeded_from(ev.type, values))
    return folds


def _key_where(table, key: Key):
    return and_(*(table.c[name] == value for name, value in zip(_KEY, key)))


def _utc(value: Any) -> datetime:
    aware = _aware(value)
    assert aware is not None
    return aware


def _aware(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):  # SQLite returns aggregate datetimes as text
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


# ------------------------------------------------------------------------------------------- state


# PostgreSQL advisory lock (transaction-scoped) between backends: ingests hold it shared, a rebuild and the
# deletes hold it exclusive. A row lock on rollup_state would not do: before the first build it has no row.
ROLLUP_LOCK = 0x5741_5443_4852_4F4C  # "WATCHROL"


def built_gap(session: Session, *, lock: str | None = None) -> int | None:
    """The idle gap the rollups were built for, or None while they are not built (queries then scan).
    ``lock`` (PostgreSQL; SQLite's writers are serial anyway): "share" while applying an ingest, "exclusive"
    while rebuilding or deleting, held until the transaction ends."""
    if lock is not None and session.get_bind().dialect.name == "postgresql":
        take = "pg_advisory_xact_lock_shared" if lock == "share" else "pg_advisory_xact_lock"
        session.execute(select(getattr(func, take)(ROLLUP_LOCK)))
    value = session.execute(select(STATE.c.idle_gap_seconds).where(STATE.c.id == 1)).scalar()
    return None if value is None else int(value)


def usable(session: Session, idle_gap_seconds: float, since: datetime | None, until: datetime | None) -> bool:
    """Whether a query can read the rollups: no time window, and the idle gap they were built for."""
    return since is None and until is None and built_gap(session) == idle_gap_seconds


# ------------------------------------------------------------------------------------------- ingest


def apply(session: Session, events: Sequence[wire.Event], folded: dict[Key, Fold] | None = None) -> None:
    """Fold the events this transaction has just stored (in the order they were stored) into the rollups;
    ``folded``: ``fold_events(events)`` if already computed.

    The hot path of ingest, so its statements go to the driver's cursor as plain tuples (SQLAlchemy's
    per-value processing cost five times the inserts): read the students' rows, upsert their new values."""
    if not events:
        return
    sql = _Sql.of(session)
    cursor = _cursor(session)
    try:
        if sql.postgres:
            cursor.execute("SELECT pg_advisory_xact_lock_shared(%s)", (ROLLUP_LOCK,))
        cursor.execute("SELECT idle_gap_seconds FROM rollup_state WHERE id = 1")
        state = cursor.fetchone()
        if state is None:
            return  # not built yet: the rebuild at start-up will count these events
        gap = int(state[0])
        folds = folded if folded is not None else fold_events(events)
        keys = sorted(folds)
        if sql.postgres:  # a row to lock for every student, also the new ones (another backend may add it)
            cursor.executemany(sql.zero, keys)
        stored = sql.read(cursor, keys)
        times_of = {key: sorted(folds[key].times) for key in keys}
        # Out of order (a replayed outbox, another agent's batch): the stored events within one idle gap of
        # the new ones, for every such student in one statement per assignment.
        late = {
            key: (times_of[key][0] - timedelta(seconds=gap), times_of[key][-1] + timedelta(seconds=gap))
            for key in keys
            if key in stored
            and stored[key]["last_activity"] is not None
            and times_of[key][0] < stored[key]["last_activity"]
        }
        windows = sql.windows(cursor, late) if late else {}
        # The sizes of the files before this batch, for the largest growth of one save.
        with_files = [k for k in keys if k in stored and any(step[1] in FILE_TYPES for step in folds[k].steps)]
        file_sizes = sql.file_sizes(cursor, with_files) if with_files else {}
        rows = []
        for key in keys:
            fold, row = folds[key], stored.get(key)
            times = times_of[key]
            if row is None or row["events"] == 0:
                row = dict.fromkeys(COUNTERS, 0) | {"active_us": 0, "snap_bytes": 0, "last_activity": None}
                row |= {"first_activity": None, "latest_snap_at": None, "latest_snap_path": None}
                row["latest_snap_size"] = None
                row |= dict(zip(FLAG_COLUMNS, Flags().values()))
            last, first = row["last_activity"], row["first_activity"]
            if last is None:
                delta = active_us(times, gap * 1_000_000)
            elif times[0] >= last:  # the usual case: newer than anything stored
                delta = active_us([last, *times], gap * 1_000_000)
            else:  # out of order: re-add the pairs around them
                delta = _window_delta(windows.get(key, []), times, gap)
            latest = row["latest_snap_at"], row["latest_snap_path"], row["latest_snap_size"]
            if fold.latest_snap and (latest[0] is None or fold.latest_snap[:2] > (latest[0], latest[1])):
                latest = fold.latest_snap
            flags = Flags.of(row)
            flags.advance(fold.steps, file_sizes.get(key, {}))
            rows.append(
                (
                    *key,
                    *(row[name] + fold.counts[name] for name in COUNTERS),
                    sql.time(times[0] if first is None else min(first, times[0])),
                    sql.time(times[-1] if last is None else max(last, times[-1])),
                    row["active_us"] + delta,
                    row["snap_bytes"] + fold.snap_bytes,
                    sql.time(latest[0]),
                    latest[1],
                    latest[2],
                    *flags.values()[:4],
                    sql.time(flags.max_growth_at),
                )
            )
        cursor.executemany(sql.upsert_rollup, rows)
    finally:
        cursor.close()
    _upsert_hours(session, folds)
    _upsert_files(session, folds)
    _change_sizes(session, _size_counts(folds), +1)


_ROLLUP_COLUMNS = [c.name for c in ROLLUP.columns]
_FILE_COLUMNS = [c.name for c in FILES.columns]


@dataclass(frozen=True)
class _Sql:
    """The statements of ``apply`` in one dialect's text (qmark for sqlite3, format for psycopg)."""

    postgres: bool
    zero: str
    upsert_rollup: str
    upsert_file: str
    add_size: str
    add_hours: str

    @classmethod
    def of(cls, session: Session) -> _Sql:
        postgres = session.get_bind().dialect.name == "postgresql"
        cached = _SQL.get(postgres)
        if cached is None:
            cached = _SQL[postgres] = cls._build(postgres)
        return cached

    @classmethod
    def _build(cls, postgres: bool) -> _Sql:
        p = "%s" if postgres else "?"

        def insert(table: str, columns: list[str]) -> str:
            return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(p for _ in columns)})"

        key = ", ".join(_KEY)
        zero_columns = [*_KEY, *COUNTERS, "active_us", "snap_bytes", "fail_streak", "max_fail_streak", "max_growth"]
        zeros = ", ".join([p] * len(_KEY) + ["0"] * (len(zero_columns) - len(_KEY)))
        zero = f"INSERT INTO student_rollup ({', '.join(zero_columns)}) VALUES ({zeros}) ON CONFLICT ({key}) DO NOTHING"
        values = ", ".join(f"{c} = excluded.{c}" for c in _ROLLUP_COLUMNS if c not in _KEY)
        upsert_rollup = insert("student_rollup", _ROLLUP_COLUMNS) + f" ON CONFLICT ({key}) DO UPDATE SET {values}"
        upsert_file = insert("file_state", _FILE_COLUMNS) + (
            f" ON CONFLICT ({key}, path) DO UPDATE SET type = excluded.type, size = excluded.size,"
            " timestamp = excluded.timestamp WHERE excluded.timestamp >= file_state.timestamp"
        )
        add_size = insert("snap_size", ["course", "section", "assignment", "size", "count"]) + (
            " ON CONFLICT (course, section, assignment, size) DO UPDATE SET count = snap_size.count + excluded.count"
        )
        added = ", ".join(f"{c} = activity_hour.{c} + excluded.{c}" for c in HOUR_COUNTERS)
        add_hours = insert("activity_hour", [*_KEY, "hour", *HOUR_COUNTERS]) + (
            f" ON CONFLICT ({key}, hour) DO UPDATE SET {added}"
        )
        return cls(postgres, zero, upsert_rollup, upsert_file, add_size, add_hours)

    def time(self, value: datetime | None) -> Any:
        return naive_utc(value) if self.postgres else sqlite_text(value)

    def _from_db(self, value: Any) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        return value.replace(tzinfo=UTC)

    def windows(self, cursor: Any, spans: dict[Key, tuple[datetime, datetime]]) -> dict[Key, list[datetime]]:
        """The stored event times of each student within their span, one statement per assignment (a join
        of the spans, as VALUES, with the event index)."""
        p = "%s" if self.postgres else "?"
        ts = f"{p}::timestamp" if self.postgres else p
        by_assignment: dict[tuple[str, str, str], list[tuple[str, datetime, datetime]]] = {}
        for (course, section, assignment, student), (lo, hi) in spans.items():
            by_assignment.setdefault((course, section, assignment), []).append((student, lo, hi))
        out: dict[Key, list[datetime]] = {}
        for scope, rows in by_assignment.items():
            for start in range(0, len(rows), 300):
                chunk = rows[start : start + 300]
                values = ", ".join(f"({p}, {ts}, {ts})" for _ in chunk)
                q = (
                    f"WITH w (student_id, lo, hi) AS (VALUES {values}) SELECT w.student_id, e.timestamp FROM w "
                    f"JOIN event e ON e.course = {p} AND e.section = {p} AND e.assignment = {p} "
                    "AND e.student_id = w.student_id AND e.timestamp >= w.lo AND e.timestamp <= w.hi"
                )
                params = [v for student, lo, hi in chunk for v in (student, self.time(lo), self.time(hi))]
                cursor.execute(q, (*params, *scope))
                for student, when in cursor.fetchall():
                    out.setdefault((*scope, student), []).append(self._from_db(when))  # type: ignore[arg-type]
        return out

    def read(self, cursor: Any, keys: Sequence[Key]) -> dict[Key, dict[str, Any]]:
        """The stored rows of ``keys`` (on PostgreSQL locked FOR UPDATE in key order): one statement per 200
        keys, the keys as VALUES joined with the rollups' primary key (single-event requests of many
        students share a commit: one statement per assignment cost more than the rest of ``apply``)."""
        p = "%s" if self.postgres else "?"
        names = [c for c in _ROLLUP_COLUMNS if c not in _KEY]
        on = " AND ".join(f"r.{c} = k.{c}" for c in _KEY)
        out: dict[Key, dict[str, Any]] = {}
        for start in range(0, len(keys), 200):
            chunk = keys[start : start + 200]
            values = ", ".join(f"({p}, {p}, {p}, {p})" for _ in chunk)
            q = (
                f"WITH k ({', '.join(_KEY)}) AS (VALUES {values}) "
                f"SELECT {', '.join(f'r.{c}' for c in (*_KEY, *names))} FROM k JOIN student_rollup r ON {on}"
            )
            if self.postgres:
                q += f" ORDER BY {', '.join(f'r.{c}' for c in _KEY)} FOR UPDATE OF r"
            cursor.execute(q, [v for key in chunk for v in key])
            for found in cursor.fetchall():
                row = dict(zip(names, found[4:]))
                for name in ("first_activity", "last_activity", "latest_snap_at", "max_growth_at"):
                    row[name] = self._from_db(row[name])
                out[(found[0], found[1], found[2], found[3])] = row
        return out

    def file_sizes(self, cursor: Any, keys: Sequence[Key]) -> dict[Key, dict[str, int]]:
        """Each stored file's size (a deleted one: 0) of these students, one statement per 200 of them."""
        p = "%s" if self.postgres else "?"
        on = " AND ".join(f"f.{c} = k.{c}" for c in _KEY)
        out: dict[Key, dict[str, int]] = {}
        for start in range(0, len(keys), 200):
            chunk = keys[start : start + 200]
            values = ", ".join(f"({p}, {p}, {p}, {p})" for _ in chunk)
            q = (
                f"WITH k ({', '.join(_KEY)}) AS (VALUES {values}) "
                f"SELECT {', '.join(f'f.{c}' for c in _KEY)}, f.path, f.type, f.size FROM k JOIN file_state f ON {on}"
            )
            cursor.execute(q, [v for key in chunk for v in key])
            for course, section, assignment, student, path, event_type, size in cursor.fetchall():
                out.setdefault((course, section, assignment, student), {})[path] = snap_size(event_type, size)
        return out


_SQL: dict[bool, _Sql] = {}


def _window_delta(window: list[datetime], times: list[datetime], gap: int) -> int:
    """How much time on task the new events ``times`` add to the stored ones. Only pairs within one idle gap
    of a new event can change, so compare the stored events of the window [first - gap, last + gap] (which
    include the new ones: this transaction wrote them) with and without them."""
    gap_us = gap * 1_000_000
    window = sorted(window)
    before = Counter(window)
    before.subtract(times)
    return active_us(window, gap_us) - active_us(sorted(before.elements()), gap_us)


def _cursor(session: Session) -> Any:
    """A cursor of the DB-API connection under the session's transaction (statements as plain tuples)."""
    return session.connection().connection.driver_connection.cursor()  # type: ignore[union-attr]


def _upsert_files(session: Session, folds: dict[Key, Fold]) -> None:
    """Each file's latest state: replaced by a newer event (or an equal time stored later)."""
    sql = _Sql.of(session)
    rows = [
        (*key, path, event_type, size, sql.time(ts))
        for key, fold in folds.items()
        for path, (ts, event_type, size) in fold.files.items()
    ]
    if rows:
        cursor = _cursor(session)
        try:
            cursor.executemany(sql.upsert_file, rows)
        finally:
            cursor.close()


def _upsert_hours(session: Session, folds: dict[Key, Fold]) -> None:
    """Add each student's events per hour to activity_hour."""
    sql = _Sql.of(session)
    rows = [(*key, hour, *counts) for key, fold in folds.items() for hour, counts in fold.hours.items()]
    if rows:
        cursor = _cursor(session)
        try:
            cursor.executemany(sql.add_hours, rows)
        finally:
            cursor.close()


def _size_counts(folds: dict[Key, Fold]) -> Counter[tuple[str, str, str, int]]:
    counts: Counter[tuple[str, str, str, int]] = Counter()
    for (course, section, assignment, _), fold in folds.items():
        for size, n in fold.sizes.items():
            counts[(course, section, assignment, size)] += n
    return counts


def _change_sizes(session: Session, counts: Counter[tuple[str, str, str, int]], sign: int) -> None:
    """Add (sign +1) or take away (-1) snapshots from the per-size counts; a count that reaches 0 goes."""
    if not counts:
        return
    cursor = _cursor(session)
    try:
        cursor.executemany(_Sql.of(session).add_size, [(*k, sign * n) for k, n in sorted(counts.items())])
    finally:
        cursor.close()
    if sign < 0:
        session.execute(delete(SIZES).where(SIZES.c.count <= 0))


# --------------------------------------------------------------------------------------- rebuilding

_STREAM_COLUMNS = (
    *(EVENT.c[name] for name in _KEY),
    EVENT.c.path,
    EVENT.c.timestamp,
    EVENT.c.id,
    EVENT.c.type,
    EVENT.c.size,
    EVENT.c.exit_code,
    EVENT.c.signal,
    EVENT.c.error,
)


def _stream(session: Session, where) -> Iterator[tuple[Key, list[Any]]]:
    """Each student's events (all of ``where``), one student at a time, in the index's order."""
    q = select(*_STREAM_COLUMNS)
    if where is not None:
        q = q.where(where)
    q = q.order_by(*(EVENT.c[name] for name in _KEY), EVENT.c.path, EVENT.c.timestamp)
    current: Key | None = None
    rows: list[Any] = []
    for row in session.execute(q.execution_options(yield_per=20_000)):
        key = (row[0], row[1], row[2], row[3])
        if key != current:
            if current is not None:
                yield current, rows
            current, rows = key, []
        rows.append(row)
    if current is not None:
        yield current, rows


def _fold_rows(rows: list[Any]) -> Fold:
    fold = Fold()
    for r in sorted(rows, key=lambda r: (r.timestamp, r.id)):  # the order they were stored
        values = {"exit_code": r.exit_code, "signal": r.signal, "error": r.error}
        fold.add(r.type, r.timestamp, r.path, r.size, wire.succeeded_from(r.type, values))
    return fold


def _write(session: Session, folds: dict[Key, Fold], gap: int) -> None:
    rollups: list[dict[str, Any]] = []
    for key, fold in folds.items():
        times = sorted(fold.times)
        latest = fold.latest_snap or (None, None, None)
        flags = Flags()
        flags.advance(fold.steps, {})
        rollups.append(
            dict(zip(_KEY, key))
            | fold.counts
            | {
                "first_activity": times[0],
                "last_activity": times[-1],
                "active_us": active_us(times, gap * 1_000_000),
                "snap_bytes": fold.snap_bytes,
                "latest_snap_at": latest[0],
                "latest_snap_path": latest[1],
                "latest_snap_size": latest[2],
            }
            | dict(zip(FLAG_COLUMNS, flags.values()))
        )
    if rollups:
        session.execute(ROLLUP.insert(), rollups)
    _upsert_hours(session, folds)
    _upsert_files(session, folds)


def rebuild(session: Session, idle_gap_seconds: int, *, progress: Callable[[int, int], None] | None = None) -> int:
    """Recompute every rollup from the events, for ``idle_gap_seconds``; returns the events read.
    One transaction (committed here): queries see the old rollups or the new ones, never half."""
    built_gap(session, lock="exclusive")
    for table in (ROLLUP, FILES, SIZES, HOURS, STATE):
        session.execute(delete(table))
    total = int(session.scalar(select(func.count()).select_from(EVENT)) or 0)
    done = 0
    batch: dict[Key, Fold] = {}
    for key, rows in _stream(session, None):
        batch[key] = _fold_rows(rows)
        done += len(rows)
        if len(batch) >= 500:
            _write(session, batch, idle_gap_seconds)
            _change_sizes(session, _size_counts(batch), +1)
            batch = {}
            if progress:
                progress(done, total)
    _write(session, batch, idle_gap_seconds)
    _change_sizes(session, _size_counts(batch), +1)
    session.execute(STATE.insert(), [{"id": 1, "idle_gap_seconds": idle_gap_seconds, "built_at": datetime.now(UTC)}])
    session.commit()
    return done


def ensure_built(session: Session, idle_gap_seconds: int) -> bool:
    """Build the rollups when they are missing or were built for another idle gap; True if it did.
    Logs one line before and one after, with the count of events, since this reads every event."""
    built = built_gap(session, lock="exclusive")  # several backends starting at once: one builds, the rest see it
    if built == idle_gap_seconds:
        session.commit()
        return False
    total = int(session.scalar(select(func.count()).select_from(EVENT)) or 0)
    reason = "not built yet" if built is None else f"built for an idle gap of {built} s"
    log.info(
        "Rollups %s: rebuilding them from %d events for WATCHER_IDLE_GAP_SECONDS=%d", reason, total, idle_gap_seconds
    )
    started = time.monotonic()
    last = [started]

    def progress(done: int, total: int) -> None:
        if time.monotonic() - last[0] >= 10:
            last[0] = time.monotonic()
            log.info("Rollups: %d of %d events (%.0f%%)", done, total, 100.0 * done / max(total, 1))

    rebuild(session, idle_gap_seconds, progress=progress)
    log.info("Rollups built in %.1f s", time.monotonic() - started)
    return True


def forget(session: Session, where) -> set[Key]:
    """Before the events ``where`` selects are deleted: take their snapshots out of the size counts and
    return the students they belong to, for ``refresh`` once they are gone."""
    if built_gap(session, lock="exclusive") is None:
        return set()
    scope = (EVENT.c.course, EVENT.c.section, EVENT.c.assignment)
    q = (
        select(*scope, EVENT.c.type, EVENT.c.size, func.count())
        .where(where, EVENT.c.type.in_(FILE_TYPES))
        .group_by(*scope, EVENT.c.type, EVENT.c.size)
    )
    sizes: Counter[tuple[str, str, str, int]] = Counter()
    for course, section, assignment, event_type, size, n in session.execute(q):
        sizes[(course, section, assignment, snap_size(event_type, size))] += int(n)
    _change_sizes(session, sizes, -1)
    keys = select(*(EVENT.c[name] for name in _KEY)).where(where).distinct()
    return {tuple(r) for r in session.execute(keys)}  # type: ignore[misc]


def refresh(session: Session, keys: Iterable[Key]) -> None:
    """Recompute the rollup rows and file states of these students from their events (after a delete)."""
    keys = sorted(set(keys))
    gap = built_gap(session)
    if gap is None or not keys:
        return
    for start in range(0, len(keys), 200):
        chunk = keys[start : start + 200]
        where = or_(*(_key_where(EVENT, k) for k in chunk))
        for table in (ROLLUP, FILES, HOURS):
            session.execute(delete(table).where(or_(*(_key_where(table, k) for k in chunk))))
        folds = {key: _fold_rows(rows) for key, rows in _stream(session, where)}
        _write(session, folds, gap)


# ------------------------------------------------------------------------------------------ queries


def _assignment_where(table, course: str, section: str, assignment: str):
    return and_(table.c.course == course, table.c.section == section, table.c.assignment == assignment)


def student_rows(session: Session, course: str, section: str, assignment: str) -> list[dict[str, Any]]:
    """The per-student part of the assignment summary (``store.summary``'s rows), from the rollups."""
    where = _assignment_where(FILES, course, section, assignment)
    deleted = FILES.c.type == wire.FILE_DELETE
    sizes_q = (
        select(
            FILES.c.student_id,
            func.sum(func.coalesce(FILES.c.size, 0)).filter(~deleted).label("code_size"),
            func.count().filter(~deleted).label("files"),
        )
        .where(where)
        .group_by(FILES.c.student_id)
    )
    sizes = {r.student_id: (int(r.code_size or 0), int(r.files or 0)) for r in session.execute(sizes_q)}
    q = select(ROLLUP).where(_assignment_where(ROLLUP, course, section, assignment)).order_by(ROLLUP.c.student_id)
    out = []
    for r in session.execute(q).mappings():
        out.append(
            student_row(
                r["student_id"],
                r,
                sizes.get(r["student_id"], (0, 0)),
                r["first_activity"],
                r["last_activity"],
                r["active_us"] / 1_000_000,
            )
        )
    return out


def student_row(
    student_id: str, counts: Any, size_and_files: tuple[int, int], first: Any, last: Any, active: float
) -> dict[str, Any]:
    """One student's row of the assignment summary (``counts`` reads each of COUNTERS by name), the same
    from the rollups and from the scan."""
    counted = {name: int(counts[name] or 0) for name in COUNTERS}
    return (
        {"student_id": student_id}
        | counted
        | {
            "compile_success_rate": success_rate(counted["compile_successes"], counted["compiles"]),
            "code_size": size_and_files[0],
            "files": size_and_files[1],
            "first_activity": _aware(first),
            "last_activity": _aware(last),
            "active_seconds": round(active, 3),
        }
    )


def success_rate(successes: int, total: int) -> float | None:
    return round(successes / total, 4) if total else None


def assignment_counts(session: Session, course: str | None, limit: int, offset: int, where=None) -> list[Any]:
    """The course listing's rows (one per assignment: counts, students, first and last activity);
    ``where``: a further condition on the rollup rows (the sections a reader may see)."""
    q = select(
        ROLLUP.c.course,
        ROLLUP.c.section,
        ROLLUP.c.assignment,
        func.sum(ROLLUP.c.events).label("events"),
        func.count().label("students"),
        func.sum(ROLLUP.c.saves).label("saves"),
        func.sum(ROLLUP.c.compiles).label("compiles"),
        func.sum(ROLLUP.c.runs).label("runs"),
        func.min(ROLLUP.c.first_activity).label("first_activity"),
        func.max(ROLLUP.c.last_activity).label("last_activity"),
    )
    if course is not None:
        q = q.where(ROLLUP.c.course == course)
    if where is not None:
        q = q.where(where)
    scope = (ROLLUP.c.course, ROLLUP.c.section, ROLLUP.c.assignment)
    return list(session.execute(q.group_by(*scope).order_by(*scope).limit(limit + 1).offset(offset)))


def snapshot_aggregates(
    session: Session, course: str, section: str, assignment: str
) -> tuple[list[tuple[int, int]], list[tuple[str, int, int, datetime, int]]]:
    """What ``/api/assignment`` needs: (size, count) of every snapshot size, and per student (id, snapshots,
    their total size, the latest one's time and size)."""
    sizes_q = (
        select(SIZES.c.size, SIZES.c.count)
        .where(_assignment_where(SIZES, course, section, assignment), SIZES.c.count > 0)
        .order_by(SIZES.c.size)
    )
    sizes = [(int(size), int(n)) for size, n in session.execute(sizes_q)]
    snaps = ROLLUP.c.saves + ROLLUP.c.deletes + ROLLUP.c.too_large
    q = select(ROLLUP.c.student_id, snaps, ROLLUP.c.snap_bytes, ROLLUP.c.latest_snap_at, ROLLUP.c.latest_snap_size)
    q = q.where(_assignment_where(ROLLUP, course, section, assignment), snaps > 0)
    students = [
        (student, int(n), int(total), _utc(at), int(size or 0)) for student, n, total, at, size in session.execute(q)
    ]
    return sizes, students


def type_counts(session: Session, course: str, section: str, assignment: str, event_types: Sequence[str]):
    """(events of these types, students with one) in an assignment: the old API's build_avg / run_avg."""
    columns = [ROLLUP.c[COUNTER_OF_TYPE[t]] for t in event_types]
    n = functools.reduce(operator.add, columns[1:], columns[0])
    q = select(func.sum(n), func.count().filter(n > 0)).where(_assignment_where(ROLLUP, course, section, assignment))
    total, students = session.execute(q).one()
    return int(total or 0), int(students or 0)
