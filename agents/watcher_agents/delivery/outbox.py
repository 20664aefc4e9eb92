"""A durable, bounded outbox on local disk: events wait here until the backend has acknowledged them.

The agents (filemon, procmon) never send an event straight to the network. They ``put`` it here in a
committed SQLite transaction, and the sender (``sender.py``) ships batches and ``ack``s what the
backend stored. The system we replace lost every event produced while the backend was down; with the
outbox, a backend outage only grows the queue.

Durability. The database runs in WAL mode. ``synchronous``:

* ``normal`` (default): a committed ``put`` survives a crash or SIGKILL of the agent (the WAL is in the
  OS page cache, which outlives the process). A power loss or kernel panic may roll back the last
  transactions, never corrupt the file. filemon keeps its file-state table in the same database and
  updates it in the same transaction as the ``put`` (``put(events, also=...)``), so a rollback loses the
  state and the events together, and the startup scan detects those files as changed again.
* ``full``: every commit is fsynced; survives power loss at the cost of one fsync per transaction.
  Useful for procmon, whose events cannot be re-derived after the fact.

Bounds. ``max_events`` and ``max_bytes`` (of stored JSON) cap the queue; ``put`` raises ``OutboxFull``
for the whole batch (all or nothing) rather than growing without limit. A full disk raises
``OutboxDiskFull``; both are ``OutboxUnavailable``: the caller counts it, keeps running and retries later.

Order: students in turn. One student's flood (100,000 new files, an exec storm) must not hold up every
classmate's events on the node, so the outbox is not one FIFO: each event gets a *turn* when it is put,
the one after its student's last queued event, and no earlier than the last turn of the batch being
sent. Batches are the events in (turn, id) order: each student's events stay in their order, every
student with events waiting has one in each turn, and a classmate's save put behind 100,000 events of a
flood is in the next batch. Events of no student (no course, section and student id) are one more
student here. The turns live in the table (column ``turn``, indexed), so a restart keeps the order.

Events the backend rejected *permanently* (HTTP 422 with a rejection naming the event) move to a
dead-letter table, kept for inspection, counted, and never retried by themselves: ``watcher outbox
dead-letters list|requeue`` shows them and puts them back in the queue (after the backend is fixed or
upgraded), so nothing dead-lettered is lost.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

log = logging.getLogger(__name__)

DEFAULT_MAX_EVENTS = 1_000_000
DEFAULT_MAX_BYTES = 512 * 1024 * 1024
DEFAULT_MAX_DEAD_LETTERS = 100_000
SYNC_MODES = ("normal", "full")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL,
    body TEXT NOT NULL,
    size INTEGER NOT NULL,
    enqueued_at REAL NOT NULL,
    student TEXT NOT NULL DEFAULT '',
    turn INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL,
    body TEXT NOT NULL,
    error TEXT NOT NULL,
    enqueued_at REAL NOT NULL,
    dead_at REAL NOT NULL
);
"""


class OutboxUnavailable(Exception):
    """The outbox cannot take these events right now (full, or the disk is full). Retry later."""


class OutboxFull(OutboxUnavailable):
    """The configured bound (events or bytes) would be exceeded."""


class OutboxDiskFull(OutboxUnavailable):
    """SQLite could not write: the disk (or the database's size limit) is full."""


