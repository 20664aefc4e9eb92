"""Open endpoints: liveness (``/health``), readiness (``/ready``, ``/readyz``) and Prometheus ``/metrics``."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import text

from ..schemas import Health, Ready

router = APIRouter(tags=["operations"])


def rfc3339_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@router.get("/health", response_model=Health, summary="Liveness: the process answers")
def health():
    return {"status": "healthy", "timestamp": rfc3339_now()}


def _check_database(request: Request) -> tuple[bool, str | None]:
    try:
        with request.app.state.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return True, None
    except Exception as exc:  # any driver error means "not ready"
        return False, f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"


@router.get(
    "/ready",
    response_model=Ready,
    summary="Readiness: the database answers",
    responses={503: {"model": Ready, "description": "The database is unreachable"}},
)
@router.get("/readyz", response_model=Ready, include_in_schema=False)
def ready(request: Request):
    ok, detail = _check_database(request)
    request.app.state.metrics.ready.set(1 if ok else 0)
    dialect = request.app.state.engine.dialect.name
    body = {"status": "ready" if ok else "unavailable", "database": dialect, "detail": detail}
    return JSONResponse(body, status_code=200 if ok else 503)


@router.get(
    "/metrics", summary="Prometheus metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}}
)
def metrics(request: Request):
    data, content_type = request.app.state.metrics.render()
    return Response(content=data, media_type=content_type)
