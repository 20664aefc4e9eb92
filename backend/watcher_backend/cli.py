"""``watcher backend``: run the central API server (uvicorn, one process)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from watcher_core import logs

from .settings import LOG_LEVELS, SettingsError, from_env

DESCRIPTION = """\
Run the JCode Watcher backend: the event store and HTTP API (FastAPI on uvicorn).

Settings come from flags, else environment variables, else defaults:
  --host / WATCHER_HOST                    0.0.0.0
  --port / WATCHER_PORT                    3000
  --database-url / WATCHER_DATABASE_URL    sqlite:///data/watcher.db (postgresql://... for PostgreSQL)
  --snapshot-dir / WATCHER_SNAPSHOT_DIR    data/snapshots (filemon's snapshot volume, read-only is fine)
  WATCHER_INGEST_TOKEN, WATCHER_READ_TOKEN, WATCHER_ADMIN_TOKEN (or *_FILE naming a file that holds it)
  WATCHER_RETENTION_DAYS (off), WATCHER_MAX_BODY_BYTES, WATCHER_CORS_ORIGINS, WATCHER_IDLE_GAP_SECONDS,
  WATCHER_AUTH=off (same as --insecure-no-auth; loopback only) or off-on-network, WATCHER_LOG_LEVEL,
  WATCHER_DATABASE_WAIT_SECONDS (30: how long to wait for the database at start),
  WATCHER_RETENTION_INTERVAL_SECONDS (3600: how often the retention purge runs),
  WATCHER_LEGACY_SNAPSHOT_TZ, WATCHER_LEGACY_NAIVE_TZ (UTC or KST: the old writers' clock zone, UTC)
A bad value stops the start with one line naming the setting (exit 2).
See docs/configuration.md for the full table."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="watcher backend", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--host", help="address to listen on (default 0.0.0.0)")
    p.add_argument("--port", type=int, help="TCP port (default 3000)")
    p.add_argument("--database-url", help="sqlite:///path.db or postgresql://user:pass@host:port/db")
    p.add_argument("--snapshot-dir", type=Path, help="root of the content-addressed snapshot store")
    p.add_argument("--retention-days", type=int, help="purge events older than this many days (default: keep)")
    p.add_argument(
        "--insecure-no-auth",
        action="store_true",
        help="accept every request without a token (local development only; refused unless --host is a loopback address)",
    )
    p.add_argument(
        "--insecure-no-auth-on-network",
        action="store_true",
        help="with --insecure-no-auth: also on an address other hosts reach (a network no one else can use)",
    )
    p.add_argument("--no-migrate", action="store_true", help="do not run schema migrations at startup")
    p.add_argument(
        "--log-level",
        type=str.upper,
        choices=LOG_LEVELS,
        metavar="LEVEL",
        help=f"one of {', '.join(LOG_LEVELS)}, any case (default INFO; env WATCHER_LOG_LEVEL)",
    )
    return p


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


def wait_for_database(engine, seconds: float) -> str | None:
    """None once a connection works; else why not, after retrying for ``seconds`` (the database may be starting)."""
    import time

    from sqlalchemy import text

    deadline = time.monotonic() + seconds
    while True:
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return None
        except Exception as exc:  # driver errors differ per database; all mean "not reachable yet"
            problem = _one_line(getattr(exc, "orig", None) or exc)
        if time.monotonic() >= deadline:
            return problem
        time.sleep(1)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = from_env()
        settings = settings.with_overrides(
            host=args.host,
            port=args.port,
            database_url=args.database_url,
            snapshot_dir=args.snapshot_dir,
            retention_days=args.retention_days,
            log_level=args.log_level,
        )
        if args.insecure_no_auth or args.insecure_no_auth_on_network:
            settings = settings.with_overrides(auth_enabled=False)
        if args.insecure_no_auth_on_network:
            settings = settings.with_overrides(no_auth_on_network=True)
        if args.no_migrate:
            settings = settings.with_overrides(run_migrations=False)
        settings.validate()
    except SettingsError as exc:
        print(f"watcher backend: bad setting {exc}", file=sys.stderr)
        return 2

    logs.setup(settings.log_level, "backend", settings.log_format)
    logging.getLogger("alembic").setLevel(logging.WARNING)  # migration chatter; failures still show
    if not settings.auth_enabled:
        logging.getLogger("watcher_backend").warning("authentication is OFF (--insecure-no-auth): local use only")
    try:
        settings.snapshot_dir.mkdir(parents=True, exist_ok=True)
    except OSError:
        pass  # a read-only snapshot volume is fine; missing content answers 404

    import uvicorn

    from .app import create_app

    try:
        app = create_app(settings)
    except Exception as exc:  # e.g. a database URL the driver cannot parse, a folder that cannot be made
        print(f"watcher backend: bad setting WATCHER_DATABASE_URL: {_one_line(exc)}", file=sys.stderr)
        return 2
    problem = wait_for_database(app.state.engine, settings.database_wait_seconds)
    if problem:
        print(f"watcher backend: cannot reach the database (WATCHER_DATABASE_URL): {problem}", file=sys.stderr)
        return 1
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        access_log=False,
        log_config=None,  # uvicorn's own loggers go through ours (time, level; text or JSON)
        proxy_headers=True,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    server.run()
    return 0 if server.started else 1


if __name__ == "__main__":
    sys.exit(main())
