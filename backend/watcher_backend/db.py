"""Database engine and sessions.

SQLite (the default) is tuned for one writer and many readers: WAL journal, a busy timeout instead of
"database is locked" errors, foreign keys on, synchronous=NORMAL (safe with WAL). PostgreSQL is used when
the URL says ``postgresql://``; the psycopg 3 driver is selected automatically.
"""

from __future__ import annotations

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


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    # Bigger page cache and fewer, larger WAL checkpoints: bulk ingest touches six b-trees per row.
    cur.execute("PRAGMA cache_size=-65536")
    cur.execute("PRAGMA wal_autocheckpoint=10000")
    cur.close()


def make_engine(url: str) -> Engine:
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
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(
        url,
        pool_size=10,
        max_overflow=20,
        pool_pre_ping=True,
        # A dead database must fail fast (readiness, 503) instead of hanging requests.
        connect_args={"connect_timeout": 5},
    )
