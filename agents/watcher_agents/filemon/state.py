"""filemon's local state store: what it last recorded for each file (size, mtime, sha256).

The table lives in the outbox database so that recording a file's new state and queueing its event
are ONE transaction (``Outbox.put(events, also=...)``). After a SIGKILL either both happened or
neither; on restart the startup scan compares the workspace with this table, so a file whose event
was not queued is found changed again and reported, and a file whose event was queued is not
reported twice. Event ids are deterministic (see ``pipeline.save_event_id``), so even a resend is
deduplicated by the backend.

Keys are paths relative to the workspace root (``os-1-2020/hw1/main.c``).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass

KIND_SAVE = "save"
KIND_TOO_LARGE = "too_large"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS file_state (
    rel TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    sha256 TEXT
) WITHOUT ROWID;
"""


@dataclass(frozen=True)
class FileState:
    rel: str
    kind: str
    size: int
    mtime_ns: int
    sha256: str | None


class StateStore:
    """Reads use the shared connection under the outbox lock; writes go through ``upsert_sql``/``delete_sql``
    callbacks passed to ``Outbox.put`` so they commit with the events."""

    def __init__(self, conn: sqlite3.Connection, lock: threading.RLock) -> None:
        self._conn = conn
        self._lock = lock
        with self._lock:
            self._conn.executescript(_SCHEMA)

    def get(self, rel: str) -> FileState | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT rel, kind, size, mtime_ns, sha256 FROM file_state WHERE rel = ?", (rel,)
            ).fetchone()
        return FileState(*row) if row else None

    def under(self, prefix: str) -> list[str]:
        """Known files equal to ``prefix`` or below ``prefix/`` ('' = everything)."""
        with self._lock:
            if not prefix:
                rows = self._conn.execute("SELECT rel FROM file_state").fetchall()
            else:
                low = prefix.rstrip("/") + "/"
                high = prefix.rstrip("/") + "0"  # '0' sorts right after '/'
                rows = self._conn.execute(
                    "SELECT rel FROM file_state WHERE rel = ? OR (rel >= ? AND rel < ?)", (prefix, low, high)
                ).fetchall()
        return [r[0] for r in rows]

    def all(self) -> Iterator[FileState]:
        with self._lock:
            rows = self._conn.execute("SELECT rel, kind, size, mtime_ns, sha256 FROM file_state").fetchall()
        return (FileState(*r) for r in rows)

    def count(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM file_state").fetchone()[0])

    @staticmethod
    def upsert(state: FileState):
        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO file_state (rel, kind, size, mtime_ns, sha256) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(rel) DO UPDATE SET kind=excluded.kind, size=excluded.size, "
                "mtime_ns=excluded.mtime_ns, sha256=excluded.sha256",
                (state.rel, state.kind, state.size, state.mtime_ns, state.sha256),
            )

        return write

    @staticmethod
    def delete(rel: str):
        def write(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM file_state WHERE rel = ?", (rel,))

        return write
