"""``watcher db``: back up and restore the backend's database, and run its schema migrations.

    watcher db backup  --database-url sqlite:///data/watcher.db --output watcher-2026-12-04.db
    watcher db restore --database-url sqlite:///new/watcher.db --input watcher-2026-12-04.db
    watcher db current   # the schema revision of the database and the newest this version knows
    watcher db upgrade   # migrate to the newest and build the rollups (the backend also does it at start)

SQLite: an online backup (SQLite's backup API): the backend may keep running and writing, the copy is
consistent. PostgreSQL: ``pg_dump --format=custom`` and ``pg_restore``, which must be on the PATH
(Debian's postgresql-client). Back up the database first and the snapshot store after it: a content is
written before the event that names it, so a store copied later holds every content the database names
(docs/operator.md, "Backup and restore").
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

from sqlalchemy.engine import make_url

from watcher_core import settings_spec
from watcher_core.settings_spec import Setting, Subcommand

from . import settings
from .db import make_engine, normalise_url

DATABASE_URL = settings_spec.pick(settings.SETTINGS, "database_url", default_doc=None, doc="the database")
SUBCOMMANDS = (
    Subcommand(
        "db backup",
        "copy the database while the backend runs. SQLite uses its online backup; PostgreSQL uses "
        "`pg_dump --format=custom`",
        (
            Setting(
                "output",
                flag="--output",
                required=True,
                parse=settings_spec.path,
                metavar="FILE",
                doc="the backup file; an existing file is never overwritten",
            ),
        ),
    ),
    Subcommand(
        "db restore",
        "put a backup into a database. Stop the backend first. SQLite copies the file; PostgreSQL runs "
        "`pg_restore --clean` in one transaction",
        (
            Setting(
                "input",
                flag="--input",
                required=True,
                parse=settings_spec.path,
                metavar="FILE",
                doc="a file made by `watcher db backup`",
            ),
            Setting(
                "force",
                flag="--force",
                flag_value=True,
                default=False,
                doc="replace a database that already holds events (refused otherwise)",
            ),
        ),
    ),
    Subcommand("db current", "print the schema revision of the database and the newest this version knows"),
    Subcommand(
        "db upgrade",
        "migrate the schema to the newest revision and build the rollups for `WATCHER_IDLE_GAP_SECONDS` (the "
        "backend also does it at every start; do it first on a large database: it reads every event once)",
    ),
)
TABLE = (*SUBCOMMANDS, DATABASE_URL)


class DbError(Exception):
    """The command cannot go on; the message says what to do."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="watcher db", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="what", required=True, metavar="{backup,restore,current,upgrade}")
    for subcommand in SUBCOMMANDS:
        settings_spec.add_subcommand(sub, subcommand, DATABASE_URL)
    return p


def options(args: argparse.Namespace) -> settings_spec.Resolved:
    """The subcommand's settings and the database URL; SettingsError for a bad one."""
    subcommand = next(s for s in SUBCOMMANDS if s.name == f"db {args.what}")
    return settings_spec.resolve((*subcommand.settings, DATABASE_URL), args)


def _sqlite_path(url: str) -> Path | None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    if not parsed.database or parsed.database == ":memory:":
        raise DbError("an in-memory SQLite database has nothing to back up or restore")
    return Path(parsed.database).expanduser()


def _pg_url(url: str) -> str:
    """The URL as libpq reads it (no SQLAlchemy driver suffix)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _tool(name: str) -> str:
    found = shutil.which(name)
    if not found:
        raise DbError(
            f"{name} is not on the PATH: install PostgreSQL's client tools (apt-get install postgresql-client)"
        )
    return found


def _run(argv: list[str], what: str) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        detail = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        raise DbError(f"{what} failed: {detail}")


def backup(url: str, output: Path) -> str:
    if output.exists():
        raise DbError(f"{output} exists; choose a new file (a backup never overwrites one)")
    path = _sqlite_path(url)
    if path is None:
        _run([_tool("pg_dump"), "--format=custom", "--no-owner", f"--file={output}", _pg_url(url)], "pg_dump")
        return f"backed up the PostgreSQL database to {output} ({output.stat().st_size} bytes)"
    if not path.exists():
        raise DbError(f"no database at {path}; check --database-url")
    source = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        target = sqlite3.connect(output)
        try:
            source.backup(target)  # pages copied under SQLite's own locking: consistent while writers run
        finally:
            target.close()
    finally:
        source.close()
    return f"backed up {path} to {output} ({output.stat().st_size} bytes)"


def _has_events(url: str) -> bool:
    from sqlalchemy import inspect, text

    engine = make_engine(url)
    try:
        if "event" not in inspect(engine).get_table_names():
            return False
        with engine.connect() as conn:
            return conn.execute(text("SELECT 1 FROM event LIMIT 1")).first() is not None
    finally:
        engine.dispose()


def restore(url: str, source: Path, force: bool) -> str:
    if not source.is_file():
        raise DbError(f"no backup at {source}")
    path = _sqlite_path(url)
    new_sqlite_file = path is not None and not path.exists()  # nothing there to protect
    if not new_sqlite_file and not force and _has_events(url):
        raise DbError("the database already holds events; restore into a new one, or add --force to replace it")
    if path is None:
        _run(
            [
                _tool("pg_restore"),
                "--clean",
                "--if-exists",
                "--no-owner",
                "--single-transaction",
                f"--dbname={_pg_url(url)}",
                str(source),
            ],
            "pg_restore",
        )
        return f"restored {source} into the PostgreSQL database"
    try:
        backup_db = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
        backup_db.execute("SELECT COUNT(*) FROM event").fetchone()
    except sqlite3.DatabaseError as exc:
        raise DbError(f"{source} is not a Watcher SQLite backup ({exc})") from None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        target = sqlite3.connect(path)
        try:
            backup_db.backup(target)
        finally:
            target.close()
    finally:
        backup_db.close()
    return f"restored {source} into {path}"


def _build_rollups(engine) -> None:
    import logging

    from sqlmodel import Session

    from . import rollups

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    with Session(engine) as session:
        rollups.ensure_built(session, settings.from_env().idle_gap_seconds)


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    try:
        opts = options(args)
    except settings_spec.SettingsError as exc:
        print(f"watcher db {args.what}: {exc}", file=sys.stderr)
        return 2
    url = normalise_url(opts.database_url)
    try:
        if args.what == "backup":
            print(backup(url, opts.output), file=sys.stderr)
        elif args.what == "restore":
            print(restore(url, opts.input, opts.force), file=sys.stderr)
            print("start the backend on it: its migrations bring an older backup's schema up to date", file=sys.stderr)
        else:
            from . import migrate

            engine = make_engine(url)
            try:
                if args.what == "upgrade":
                    migrate.upgrade(engine)
                    _build_rollups(engine)
                print(
                    f"revision {migrate.current_revision(engine) or 'none (empty database)'}; "
                    f"newest {migrate.head_revision()}"
                )
            finally:
                engine.dispose()
    except DbError as exc:
        print(f"watcher db {args.what}: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # the database is unreachable, the disk is full: one line, not a traceback
        print(
            f"watcher db {args.what}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
            file=sys.stderr,
        )
        return 1
    return 0
