"""Schema migrations (Alembic), run programmatically at startup so an upgrade keeps the data."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import Engine

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
HEAD = "head"


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


# Backends starting together on one PostgreSQL take turns (a transaction-scoped advisory lock): the first
# migrates, the others then find the schema current. SQLite's write lock serialises them already.
MIGRATION_LOCK = 0x5741_5443_484D_4947  # "WATCHMIG"


def upgrade(engine: Engine, revision: str = HEAD) -> None:
    """Bring the database to ``revision`` (default: the newest). Safe to run on every start, also by
    several backends at once."""
    cfg = alembic_config()
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str | None:
    """The newest revision this version knows."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()
