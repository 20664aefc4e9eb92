"""The event store: ingest (idempotent bulk insert) and every query the API serves.

Pure functions over a SQLAlchemy/SQLModel ``Session``; the routers are thin wrappers around them and the
legacy router calls them too. Everything works on SQLite and PostgreSQL: inserts use
``INSERT ... ON CONFLICT (event_id) DO NOTHING``, aggregates and window functions run in SQL.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import fcntl
import json
import os
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import and_, case, delete, false, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from watcher_core import wire
from watcher_core.redact import redact_argv

from . import diagnosis, rollups
from .models import AGENT_TABLE as AGENT
from .models import COUNTERS, naive_utc, sqlite_text
from .models import ERASED_TABLE as ERASED
from .models import EVENT_TABLE as EVENT
from .models import STUDENT_ROLLUP_TABLE as ROLLUP

FILE_TYPES = (wire.FILE_SAVE, wire.FILE_DELETE, wire.FILE_TOO_LARGE)


# --------------------------------------------------------------------------------------------- ingest

# Every column but the row id, in table order; each event type fills its common fields, its own fields
# (wire.type_fields) and duration_ms when it has one; the rest stay NULL.
_COLUMNS = [c.name for c in EVENT.columns if c.name != "id"]
_WITH_DURATION = frozenset(t for t in wire.EVENT_TYPES if wire.has_duration(t))
_TYPE_COLUMNS = {t: wire.type_fields(t) + (("duration_ms",) if t in _WITH_DURATION else ()) for t in wire.EVENT_TYPES}
_known = set(wire.COMMON_FIELDS) | {"type", "received_at"} | {c for cols in _TYPE_COLUMNS.values() for c in cols}
# One table per fact: a field added to a wire model needs its column in models.Event (and a migration).
assert _known == set(_COLUMNS), f"models.Event columns differ from the wire fields: {_known ^ set(_COLUMNS)}"
_DATETIME_COLUMNS = {"timestamp", "received_at", "started_at", "ended_at"}
# Flags that default to False on the wire: rows stored before their column existed read as False.
_FLAG_COLUMNS = frozenset(
    name for model in wire.MODELS.values() for name, info in model.model_fields.items() if info.annotation is bool
)


def _values(ev: wire.Event, received_at: Any, to_time) -> dict[str, Any]:
    """Column -> value for one event: its fields as they are, lists as JSON, times through ``to_time``."""
    values = dict(ev.__dict__)  # a pydantic model's field values
    if ev.type in _WITH_DURATION:
        started, ended = values["started_at"], values["ended_at"]
        values["duration_ms"] = (ended - started).total_seconds() * 1000.0 if ended is not None else None
    for name in _DATETIME_COLUMNS.intersection(values):
        values[name] = to_time(values[name])
    for name in wire.JSON_FIELDS.intersection(values):
        values[name] = json.dumps(values[name], ensure_ascii=False)
    values["received_at"] = received_at
    return values


def _rowcount(result) -> int:
    """Rows a DELETE or UPDATE touched (a CursorResult's rowcount; -1 or None when the driver cannot say)."""
    return max(int(getattr(result, "rowcount", 0) or 0), 0)


def _insert(session: Session, table):
    name = session.get_bind().dialect.name
    if name == "sqlite":
        return sqlite.insert(table)
    if name == "postgresql":
        return postgresql.insert(table)
    raise RuntimeError(f"unsupported database dialect {name}")


@dataclass(frozen=True)
class IngestResult:
    accepted: int
    duplicates: int
    accepted_by_type: dict[str, int]
    duplicates_by_type: dict[str, int]

    def __iter__(self):  # allows ``accepted, duplicates = ingest(...)``
        return iter((self.accepted, self.duplicates))


# SQLite has one writer. Writers in this process take this lock, so they queue here instead of in
# SQLite's busy handler (which sleeps with back-off) and a write never fails with SQLITE_BUSY because of
# another thread of ours. PostgreSQL needs no lock.
_SQLITE_WRITE_LOCK = threading.RLock()


def sqlite_write_lock() -> threading.RLock:
    """The lock every SQLite writer of this process holds while writing (re-entrant)."""
    return _SQLITE_WRITE_LOCK


# Between processes (``--workers``, or a CLI writing while the backend runs), writers of a database file
# also hold an flock on ``<file>.writer-lock``: the kernel wakes the next one the moment the lock is free,
# where SQLite's busy handler would poll with sleeps of up to 100 ms. A folder where the lock file cannot be
# made leaves only the busy timeout, as before.
_FILE_LOCKS: dict[str, int | None] = {}
_HOLDS = [0]  # how deep this process's holder has taken write_lock (it is re-entrant)


def _forget_file_locks() -> None:
    """In a forked child: an inherited descriptor shares the parent's lock (flock is per open file), so
    the child opens its own."""
    for fd in _FILE_LOCKS.values():
        if fd is not None:
            os.close(fd)
    _FILE_LOCKS.clear()


os.register_at_fork(after_in_child=_forget_file_locks)


def _engine(bind: Session | Engine) -> Engine:
    if isinstance(bind, Engine):
        return bind
    found = bind.get_bind()
    return found if isinstance(found, Engine) else found.engine


def _file_lock(engine: Engine) -> int | None:
    database = engine.url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    if database not in _FILE_LOCKS:
        try:
            _FILE_LOCKS[database] = os.open(f"{database}.writer-lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError:
            _FILE_LOCKS[database] = None
    return _FILE_LOCKS[database]


@contextlib.contextmanager
def write_lock(bind: Session | Engine):
    """Held by every writer of a SQLite database (of a session's or an engine's), re-entrant; a no-op on
    PostgreSQL."""
    engine = _engine(bind)
    if engine.dialect.name != "sqlite":
        yield
        return
    with _SQLITE_WRITE_LOCK:
        fd = _file_lock(engine) if _HOLDS[0] == 0 else None
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        _HOLDS[0] += 1
        try:
            yield
        finally:
            _HOLDS[0] -= 1
            if fd is not None:
                fcntl.flock(fd, fcntl.LOCK_UN)


def _is_busy(exc: OperationalError) -> bool:
    text = str(exc.orig if exc.orig is not None else exc).lower()
    return "locked" in text or "busy" in text


@dataclass(frozen=True)
class Batch:
    """One request's events, as ``ingest_many`` stores them with others'. ``backlog``: what the agent said it
    still has queued; ``received_at``: the time to store (default: now, unique to this batch); ``rows``: on
    SQLite, the events' rows at that time, if made beforehand (``ready``)."""

    events: Sequence[wire.Event]
    backlog: int | None = None
    received_at: datetime | None = None
    rows: list[tuple] | None = None

    def ready(self, *, sqlite: bool) -> Batch:
        """This batch with its ``received_at`` (now, unique) and, for SQLite, its rows: work that
        ``ingest_many`` would otherwise do while it holds the write lock, which other workers queue for."""
        now = self.received_at or _unique_now()
        return dataclasses.replace(self, received_at=now, rows=_sqlite_rows(self.events, now) if sqlite else None)


def ingest(
    session: Session,
    events: Sequence[wire.Event],
    *,
    received_at: datetime | None = None,
    backlog: int | None = None,
    commit: bool = True,
) -> IngestResult:
    """Store valid wire events; an ``event_id`` already stored (or repeated in this batch) is a duplicate.

    One statement (executemany of ``INSERT ... ON CONFLICT DO NOTHING``) and one transaction per call.
    Also records which agents (node + source) reported. Returns accepted and duplicate counts, which
    unpack as ``accepted, duplicates = ingest(session, events)``. Thread-safe; on SQLite a write that
    meets a lock held by another process is retried (after a rollback) when ``commit`` is True.
    """
    return ingest_many(session, [Batch(events, backlog, received_at)], commit=commit)[0]


def ingest_many(session: Session, batches: Sequence[Batch], *, commit: bool = True) -> list[IngestResult]:
    """Store several requests' batches in one transaction (group commit, ``ingest_writer``): one insert
    statement, one rollup update and one commit for all of them. Each batch's result is what ``ingest``
    would have answered for it alone, after the batches before it: an event in two batches is stored
    with the first and is a duplicate in the second, and each keeps its own ``received_at``."""
    # Everything that needs no database is done before the write lock: with several workers
    # (``--workers``) the lock is what they queue for, so the work under it bounds their requests/s.
    prepared = _Prepared.of(batches, sqlite=session.get_bind().dialect.name == "sqlite")
    with write_lock(session):
        for attempt in range(3):
            try:
                return _ingest(session, batches, prepared, commit=commit)
            except OperationalError as exc:
                if not commit or attempt == 2 or session.get_bind().dialect.name != "sqlite" or not _is_busy(exc):
                    raise
                session.rollback()
                time.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")


_LAST_NOW = [datetime.min.replace(tzinfo=UTC)]
_NOW_LOCK = threading.Lock()
# (this worker's index, workers): workers of one backend (``--workers``) take disjoint microseconds
_TIME_SLOT = [0, 1]


def set_time_slot(index: int, workers: int) -> None:
    """Called once in each of ``workers`` worker processes of one backend: this one's ``received_at`` times
    are then the microseconds congruent to ``index`` modulo ``workers``, so no two workers give one time."""
    _TIME_SLOT[:] = [index, workers]


def _unique_now() -> datetime:
    """The current UTC time, strictly later than the previous call in this process (by 1 us if need be)
    and in this worker's slot, so ``received_at`` tells this batch's rows from those of any other."""
    index, workers = _TIME_SLOT
    with _NOW_LOCK:
        now = max(datetime.now(UTC), _LAST_NOW[0] + timedelta(microseconds=1))
        if workers > 1:
            now += timedelta(microseconds=(index - now.microsecond) % workers)
        _LAST_NOW[0] = now
        return now


@dataclass(frozen=True)
class _Prepared:
    """What ``_ingest`` needs of a group that no database read changes: each batch's ``received_at``, the
    events new to the group (each stored with the first batch that has it) and, on SQLite, their rows and
    rollup folds, for the common case that every one of them is new to the database."""

    nows: list[datetime]
    owner: dict[str, int]  # event_id -> the batch that stores it
    fresh: list[wire.Event]
    received: list[datetime]
    sqlite_rows: list[tuple] | None
    folds: dict[rollups.Key, rollups.Fold] | None

    @classmethod
    def of(cls, batches: Sequence[Batch], *, sqlite: bool) -> _Prepared:
        nows = [batch.received_at or _unique_now() for batch in batches]
        owner: dict[str, int] = {}
        fresh: list[wire.Event] = []
        received: list[datetime] = []
        rows: list[tuple] = []
        for index, (batch, now) in enumerate(zip(batches, nows)):
            # a batch's rows: made on arrival (Batch.ready) or else here
            made = (batch.rows or _sqlite_rows(batch.events, now)) if sqlite else None
            for j, ev in enumerate(batch.events):
                if ev.event_id not in owner:
                    owner[ev.event_id] = index
                    fresh.append(ev)
                    received.append(now)
                    if made is not None:
                        rows.append(made[j])
        if not (sqlite and fresh):
            return cls(nows, owner, fresh, received, None, None)
        return cls(nows, owner, fresh, received, rows, rollups.fold_events(fresh))


def _ingest(
    session: Session, batches: Sequence[Batch], prepared: _Prepared, *, commit: bool = True
) -> list[IngestResult]:
    nows, owner, fresh, received = prepared.nows, prepared.owner, prepared.fresh, prepared.received
    written: list[wire.Event] = []
    if fresh:
        folds = None
        if session.get_bind().dialect.name == "postgresql":
            # Insert in event_id order: concurrent batches that overlap then lock keys in the same order
            # and wait for each other instead of deadlocking. RETURNING names exactly the rows we wrote.
            order = sorted(range(len(fresh)), key=lambda i: fresh[i].event_id)
            fresh, received = [fresh[i] for i in order], [received[i] for i in order]
            stored = _postgres_bulk_insert(session, fresh, received)
        elif _sqlite_bulk_insert(session, prepared.sqlite_rows or []) == len(fresh):
            stored = set(owner)  # the common case: every event is new
            folds = prepared.folds
        else:
            # Some were stored before: the rows carrying one of these batches' (unique) received_at are ours.
            stored = _existing_ids(session, [ev.event_id for ev in fresh], received_at=set(nows))
        written = [ev for ev in fresh if ev.event_id in stored]  # in the order they were inserted
        rollups.apply(session, written, folds)
        diagnosis.apply(session, written)
    _touch_agents(session, batches, nows)
    if commit:
        session.commit()
    accepted_by_type: list[dict[str, int]] = [defaultdict(int) for _ in batches]
    for ev in written:
        accepted_by_type[owner[ev.event_id]][ev.type] += 1
    results = []
    for batch, accepted in zip(batches, accepted_by_type):
        duplicates_by_type: dict[str, int] = defaultdict(int)
        for ev in batch.events:
            duplicates_by_type[ev.type] += 1
        for t, n in accepted.items():
            duplicates_by_type[t] -= n
        total = sum(accepted.values())
        results.append(
            IngestResult(
                accepted=total,
                duplicates=len(batch.events) - total,
                accepted_by_type={k: v for k, v in accepted.items() if v},
                duplicates_by_type={k: v for k, v in duplicates_by_type.items() if v},
            )
        )
    return results


_SQLITE_INSERT = (
    "INSERT INTO event ("
    + ", ".join(f'"{c}"' for c in _COLUMNS)
    + ") VALUES ("
    + ", ".join("?" for _ in _COLUMNS)
    + ") ON CONFLICT (event_id) DO NOTHING"
)


def _sqlite_rows(events: Sequence[wire.Event], received_at: datetime) -> list[tuple]:
    """One batch's event rows as ``_SQLITE_INSERT`` takes them."""
    text = sqlite_text(received_at)
    return [tuple(map(_values(ev, text, sqlite_text).get, _COLUMNS)) for ev in events]


def _sqlite_bulk_insert(session: Session, rows: list[tuple]) -> int:
    """The hot path of ingest on SQLite: one DB-API executemany of plain tuples (``_sqlite_rows``), inside the
    session's transaction. SQLAlchemy's per-value bind processing costs more than the insert itself at 1000
    rows."""
    cursor = _driver_cursor(session)
    try:
        cursor.executemany(_SQLITE_INSERT, rows)
        return cursor.rowcount
    finally:
        cursor.close()


def _driver_cursor(session: Session):
    """A cursor of the DB-API connection under the session's transaction."""
    driver = session.connection().connection.driver_connection
    assert driver is not None, "the session's connection is closed"
    return driver.cursor()


def _postgres_row(ev: wire.Event, received: datetime) -> tuple:
    return tuple(map(_values(ev, naive_utc(received), naive_utc).get, _COLUMNS))


_POSTGRES_INSERT = (
    "INSERT INTO event ("
    + ", ".join(f'"{c}"' for c in _COLUMNS)
    + ") VALUES ("
    + ", ".join("%s" for _ in _COLUMNS)
    + ") ON CONFLICT (event_id) DO NOTHING RETURNING event_id"
)


def _postgres_bulk_insert(session: Session, events: Sequence[wire.Event], received: Sequence[datetime]) -> set[str]:
    """One psycopg executemany (pipelined) with RETURNING: the event_ids this call actually inserted."""
    cursor = _driver_cursor(session)
    try:
        rows = [_postgres_row(ev, now) for ev, now in zip(events, received)]
        cursor.executemany(_POSTGRES_INSERT, rows, returning=True)
        stored: set[str] = set()
        while True:
            row = cursor.fetchone()
            if row is not None:
                stored.add(row[0])
            if not cursor.nextset():
                return stored
    finally:
        cursor.close()


def _existing_ids(session: Session, ids: list[str], received_at: set[datetime] | None = None) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        q = select(EVENT.c.event_id).where(EVENT.c.event_id.in_(chunk))
        if received_at is not None:
            q = q.where(EVENT.c.received_at.in_(sorted(received_at)))
        found.update(session.execute(q).scalars())
    return found


def _touch_agents(session: Session, batches: Sequence[Batch], nows: Sequence[datetime]) -> None:
    """Record which agents (node + source) reported, in one statement for all the batches: per agent the
    events received are added up, ``last_seen`` is the last batch's time and ``backlog`` the last backlog
    an agent sent (a batch without one keeps what is stored), as if the batches came one after another."""
    agents: dict[tuple[str, str], dict[str, Any]] = {}
    for batch, now in zip(batches, nows):
        counts: dict[tuple[str, str], int] = defaultdict(int)
        for ev in batch.events:
            counts[(ev.node, ev.source)] += 1
        for key, n in counts.items():
            row = agents.get(key)
            if row is None:
                row = agents[key] = {"first_seen": now, "events_received": 0, "backlog": None}
            row["last_seen"] = now
            row["events_received"] += n
            if batch.backlog is not None:
                row["backlog"] = batch.backlog
    if not agents:
        return
    postgres = session.get_bind().dialect.name == "postgresql"
    to_time = naive_utc if postgres else sqlite_text
    rows = [
        (node, source, to_time(row["first_seen"]), to_time(row["last_seen"]), row["events_received"], row["backlog"])
        for (node, source), row in sorted(agents.items())
    ]
    cursor = _driver_cursor(session)  # plain tuples: SQLAlchemy's statement handling cost more than the upsert
    try:
        cursor.executemany(_AGENT_UPSERT.replace("?", "%s") if postgres else _AGENT_UPSERT, rows)
    finally:
        cursor.close()


_AGENT_UPSERT = (
    "INSERT INTO agent (node, source, first_seen, last_seen, events_received, backlog) VALUES (?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (node, source) DO UPDATE SET last_seen = excluded.last_seen, "
    "events_received = agent.events_received + excluded.events_received, "
    "backlog = COALESCE(excluded.backlog, agent.backlog)"
)


def touch_agent(session: Session, node: str, source: str, backlog: int | None, now: datetime | None = None) -> None:
    """Record a report from an agent that sent no events (an empty batch still says "I am alive")."""
    now = now or datetime.now(UTC)
    with write_lock(session):
        _upsert_agent(session, node, source, backlog, now)


def _upsert_agent(session: Session, node: str, source: str, backlog: int | None, now: datetime) -> None:
    stmt = _insert(session, AGENT).values(
        node=node, source=source, first_seen=now, last_seen=now, events_received=0, backlog=backlog
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=["node", "source"],
        set_={"last_seen": stmt.excluded.last_seen, "backlog": stmt.excluded.backlog},
    )
    session.execute(stmt)
    session.commit()


# --------------------------------------------------------------------------------------------- paging


class BadCursor(ValueError):
    pass


def encode_cursor(ts: datetime, row_id: int) -> str:
    raw = f"{ts.astimezone(UTC).isoformat()}|{row_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        ts_text, id_text = raw.rsplit("|", 1)
        ts = datetime.fromisoformat(ts_text)
        if ts.tzinfo is None:
            raise ValueError
        return ts, int(id_text)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise BadCursor("cursor: not a cursor returned by this API") from None


def after_cursor(cursor: str | None):
    """The condition for the events after a page's cursor (time, then id); None on the first page."""
    if not cursor:
        return None
    ts, row_id = decode_cursor(cursor)
    ts = ts.astimezone(UTC)
    return or_(EVENT.c.timestamp > ts, and_(EVENT.c.timestamp == ts, EVENT.c.id > row_id))


def _time_range(q, since: datetime | None, until: datetime | None):
    if since is not None:
        q = q.where(EVENT.c.timestamp >= since)
    if until is not None:
        q = q.where(EVENT.c.timestamp < until)
    return q


def events_of(course: str, section: str, assignment: str, student_id: str | None = None):
    """The condition for one assignment's events, or one student's in it."""
    conds = [EVENT.c.course == course, EVENT.c.section == section, EVENT.c.assignment == assignment]
    if student_id is not None:
        conds.append(EVENT.c.student_id == student_id)
    return and_(*conds)


# --------------------------------------------------------------------------------------------- reads


class GrantLike(Protocol):
    """A (course, section) a reader may see; ``section=None``: every section (``auth.Grant``)."""

    @property
    def course(self) -> str: ...
    @property
    def section(self) -> str | None: ...


def readable(grants: Sequence[GrantLike] | None, course_col=EVENT.c.course, section_col=EVENT.c.section):
    """The SQL condition "a row a reader with these grants may see"; None when they see everything.
    Works on any table with course and section columns (the events, the rollups)."""
    if grants is None:
        return None
    if not grants:
        return false()
    return or_(
        *(
            course_col == g.course if g.section is None else and_(course_col == g.course, section_col == g.section)
            for g in grants
        )
    )


def saved_by(
    session: Session, sha256s: Sequence[str], course: str, section: str, assignment: str, student_id: str
) -> bool:
    """Whether every one of these contents is a file.save of this student in this assignment. Uses the
    student index (a student's rows, not the table: the event table has no index on sha256)."""
    wanted = set(sha256s)
    q = (
        select(EVENT.c.sha256)
        .where(
            events_of(course, section, assignment, student_id),
            EVENT.c.type == wire.FILE_SAVE,
            EVENT.c.sha256.in_(wanted),
        )
        .distinct()
    )
    return {r[0] for r in session.execute(q)} == wanted


def event_dict(row) -> dict[str, Any]:
    """An ``event`` row as the API shows it (JSON lists decoded; only the fields of its type)."""
    m = row._mapping if hasattr(row, "_mapping") else row
    out: dict[str, Any] = {
        "id": m["id"],
        "event_id": m["event_id"],
        "type": m["type"],
        "timestamp": m["timestamp"],
        "received_at": m["received_at"],
        "node": m["node"],
        "source": m["source"],
        "course": m["course"],
        "section": m["section"],
        "student_id": m["student_id"],
        "assignment": m["assignment"],
        "path": m["path"],
    }
    t = m["type"]
    for name in _TYPE_COLUMNS[t]:
        value = m[name]
        if name in wire.JSON_FIELDS:
            value = json.loads(value) if value else []
            if name == "argv":  # shown with known secrets replaced (docs/security.md); stored as run
                value = redact_argv(value)
        elif name in _FLAG_COLUMNS:
            value = bool(value)
        out[name] = value
    judged = wire.succeeded_from(t, out)
    if judged is not None:
        out["succeeded"] = judged
    return out


def _page(rows: list, limit: int) -> tuple[list, str | None]:
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]._mapping
        return rows, encode_cursor(last["timestamp"], last["id"])
    return rows, None


def timeline(
    session: Session,
    course: str,
    section: str,
    assignment: str,
    student_id: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    types: Sequence[str] | None = None,
    limit: int = 100,
    cursor: str | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """One student's events in one assignment, oldest first. Returns (events, next_cursor or None)."""
    q = select(EVENT).where(events_of(course, section, assignment, student_id))
    q = _time_range(q, since, until)
    if types:
        q = q.where(EVENT.c.type.in_(list(types)))
    after = after_cursor(cursor)
    if after is not None:
        q = q.where(after)
    q = q.order_by(EVENT.c.timestamp, EVENT.c.id).limit(limit + 1)
    rows, next_cursor = _page(list(session.execute(q)), limit)
    return [event_dict(r) for r in rows], next_cursor


def file_snapshots(
    session: Session,
    course: str,
    section: str,
    assignment: str,
    student_id: str,
    path: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 100,
    cursor: str | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """The saved versions of one file (file.save events), oldest first."""
    q = select(EVENT.c.id, EVENT.c.event_id, EVENT.c.timestamp, EVENT.c.sha256, EVENT.c.size, EVENT.c.source).where(
        EVENT.c.course == course,
        EVENT.c.section == section,
        EVENT.c.student_id == student_id,
        EVENT.c.assignment == assignment,
        EVENT.c.path == path,
        EVENT.c.type == wire.FILE_SAVE,
    )
    q = _time_range(q, since, until)
    after = after_cursor(cursor)
    if after is not None:
        q = q.where(after)
    q = q.order_by(EVENT.c.timestamp, EVENT.c.id).limit(limit + 1)
    rows, next_cursor = _page(list(session.execute(q)), limit)
    return [dict(r._mapping) for r in rows], next_cursor


def file_list(
    session: Session,
    course: str,
    section: str,
    assignment: str,
    student_id: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[dict[str, Any]]:
    """Every file of a student's assignment with its latest state (saved/deleted/too large) and save count."""
    base = select(
        EVENT.c.path,
        EVENT.c.type,
        EVENT.c.sha256,
        EVENT.c.size,
        EVENT.c.timestamp,
        func.row_number()
        .over(partition_by=EVENT.c.path, order_by=(EVENT.c.timestamp.desc(), EVENT.c.id.desc()))
        .label("rn"),
        func.sum(case((EVENT.c.type == wire.FILE_SAVE, 1), else_=0)).over(partition_by=EVENT.c.path).label("saves"),
        func.min(EVENT.c.timestamp).over(partition_by=EVENT.c.path).label("first_seen"),
    ).where(
        EVENT.c.course == course,
        EVENT.c.section == section,
        EVENT.c.student_id == student_id,
        EVENT.c.assignment == assignment,
        EVENT.c.type.in_(FILE_TYPES),
    )
    base = _time_range(base, since, until).subquery()
    q = select(base).where(base.c.rn == 1).order_by(base.c.path)
    out = []
    for r in session.execute(q):
        m = r._mapping
        state = {wire.FILE_SAVE: "saved", wire.FILE_DELETE: "deleted", wire.FILE_TOO_LARGE: "too_large"}[m["type"]]
        out.append(
            {
                "path": m["path"],
                "state": state,
                "saves": int(m["saves"] or 0),
                "latest_sha256": m["sha256"] if state == "saved" else None,
                "latest_size": m["size"] if state != "deleted" else 0,
                "first_seen": m["first_seen"],
                "last_modified": m["timestamp"],
            }
        )
    return out


def _gap_seconds(session: Session, later, earlier):
    if session.get_bind().dialect.name == "sqlite":
        return (func.julianday(later) - func.julianday(earlier)) * 86400.0
    return func.extract("epoch", later - earlier)


def active_seconds(timestamps: Sequence[datetime], idle_gap_seconds: float) -> float:
    """Time on task: the sum of the gaps between consecutive events that are not longer than the idle gap.

    A longer gap is a break (the student went away) and adds nothing. The rule is ``rollups.active_us``;
    the SQL in ``summary_scan`` computes the same thing.
    """
    return rollups.active_us(sorted(timestamps), round(idle_gap_seconds * 1_000_000)) / 1_000_000


success_rate = rollups.success_rate


def summary(
    session: Session,
    course: str,
    section: str,
    assignment: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    idle_gap_seconds: float = 300,
) -> dict[str, Any]:
    """An assignment at a glance, overall and per student: from the rollups kept at ingest when they can
    answer (no window, their idle gap), else every aggregate in SQL over the events (``summary_scan``)."""
    if rollups.usable(session, idle_gap_seconds, since, until):
        students = rollups.student_rows(session, course, section, assignment)
        return summarise_students(course, section, assignment, students, idle_gap_seconds)
    return summary_scan(
        session, course, section, assignment, since=since, until=until, idle_gap_seconds=idle_gap_seconds
    )


# How a stored row counts as a success, in SQL (wire.succeeded_from is the same rule in Python).
_SUCCEEDED_SQL = {
    wire.PROCESS_COMPILE: and_(EVENT.c.exit_code == 0, EVENT.c.signal.is_(None)),
    wire.PROCESS_RUN: and_(EVENT.c.exit_code == 0, EVENT.c.signal.is_(None)),
    wire.NOTEBOOK_CELL: EVENT.c.error.is_(None),
}


def _counter_sql(name: str):
    event_type, only_ok = COUNTERS[name]
    if event_type is None:
        return func.count().label(name)
    condition = EVENT.c.type == event_type
    if only_ok:
        condition = and_(condition, _SUCCEEDED_SQL[event_type])
    return func.sum(case((condition, 1), else_=0)).label(name)


def summary_scan(
    session: Session,
    course: str,
    section: str,
    assignment: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    idle_gap_seconds: float = 300,
) -> dict[str, Any]:
    """The assignment summary computed from every event of the assignment (what the rollups replace)."""
    scope = events_of(course, section, assignment)
    per_student_q = select(
        EVENT.c.student_id,
        *(_counter_sql(name) for name in COUNTERS),
        func.min(EVENT.c.timestamp).label("first_activity"),
        func.max(EVENT.c.timestamp).label("last_activity"),
    ).where(scope)
    per_student_q = _time_range(per_student_q, since, until).group_by(EVENT.c.student_id)

    # code size: the latest known size of each file (0 once deleted), summed per student
    latest = select(
        EVENT.c.student_id,
        EVENT.c.type,
        EVENT.c.size,
        func.row_number()
        .over(partition_by=(EVENT.c.student_id, EVENT.c.path), order_by=(EVENT.c.timestamp.desc(), EVENT.c.id.desc()))
        .label("rn"),
    ).where(scope, EVENT.c.type.in_(FILE_TYPES))
    latest = _time_range(latest, since, until).subquery()
    size_q = (
        select(
            latest.c.student_id,
            func.sum(case((latest.c.type == wire.FILE_DELETE, 0), else_=func.coalesce(latest.c.size, 0))).label(
                "code_size"
            ),
            func.sum(case((latest.c.type == wire.FILE_DELETE, 0), else_=1)).label("files"),
        )
        .where(latest.c.rn == 1)
        .group_by(latest.c.student_id)
    )

    # active time: gaps between a student's consecutive events, counting only gaps up to the idle threshold
    prev = func.lag(EVENT.c.timestamp).over(partition_by=EVENT.c.student_id, order_by=EVENT.c.timestamp)
    gaps = select(EVENT.c.student_id, EVENT.c.timestamp.label("ts"), prev.label("prev_ts")).where(scope)
    gaps = _time_range(gaps, since, until).subquery()
    gap = _gap_seconds(session, gaps.c.ts, gaps.c.prev_ts)
    active_q = select(
        gaps.c.student_id,
        func.sum(case((and_(gaps.c.prev_ts.is_not(None), gap <= idle_gap_seconds), gap), else_=0.0)).label("active"),
    ).group_by(gaps.c.student_id)

    sizes = {r.student_id: (int(r.code_size or 0), int(r.files or 0)) for r in session.execute(size_q)}
    active = {r.student_id: float(r.active or 0.0) for r in session.execute(active_q)}
    students = [
        rollups.student_row(
            r.student_id,
            r._mapping,
            sizes.get(r.student_id, (0, 0)),
            r.first_activity,
            r.last_activity,
            active.get(r.student_id, 0.0),
        )
        for r in session.execute(per_student_q.order_by(EVENT.c.student_id))
    ]
    return summarise_students(course, section, assignment, students, idle_gap_seconds)


def summarise_students(
    course, section, assignment, students: list[dict[str, Any]], idle_gap_seconds: float
) -> dict[str, Any]:
    """The assignment totals from the per-student rows (pure; unit-tested)."""
    total = lambda key: sum(s[key] for s in students)  # noqa: E731
    compiles, ok = total("compiles"), total("compile_successes")
    firsts = [s["first_activity"] for s in students if s["first_activity"]]
    lasts = [s["last_activity"] for s in students if s["last_activity"]]
    return {
        "course": course,
        "section": section,
        "assignment": assignment,
        "students": len(students),
        "events": total("events"),
        "saves": total("saves"),
        "deletes": total("deletes"),
        "too_large": total("too_large"),
        "compiles": compiles,
        "compile_successes": ok,
        "compile_success_rate": success_rate(ok, compiles),
        "runs": total("runs"),
        "run_successes": total("run_successes"),
        "cells": total("cells"),
        "cell_successes": total("cell_successes"),
        "code_size": total("code_size"),
        "first_activity": min(firsts) if firsts else None,
        "last_activity": max(lasts) if lasts else None,
        "active_seconds": round(sum(s["active_seconds"] for s in students), 3),
        "idle_gap_seconds": idle_gap_seconds,
        "per_student": students,
    }


def _aware(value):
    if value is None:
        return None
    if isinstance(value, str):  # SQLite returns aggregate datetimes as text
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def course_listing(
    session: Session,
    *,
    course: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 200,
    offset: int = 0,
    grants: Sequence[GrantLike] | None = None,
) -> tuple[list[dict[str, Any]], int | None]:
    """Courses -> sections -> assignments with counts. Pages over (course, section, assignment) groups.
    Read from the rollups unless a time window asks for the events themselves. ``grants``: only the
    sections a reader may see (None: all)."""
    if since is None and until is None and rollups.built_gap(session) is not None:
        where = readable(grants, ROLLUP.c.course, ROLLUP.c.section)
        rows = rollups.assignment_counts(session, course, limit, offset, where=where)
    else:
        rows = _assignment_counts_scan(session, course, since, until, limit, offset, readable(grants))
    next_offset = offset + limit if len(rows) > limit else None
    rows = rows[:limit]
    courses: dict[str, dict[str, list]] = {}
    for r in rows:
        courses.setdefault(r.course, {}).setdefault(r.section, []).append(
            {
                "assignment": r.assignment,
                "events": int(r.events),
                "students": int(r.students),
                "saves": int(r.saves or 0),
                "compiles": int(r.compiles or 0),
                "runs": int(r.runs or 0),
                "first_activity": _aware(r.first_activity),
                "last_activity": _aware(r.last_activity),
            }
        )
    listing = [
        {"course": c, "sections": [{"section": s, "assignments": a} for s, a in sections.items()]}
        for c, sections in courses.items()
    ]
    return listing, next_offset


def _assignment_counts_scan(
    session: Session,
    course: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    offset: int,
    where=None,
) -> list[Any]:
    """The course listing's rows computed from the events (what the rollups replace; windows need it)."""
    q = select(
        EVENT.c.course,
        EVENT.c.section,
        EVENT.c.assignment,
        _counter_sql("events"),
        func.count(func.distinct(EVENT.c.student_id)).label("students"),
        *(_counter_sql(name) for name in ("saves", "compiles", "runs")),
        func.min(EVENT.c.timestamp).label("first_activity"),
        func.max(EVENT.c.timestamp).label("last_activity"),
    )
    if course is not None:
        q = q.where(EVENT.c.course == course)
    if where is not None:
        q = q.where(where)
    q = _time_range(q, since, until)
    q = (
        q.group_by(EVENT.c.course, EVENT.c.section, EVENT.c.assignment)
        .order_by(EVENT.c.course, EVENT.c.section, EVENT.c.assignment)
        .limit(limit + 1)
        .offset(offset)
    )
    return list(session.execute(q))


def status(session: Session) -> dict[str, Any]:
    """What is stored (events by type) and which agents report (node + source, last report, backlog)."""
    by_type = {r[0]: int(r[1]) for r in session.execute(select(EVENT.c.type, func.count()).group_by(EVENT.c.type))}
    agents = [
        {
            "node": r.node,
            "source": r.source,
            "first_seen": _aware(r.first_seen),
            "last_seen": _aware(r.last_seen),
            "events_received": int(r.events_received),
            "backlog": r.backlog,
        }
        for r in session.execute(select(AGENT).order_by(AGENT.c.node, AGENT.c.source))
    ]
    last = session.execute(select(func.max(EVENT.c.received_at))).scalar()
    return {
        "events_total": sum(by_type.values()),
        "events_by_type": {t: by_type.get(t, 0) for t in wire.EVENT_TYPES} | by_type,
        "last_received_at": _aware(last),
        "agents": agents,
        "erased_contents_pending": int(session.scalar(select(func.count()).select_from(ERASED)) or 0),
    }


# --------------------------------------------------------------------------------------------- deletes


def delete_student(
    session: Session, student_id: str, *, course: str | None = None, section: str | None = None
) -> tuple[dict[str, int], int]:
    """Erase every stored record of one student (optionally only one course/section). Returns the rows
    deleted per table and how many snapshot contents were queued for removal from the store."""
    where = EVENT.c.student_id == student_id
    if course is not None:
        where = and_(where, EVENT.c.course == course)
    if section is not None:
        where = and_(where, EVENT.c.section == section)
    with write_lock(session):
        queued = _queue_erased_contents(session, where)
        touched = rollups.forget(session, where)
        diagnostics = diagnosis.forget(session, where)
        n = _rowcount(session.execute(delete(EVENT).where(where)))
        rollups.refresh(session, touched)
        session.commit()
    return {"event": int(n), "diagnostic": diagnostics}, queued


def purge_older_than(session: Session, cutoff: datetime, *, chunk: int = 10_000) -> int:
    """Delete events whose timestamp is before ``cutoff``, in chunks so writers are not blocked for long.
    Their snapshot contents are queued for removal, in the same transaction as each chunk."""
    total = 0
    while True:
        with write_lock(session):
            ids = list(session.scalars(select(EVENT.c.id).where(EVENT.c.timestamp < cutoff).limit(chunk)))
            if ids:
                _queue_erased_contents(session, EVENT.c.id.in_(ids))
                touched = rollups.forget(session, EVENT.c.id.in_(ids))
                diagnosis.forget(session, EVENT.c.id.in_(ids))
                session.execute(delete(EVENT).where(EVENT.c.id.in_(ids)))
                rollups.refresh(session, touched)
            session.commit()
        total += len(ids)
        if len(ids) < chunk:
            return total


def _queue_erased_contents(session: Session, where) -> int:
    """Queue the sha256 of the events ``where`` selects (about to be deleted). Whether another event still
    refers to a content is decided later, when filemon asks (``unreferenced_contents``)."""
    shas = list(session.scalars(select(EVENT.c.sha256).where(where, EVENT.c.sha256.is_not(None)).distinct()))
    if shas:
        now = datetime.now(UTC)
        session.execute(
            _insert(session, ERASED).on_conflict_do_nothing(index_elements=["sha256"]),
            [{"sha256": sha, "queued_at": now} for sha in shas],
        )
    return len(shas)


def unreferenced_contents(session: Session, limit: int) -> tuple[list[str], int]:
    """The oldest-queued erased contents that no event refers to now, and how many stay queued.

    Queued contents that an event refers to again (the same starter code saved by another student) are
    dropped from the queue: they are live. The check is one scan of ``event`` per page, and none at all
    while the queue is empty, so the ingest path needs no index on sha256."""
    with write_lock(session):
        page = list(session.scalars(select(ERASED.c.sha256).order_by(ERASED.c.queued_at, ERASED.c.sha256).limit(limit)))
        if not page:
            session.commit()
            return [], 0
        live = set(session.scalars(select(EVENT.c.sha256).where(EVENT.c.sha256.in_(page)).distinct()))
        if live:
            session.execute(delete(ERASED).where(ERASED.c.sha256.in_(live)))
        pending = session.scalar(select(func.count()).select_from(ERASED)) or 0
        session.commit()
    unreferenced = [sha for sha in page if sha not in live]
    return unreferenced, int(pending) - len(unreferenced)


def forget_erased_contents(session: Session, removed: Sequence[str], kept: Sequence[str] = ()) -> int:
    """filemon removed these contents (or never had them): stop tracking them. ``kept`` were saved within
    the grace period: move them to the back of the queue so they do not hide the rest."""
    with write_lock(session):
        n = 0
        if removed:
            n = _rowcount(session.execute(delete(ERASED).where(ERASED.c.sha256.in_(list(removed)))))
        if kept:
            session.execute(ERASED.update().where(ERASED.c.sha256.in_(list(kept))).values(queued_at=datetime.now(UTC)))
        session.commit()
    return int(n)


def retention_cutoff(days: int, now: datetime | None = None) -> datetime:
    return (now or datetime.now(UTC)) - timedelta(days=days)
