"""The FastAPI application: ``create_app(settings)``.

Routers per resource (events, snapshots/files, queries, admin, health) plus, if present, the old platform
API in ``legacy/router.py`` (included last, so the /api/v1 and static-prefix routes match first).
Startup (lifespan): log ``Server starting on port N``; run the migrations; log ``Database initialized``;
start the retention task and, on SQLite, the checkpoints; log ``API endpoints ready``. Reads go straight to the database (no cache), so a
read always sees the writes before it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import logging
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import TypeAdapter
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from watcher_core import __version__, wire

from . import db, migrate, rollups, store
from .db import make_engine
from .ingest_lane import IngestLane, LaneRoute
from .ingest_writer import IngestWriter
from .metrics import Metrics, MetricsMiddleware
from .routers import admin, audit, dashboard, events, health, queries, snapshot_gc, snapshots, tokens, ui
from .settings import Settings

log = logging.getLogger("watcher_backend")


class BodyLimitMiddleware:
    """413 for a request body over ``max_bytes``.

    A declared Content-Length over the limit is refused on the first read, before any byte is buffered;
    a body without one (chunked) is counted as it arrives. Both raise inside the route, so the answer goes
    through FastAPI's handlers and the metrics see the route template.
    """

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = 0
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
        seen = 0

        async def limited_receive():
            nonlocal seen
            if declared > self.max_bytes:
                raise HTTPException(status_code=413, detail=self._message(declared), headers={"Connection": "close"})
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise HTTPException(status_code=413, detail=self._message(seen))
            return message

        await self.app(scope, limited_receive, send)

    def _message(self, size: int) -> str:
        return f"request body of {size}+ bytes is over the limit of {self.max_bytes} bytes (WATCHER_MAX_BODY_BYTES)"


async def _retention_loop(app: FastAPI) -> None:
    settings: Settings = app.state.settings
    metrics: Metrics = app.state.metrics
    days = settings.retention_days
    assert days is not None, "the retention loop runs only when WATCHER_RETENTION_DAYS is set"
    while True:
        try:
            purged = await asyncio.to_thread(_purge_once, app.state.engine, days)
            metrics.retention_purged.inc(purged)
            metrics.retention_runs.labels("ok").inc()
            if purged:
                log.info("retention: purged %d events older than %d days", purged, settings.retention_days)
        except Exception as exc:  # keep going; the next run retries
            metrics.retention_runs.labels("error").inc()
            log.warning("retention: purge failed: %s", exc)
        await asyncio.sleep(settings.retention_interval_seconds)


# How often the backend copies SQLite's write-ahead log into the database file.
CHECKPOINT_SECONDS = 1.0


async def _checkpoint_loop(app: FastAPI) -> None:
    """SQLite: the write-ahead log is copied into the database file here, once a second, never by a commit
    (``make_engine(background_checkpoints=True)``). A commit that ran the checkpoint held the write lock of
    every worker for up to a hundred milliseconds: the tail latency of single-event requests."""
    engine: Engine = app.state.engine
    failing = False
    while True:
        try:
            await asyncio.to_thread(db.checkpoint, engine, functools.partial(store.write_lock, engine))
            if failing:
                log.info("SQLite checkpoints work again")
            failing = False
        except Exception as exc:  # keep going: the log grows until one works, and commits still succeed
            app.state.metrics.checkpoint_errors.inc()
            if not failing:
                log.warning("SQLite checkpoint failed, the write-ahead log grows until one works: %s", exc)
            failing = True
        await asyncio.sleep(CHECKPOINT_SECONDS)


def _purge_once(engine: Engine, days: int) -> int:
    with Session(engine) as session:
        return store.purge_older_than(session, store.retention_cutoff(days))


def _include_legacy(app: FastAPI) -> Any:
    """The old API's router module, included, or None when it is not installed."""
    try:
        legacy = importlib.import_module("watcher_backend.legacy.router")
    except ModuleNotFoundError as exc:
        if exc.name == "watcher_backend.legacy.router":
            return None
        raise
    app.include_router(legacy.router)
    return legacy


