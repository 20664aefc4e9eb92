"""Database engine and sessions.

SQLite (the default) is tuned for one writer and many readers: WAL journal, a busy timeout instead of
"database is locked" errors, foreign keys on, synchronous=NORMAL (safe with WAL). PostgreSQL is used when
the URL says ``postgresql://``; the psycopg 3 driver is selected automatically.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url

SQLITE_BUSY_TIMEOUT_MS = 10_000


def normalise_url(url: str) -> str:
    """``postgres://`` and ``postgresql://`` -> psycopg 3; SQLite URLs unchanged."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


# Pages in the write-ahead log after which a commit copies them into the database file (SQLite's automatic
# checkpoint, run by the committing connection).
WAL_AUTOCHECKPOINT_PAGES = 10000
WAL_SIZE_LIMIT_BYTES = 64 * 1024 * 1024


def _sqlite_pragmas(dbapi_conn, _record, autocheckpoint: int = WAL_AUTOCHECKPOINT_PAGES) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    # Bigger page cache and fewer, larger WAL checkpoints: bulk ingest touches six b-trees per row.
    cur.execute("PRAGMA cache_size=-65536")
    cur.execute(f"PRAGMA wal_autocheckpoint={autocheckpoint}")
    # A log that was started over is cut back to this size (a burst can leave it large).
    cur.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT_BYTES}")
    cur.close()


def make_engine(url: str, *, background_checkpoints: bool = False) -> Engine:
    """``background_checkpoints``: on SQLite, commits never copy the write-ahead log into the database file;
    the caller runs ``checkpoint`` in the background instead (the backend server, so that no request waits
    for a checkpoint that a commit ran)."""
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:":
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
            pool_size=8,
            max_overflow=16,
            pool_pre_ping=False,
        )
        pages = 0 if background_checkpoints else WAL_AUTOCHECKPOINT_PAGES
        event.listen(engine, "connect", functools.partial(_sqlite_pragmas, autocheckpoint=pages))
        return engine
    return create_engine(
        url,
        pool_size=10,
        max_overflow=20,
        pool_pre_ping=True,
        # A dead database must fail fast (readiness, 503) instead of hanging requests.
        connect_args={"connect_timeout": 5},
    )


# Checkpoint passes while the writers go on, until one finds at most this many new frames to copy.
CHECKPOINT_SMALL_FRAMES = 256
CHECKPOINT_FREE_PASSES = 4


def checkpoint(engine: Engine, writers_paused: Callable[[], AbstractContextManager[object]]) -> tuple[int, int] | None:
    """Copy what the write-ahead log holds into the database file (PASSIVE: never waits for a reader):
    (frames in the log, frames copied); None when the engine is not SQLite on a file.

    Only a log copied whole is started over by the next commit. Under sustained load the writers always
    added frames while a copy ran, so the log grew without end (1.1 GB after 40 s of 1,800 single-event
    requests/s). So the copy runs in passes while the writers go on, each finding fewer new frames, and a
    last one inside ``writers_paused`` (the backend passes ``store.write_lock``) copies the rest: a few
    milliseconds without writers instead of the whole copy (~100 ms)."""
    if engine.dialect.name != "sqlite" or engine.url.database in (None, "", ":memory:"):
        return None
    with engine.connect() as conn:

        def passive() -> tuple[int, int]:
            _busy, log_frames, copied = conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").one()
            return int(log_frames), int(copied)

        done = 0
        for _ in range(CHECKPOINT_FREE_PASSES):
            log_frames, copied = passive()
            if log_frames - done <= CHECKPOINT_SMALL_FRAMES:
                break
            done = copied
        with writers_paused():
            return passive()
