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
import threading
import time
from collections.abc import Callable, Iterable, Sequence
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
    enqueued_at REAL NOT NULL
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

    @classmethod
    def of(cls, event: Any) -> Serialized:
        return cls(*_event_json(event))


def _event_json(event: Any) -> tuple[str, str]:
    """(event_id, JSON text) for a wire.Event model, an already-dumped dict or a Serialized."""
    if isinstance(event, Serialized):
        return event
    if hasattr(event, "model_dump_json"):
        return event.event_id, event.model_dump_json()
    if isinstance(event, dict):
        return str(event.get("event_id", "")), json.dumps(event, separators=(",", ":"), ensure_ascii=False)
    raise TypeError(f"cannot store {type(event).__name__} in the outbox: expected a wire event or a dict")


class Outbox:
    """Thread-safe: one connection guarded by a lock (writers are few, transactions short)."""

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
        self._closed = False
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
        rows = []
        now = time.time()
        for event in events:
            event_id, body = _event_json(event)
            rows.append((event_id, body, len(body.encode("utf-8")), now))
        added = sum(r[2] for r in rows)
        with self._lock:
            self._check_open()
            if rows and (self._depth + len(rows) > self.max_events or self._bytes + added > self.max_bytes):
                raise OutboxFull(
                    f"outbox full: {self._depth} events / {self._bytes} bytes stored, "
                    f"bounds {self.max_events} events / {self.max_bytes} bytes"
                )
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    if rows:
                        self._conn.executemany(
                            "INSERT INTO outbox (event_id, body, size, enqueued_at) VALUES (?, ?, ?, ?)", rows
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
            if rows:
                self._not_empty.notify_all()

    def _rollback(self) -> None:
        try:
            self._conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # the failed statement may already have rolled the transaction back

    # --- reading and acknowledging -----------------------------------------------------------------

    def peek_batch(self, n: int, max_bytes: int | None = None) -> list[tuple[int, dict]]:
        """The oldest ``n`` events as (rowid, event dict), without removing them.

        With ``max_bytes``, stops before the batch's JSON would exceed it (but always returns at least
        one event if there is one, so an oversized event still reaches the backend and gets an answer).
        """
        with self._lock:
            self._check_open()
            cur = self._conn.execute("SELECT id, body, size FROM outbox ORDER BY id LIMIT ?", (max(1, n),))
            out: list[tuple[int, dict]] = []
            total = 0
            for rowid, body, size in cur:
                if max_bytes is not None and out and total + size + 1 > max_bytes:
                    break
                total += size + 1
                out.append((rowid, json.loads(body)))
            return out

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
        """The counters from the tables: at start, and when the outbox is believed empty (cheap then), since
        `watcher outbox` in another process may have requeued events."""
        self._check_open()
        count, total = self._conn.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM outbox").fetchone()
        self._depth, self._bytes = int(count), int(total)
        self._dead = int(self._conn.execute("SELECT COUNT(*) FROM dead_letters").fetchone()[0])

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
                moved = self._conn.execute(
                    "INSERT INTO outbox (event_id, body, size, enqueued_at) SELECT event_id, body, "
                    f"length(CAST(body AS BLOB)), enqueued_at FROM dead_letters{where} ORDER BY id",
                    params,
                ).rowcount
                self._conn.execute(f"DELETE FROM dead_letters{where}", params)
                self._conn.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
            self._recount()
            if moved:
                self._not_empty.notify_all()
            return int(moved)

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


def _chunks(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i : i + size]