def _lane_routes(routers: list[Any]) -> list[LaneRoute]:
    """The ingest lane's routes, each with the APIRoute it stands in for, in the app's route order."""
    lanes = []
    for module in routers:
        for route in module.router.routes:
            make = module.LANE.get(getattr(route, "endpoint", None)) if isinstance(route, APIRoute) else None
            if make is not None:
                lanes.append(make(route))
    return lanes


def _build_rollups(engine: Engine, idle_gap_seconds: int) -> None:
    """After an upgrade (or a changed idle gap) the rollups are rebuilt from the events, before serving."""
    with Session(engine) as session:
        rollups.ensure_built(session, idle_gap_seconds)


def create_app(settings: Settings, engine: Engine | None = None, *, housekeeping: bool = True) -> FastAPI:
    """Build the app. ``engine`` defaults to one made from ``settings.database_url``. ``housekeeping``: this
    app runs the background work, the retention purge and SQLite's checkpoints (of several workers, one
    does)."""
    engine = engine or make_engine(settings.database_url, background_checkpoints=True)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        log.info("Server starting on port %d", settings.port)
        if settings.run_migrations:
            await asyncio.to_thread(migrate.upgrade, engine)
            await asyncio.to_thread(_build_rollups, engine, settings.idle_gap_seconds)
        log.info("Database initialized")
        tasks = []
        if settings.retention_days and housekeeping:
            tasks.append(asyncio.create_task(_retention_loop(app)))
        if engine.dialect.name == "sqlite" and housekeeping:
            tasks.append(asyncio.create_task(_checkpoint_loop(app)))
        log.info("API endpoints ready")
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            engine.dispose()

    app = FastAPI(
        title="JCode Watcher backend",
        version=__version__,
        description="The central event store: saved versions, compiles and runs of student code.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.metrics = Metrics()
    app.state.writer = IngestWriter(engine)  # group commit of every ingest request

    app.include_router(health.router)
    app.include_router(events.router)
    app.include_router(queries.router)
    app.include_router(snapshot_gc.router)  # before snapshots: /snapshots/{sha256} would shadow it
    app.include_router(snapshots.router)
    app.include_router(admin.router)
    app.include_router(tokens.router)
    app.include_router(audit.router)
    app.include_router(dashboard.router)
    app.include_router(ui.router)
    legacy = _include_legacy(app)
    app.state.legacy = legacy is not None

    def database_unavailable(method: str, path: str, exc: Exception) -> JSONResponse:
        app.state.metrics.db_errors.inc()
        log.error("database error on %s %s: %s", method, path, str(exc).splitlines()[0][:300])
        return JSONResponse(
            {"detail": f"database unavailable ({type(exc).__name__}); retry later"},
            status_code=503,
            headers={"Retry-After": "5"},
        )

    @app.exception_handler(SQLAlchemyError)
    async def database_error(request: Request, exc: SQLAlchemyError):
        return database_unavailable(request.method, request.url.path, exc)

    # Innermost of our middleware (added first): the metrics, the body limit and CORS see its requests too.
    app.add_middleware(
        IngestLane,
        owner=app,
        settings=settings,
        routes=_lane_routes([events] + ([legacy] if legacy is not None else [])),
        on_database_error=lambda scope, exc: database_unavailable(scope["method"], scope["path"], exc),
        database_errors=(SQLAlchemyError,),
    )

    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_credentials=False,  # bearer tokens, not cookies
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)

    def openapi():
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        event_schema = TypeAdapter(wire.Event).json_schema(ref_template="#/components/schemas/{model}")
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.update(event_schema.pop("$defs", {}))
        components["WireEvent"] = event_schema
        # A 422 is either FastAPI's list of field errors or the one line our handlers raise ("path: ...",
        # "cursor: ..."); publishing only the list made every handler's 422 violate the schema.
        detail = components.get("HTTPValidationError", {}).get("properties", {}).get("detail")
        if detail is not None:
            listed = {k: detail.pop(k) for k in ("type", "items") if k in detail}
            detail["anyOf"] = [listed, {"type": "string"}]
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to extend the schema
    return app