def _is_disk_full(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return code == sqlite3.SQLITE_FULL or "database or disk is full" in str(exc)


class Serialized(NamedTuple):
    """An event already turned into its JSON text: about a sixth of the memory of the model (0.5 vs 3 KiB
    for a run), for agents that hold events in memory before the outbox takes them."""

    event_id: str
    body: str
    student: str  # student_key: whose turn it takes

    @classmethod
    def of(cls, event: Any) -> Serialized:
        return event if isinstance(event, Serialized) else cls._make(_serialize(event))


def student_key(event: Mapping[str, Any]) -> str:
    """Whose event this is, for serving students in turn: ``course/section/student_id``, or ``""`` for an
    event that names no student. Interned: the events of one student share one string."""
    course, section, student_id = event.get("course"), event.get("section"), event.get("student_id")
    if isinstance(course, str) and isinstance(section, str) and isinstance(student_id, str):
        return sys.intern(f"{course}/{section}/{student_id}")
    return ""


def _student_of_body(body: str) -> str:
    """student_key of stored JSON text (dead letters have no student column: they are requeued rarely)."""
    try:
        event = json.loads(body)
    except ValueError:
        return ""
    return student_key(event) if isinstance(event, dict) else ""


def _serialize(event: Any) -> tuple[str, str, str]:
    """(event_id, JSON text, student_key) of a wire.Event model, an already-dumped dict or a Serialized."""
    if isinstance(event, Serialized):
        return event
    if hasattr(event, "model_dump_json"):
        return event.event_id, event.model_dump_json(), student_key(vars(event))
    if isinstance(event, dict):
        body = json.dumps(event, separators=(",", ":"), ensure_ascii=False)
        return str(event.get("event_id", "")), body, student_key(event)
    raise TypeError(f"cannot store {type(event).__name__} in the outbox: expected a wire event or a dict")


class Outbox:
    """Thread-safe: one connection guarded by a lock (writers are few, transactions short).

    The last turn taken for sending (``_turn_now``, never going back) and each student's last queued turn
    (``_last_turn``) are kept in memory; both are read from the table on open.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        max_events: int = DEFAULT_MAX_EVENTS,
        max_bytes: int = DEFAULT_MAX_BYTES,
        synchronous: str = "normal",
        max_dead_letters: int = DEFAULT_MAX_DEAD_LETTERS,
    ) -> None:
        if synchronous not in SYNC_MODES:
            raise ValueError(f"synchronous must be one of {SYNC_MODES}, got {synchronous!r}")
        if max_events <= 0 or max_bytes <= 0:
            raise ValueError("outbox bounds must be positive")
        self.path = Path(path)
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.max_dead_letters = max_dead_letters
        self._lock = threading.RLock()
        self._not_empty = threading.Condition(self._lock)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN/COMMIT ourselves so a batch is one transaction.
        self._conn = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None, timeout=30)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute(f"PRAGMA synchronous={synchronous.upper()}")
        self._conn.executescript(_SCHEMA)
        _migrate(self._conn, self.path)
        self._closed = False
        self._turn_now = 0
        self._last_turn: dict[str, int] = {}
        self._prune_at = 1024
        self._recount()

    # --- writing -----------------------------------------------------------------------------------

    @property
    def connection(self) -> sqlite3.Connection:
        """The underlying connection, for tables that must commit together with ``put`` (use ``also``)."""
        return self._conn

    @property
    def lock(self) -> threading.RLock:
        return self._lock

    def put(self, events: Sequence[Any], also: Callable[[sqlite3.Connection], None] | None = None) -> None:
        """Store events durably, all or nothing. ``also(conn)`` runs inside the same transaction.

        Raises OutboxFull when a bound would be exceeded and OutboxDiskFull when SQLite cannot write;
        in both cases nothing (not even ``also``) is committed.
        """
        now = time.time()
        serialized = [_serialize(event) for event in events]
        sizes = [len(body.encode("utf-8")) for _, body, _ in serialized]
        added = sum(sizes)
        with self._lock:
            self._check_open()
            if serialized and (self._depth + len(serialized) > self.max_events or self._bytes + added > self.max_bytes):
                raise OutboxFull(
                    f"outbox full: {self._depth} events / {self._bytes} bytes stored, "
                    f"bounds {self.max_events} events / {self.max_bytes} bytes"
                )
            turns, last_turns = self._turns([student for _, _, student in serialized])
            rows = [
                (event_id, body, size, now, student, turn)
                for (event_id, body, student), size, turn in zip(serialized, sizes, turns)
            ]
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    if rows:
                        self._conn.executemany(
                            "INSERT INTO outbox (event_id, body, size, enqueued_at, student, turn) "
                            "VALUES (?, ?, ?, ?, ?, ?)",
                            rows,
                        )
                    if also is not None:
                        also(self._conn)
                    self._conn.execute("COMMIT")
                except BaseException:
                    self._rollback()
                    raise
            except sqlite3.OperationalError as exc:
                if _is_disk_full(exc):
                    raise OutboxDiskFull(f"outbox {self.path}: disk full ({exc})") from exc
                raise
            self._depth += len(rows)
            self._bytes += added
            self._last_turn.update(last_turns)
            if rows:
                self._not_empty.notify_all()

    def _turns(self, students: Sequence[str]) -> tuple[list[int], dict[str, int]]:
        """The turns of the next events of these students, in order: each after its student's last queued
        one, and not before the last turn taken for sending (a student with nothing queued joins it). Also
        each student's new last turn, to keep once the events are committed."""
        now, queued = self._turn_now, self._last_turn
        last: dict[str, int] = {}
        turns = []
        for student in students:
            previous = last.get(student)
            if previous is None:
                previous = queued.get(student, -1)
            turn = previous + 1 if previous >= now else now
            last[student] = turn
            turns.append(turn)
        return turns, last

    def _rollback(self) -> None:
        try:
            self._conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # the failed statement may already have rolled the transaction back

    # --- reading and acknowledging -----------------------------------------------------------------

    def peek_batch(self, n: int, max_bytes: int | None = None) -> list[tuple[int, dict]]:
        """The next ``n`` events in turn order as (rowid, event dict), without removing them: students in
        turn, each student's events oldest first.

        With ``max_bytes``, stops before the batch's JSON would exceed it (but always returns at least
        one event if there is one, so an oversized event still reaches the backend and gets an answer).
        """
        with self._lock:
            self._check_open()
            cur = self._conn.execute("SELECT id, body, size, turn FROM outbox ORDER BY turn, id LIMIT ?", (max(1, n),))
            out: list[tuple[int, dict]] = []
            total = 0
            last_turn = None
            for rowid, body, size, turn in cur:
                if max_bytes is not None and out and total + size + 1 > max_bytes:
                    break
                total += size + 1
                out.append((rowid, json.loads(body)))
                last_turn = turn
            if last_turn is None:
                self._last_turn.clear()  # nothing queued: nobody is ahead of anybody
            else:
                self._serving(last_turn)
            return out

    def _serving(self, turn: int) -> None:
        """Turns up to ``turn`` are being sent: every event left has a turn at least this one, so an event
        put from now on takes no earlier turn (a student with nothing queued joins it). Students whose last
        turn is behind it no longer matter."""
        if turn <= self._turn_now:
            return
        self._turn_now = turn
        if len(self._last_turn) > self._prune_at:
            self._last_turn = {k: t for k, t in self._last_turn.items() if t >= turn}
            self._prune_at = 2 * len(self._last_turn) + 1024

    def wait_for_events(self, timeout: float) -> bool:
        """Block until the outbox holds something (True) or ``timeout`` passes (False)."""
        with self._not_empty:
            if self._depth <= 0:
                self._recount()  # events requeued by `watcher outbox` (another process) count too
            if self._depth > 0:
                return True
            self._not_empty.wait(timeout)
            if self._depth <= 0:
                self._recount()
            return self._depth > 0

    def _recount(self) -> None:
        """The counters and each student's last turn from the tables: at start, and when the outbox is
        believed empty (cheap then), since `watcher outbox` in another process may have requeued events."""
        self._check_open()
        by_student = self._conn.execute("SELECT student, MAX(turn), COUNT(*), SUM(size) FROM outbox GROUP BY student")
        self._depth = self._bytes = 0
        self._last_turn = {}
        for student, last, count, size in by_student:
            self._last_turn[student] = int(last)
            self._depth += int(count)
            self._bytes += int(size)
        self._dead = int(self._conn.execute("SELECT COUNT(*) FROM dead_letters").fetchone()[0])
        head = self._conn.execute("SELECT MIN(turn) FROM outbox").fetchone()[0]
        if head is not None:
            self._serving(int(head))

    def ack(self, rowids: Iterable[int]) -> int:
        """Remove delivered events. Returns how many were removed (unknown ids are ignored)."""
        ids = list(rowids)
        if not ids:
            return 0
        with self._lock:
            self._check_open()
            removed = 0
            removed_bytes = 0
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                for chunk in _chunks(ids, 500):
                    marks = ",".join("?" * len(chunk))
                    size = self._conn.execute(
                        f"SELECT COUNT(*), COALESCE(SUM(size), 0) FROM outbox WHERE id IN ({marks})", chunk
                    ).fetchone()
                    self._conn.execute(f"DELETE FROM outbox WHERE id IN ({marks})", chunk)
                    removed += int(size[0])
                    removed_bytes += int(size[1])
                self._conn.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
            self._depth -= removed
            self._bytes -= removed_bytes
            return removed

    def dead_letter(self, rowid: int, error: str) -> bool:
        """Move one event the backend rejected permanently to the dead-letter table."""
        with self._lock:
            self._check_open()
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                row = self._conn.execute(
                    "SELECT event_id, body, size, enqueued_at FROM outbox WHERE id = ?", (rowid,)
                ).fetchone()
                if row is None:
                    self._conn.execute("COMMIT")
                    return False
                event_id, body, size, enqueued_at = row
                self._conn.execute(
                    "INSERT INTO dead_letters (event_id, body, error, enqueued_at, dead_at) VALUES (?, ?, ?, ?, ?)",
                    (event_id, body, error[:2000], enqueued_at, time.time()),
                )
                self._conn.execute("DELETE FROM outbox WHERE id = ?", (rowid,))
                # Keep the table bounded: drop the oldest dead letters beyond the cap.
                self._conn.execute(
                    "DELETE FROM dead_letters WHERE id <= (SELECT MAX(id) FROM dead_letters) - ?",
                    (self.max_dead_letters,),
                )
                self._conn.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
            self._depth -= 1
            self._bytes -= int(size)
            self._dead = min(self._dead + 1, self.max_dead_letters)
            log.warning("dead-lettered event %s: %s", event_id, error)
            return True

    def requeue_dead_letters(self, event_ids: Iterable[str] | None = None) -> int:
        """Move dead letters (all, or those with these event ids) back into the queue, oldest first, for
        another try: e.g. after the backend was upgraded to know their type. Returns how many moved."""
        with self._lock:
            self._check_open()
            where, params = "", []
            if event_ids is not None:
                params = list(event_ids)
                if not params:
                    return 0
                where = f" WHERE event_id IN ({','.join('?' * len(params))})"
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                letters = self._conn.execute(
                    f"SELECT event_id, body, enqueued_at FROM dead_letters{where} ORDER BY id", params
                ).fetchall()
                students = [_student_of_body(body) for _, body, _ in letters]
                turns, _ = self._turns(students)  # the turns are read again from the table below
                rows = [
                    (event_id, body, len(body.encode("utf-8")), enqueued_at, student, turn)
                    for (event_id, body, enqueued_at), student, turn in zip(letters, students, turns)
                ]
                self._conn.executemany(
                    "INSERT INTO outbox (event_id, body, size, enqueued_at, student, turn) VALUES (?, ?, ?, ?, ?, ?)",
                    rows,
                )
                moved = len(rows)
                self._conn.execute(f"DELETE FROM dead_letters{where}", params)
                self._conn.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
            self._recount()
            if moved:
                self._not_empty.notify_all()
            return int(moved)

    def queued_by_student(self, limit: int = 10) -> list[tuple[str, int]]:
        """The students with the most events waiting, most first: (student_key, events)."""
        with self._lock:
            self._check_open()
            rows = self._conn.execute(
                "SELECT student, COUNT(*) AS n FROM outbox GROUP BY student ORDER BY n DESC, student LIMIT ?",
                (limit,),
            ).fetchall()
        return [(student, int(n)) for student, n in rows]

    def dead_letters(self, limit: int = 100) -> list[dict]:
        """The most recent dead letters: event_id, event, error, dead_at."""
        with self._lock:
            self._check_open()
            rows = self._conn.execute(
                "SELECT event_id, body, error, dead_at FROM dead_letters ORDER BY id DESC LIMIT ?", (limit,)
            ).fetchall()
        return [{"event_id": e, "event": json.loads(b), "error": err, "dead_at": t} for e, b, err, t in rows]

    # --- state -------------------------------------------------------------------------------------

    def depth(self) -> int:
        return self._depth

    def bytes(self) -> int:
        return self._bytes

    def dead_letter_count(self) -> int:
        return self._dead

    def fill_ratio(self) -> float:
        """How full the outbox is, 0..1: the larger of the event and byte fractions."""
        return max(self._depth / self.max_events, self._bytes / self.max_bytes)

    def oldest_age_seconds(self) -> float:
        """Age of the oldest unsent event, 0 when empty."""
        with self._lock:
            if self._closed:
                return 0.0
            row = self._conn.execute("SELECT enqueued_at FROM outbox ORDER BY id LIMIT 1").fetchone()
        return max(0.0, time.time() - row[0]) if row else 0.0

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()
                self._not_empty.notify_all()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"outbox {self.path} is closed")

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Bring an outbox written by an older agent (one FIFO, before turns) up to this schema, in place and
    in one transaction: an upgrade killed midway leaves the old file as it was.

    No row is rewritten, so the upgrade takes about as long as reading the file once (building the index),
    however large the backlog: a node whose backend was down may hold a million events, and the agent
    must pass its liveness probe. The old events all get turn 0 and no student: they go first, in their
    old order, and everything put after the upgrade takes turns behind them (each student's new events
    after their old ones)."""
    if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'outbox_turn' AND tbl_name = 'outbox'").fetchone():
        return  # up to date: no write lock taken (`watcher outbox` opens the file of a running agent)
    conn.execute("BEGIN IMMEDIATE")
    try:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(outbox)")}
        if "turn" not in columns:
            conn.execute("ALTER TABLE outbox ADD COLUMN student TEXT NOT NULL DEFAULT ''")
            conn.execute("ALTER TABLE outbox ADD COLUMN turn INTEGER NOT NULL DEFAULT 0")
            log.info("outbox %s: upgraded; its queued events go first, then students take turns", path)
        conn.execute("CREATE INDEX IF NOT EXISTS outbox_turn ON outbox (turn)")
        conn.execute("COMMIT")
    except BaseException:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass
        raise


def _chunks(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i : i + size]
