"""``watcher backend``: run the central API server (uvicorn; one process, or ``--workers N``: workers.py)."""

from __future__ import annotations

import argparse
import gc
import logging
import sys

from watcher_core import logs, settings_spec

from .settings import SETTINGS, from_env

DESCRIPTION = "Run the JCode Watcher backend: the event store and HTTP API (FastAPI on uvicorn)."


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="watcher backend",
        description=DESCRIPTION,
        epilog=settings_spec.epilog(SETTINGS),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    settings_spec.add_arguments(p, SETTINGS)
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
        settings = from_env(args=args).validate()
    except settings_spec.SettingsError as exc:
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

    if settings.workers > 1:
        return _serve_workers(settings)
    from .app import create_app

    engine = _database(settings, background_checkpoints=True)
    if isinstance(engine, int):
        return engine
    server = _server(create_app(settings, engine), settings)
    server.run()
    return 0 if server.started else 1


def _database(settings, *, background_checkpoints: bool):
    """An engine whose database answers, or the exit code after one line naming WATCHER_DATABASE_URL."""
    from .db import make_engine

    try:
        engine = make_engine(settings.database_url, background_checkpoints=background_checkpoints)
    except Exception as exc:  # e.g. a database URL the driver cannot parse, a folder that cannot be made
        print(f"watcher backend: bad setting WATCHER_DATABASE_URL: {_one_line(exc)}", file=sys.stderr)
        return 2
    problem = wait_for_database(engine, settings.database_wait_seconds)
    if problem:
        print(f"watcher backend: cannot reach the database (WATCHER_DATABASE_URL): {problem}", file=sys.stderr)
        return 1
    return engine


def _server(app, settings):
    import uvicorn

    # What was built so far (modules, the app) lives as long as the server: out of the collector's sight, a
    # full collection looks only at what requests make. It took 50-100 ms, often with the write lock held:
    # the p99 of single-event requests.
    gc.collect()
    gc.freeze()

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
    return uvicorn.Server(config)


def _serve_workers(settings) -> int:
    """``--workers N``: migrate and build the rollups here, once; then fork the workers (workers.py)."""
    from . import workers

    folder = workers.metrics_folder()  # before anything imports prometheus_client
    try:
        from .app import _build_rollups
        from .migrate import upgrade

        engine = _database(settings, background_checkpoints=False)  # the migration's own, closed before forking
        if isinstance(engine, int):
            return engine
        if settings.run_migrations:
            upgrade(engine)
            _build_rollups(engine, settings.idle_gap_seconds)
        engine.dispose()  # the workers open their own connections
        return workers.Supervisor(workers.worker_settings(settings), _serve_worker).run()
    finally:
        workers.remove_metrics_folder(folder)


def _serve_worker(settings, index: int) -> int:
    """In a forked worker: the app on its own SO_REUSEPORT socket."""
    from . import store, workers
    from .app import create_app

    store.set_time_slot(index, settings.workers)
    sock = workers.listening_socket(settings.host, settings.port)
    server = _server(create_app(settings, housekeeping=index == 0), settings)
    server.run(sockets=[sock])
    if not server.started:
        logging.getLogger("watcher_backend").error("worker %d: the server did not start (see above)", index)
    return 0 if server.started else 1


if __name__ == "__main__":
    sys.exit(main())
