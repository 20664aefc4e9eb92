"""``POST /api/v1/events``: agents post batches of wire events.

Status codes: 200 with a BatchResult when the array was empty or at least one event was valid (the valid
ones are stored, each rejected one is listed by index); 422 with the same BatchResult body when every
event was rejected; 422 for a body that is not a JSON array; 413 for a body over the byte limit or more
than ``wire.MAX_BATCH_EVENTS`` events. Sending the same batch again changes nothing (duplicates).
"""
from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from sqlmodel import Session

from watcher_core import wire

from .. import store
from ..auth import get_session, require_scope
from ..metrics import type_label

log = logging.getLogger("watcher_backend.events")
router = APIRouter(prefix="/api/v1", tags=["ingest"])

_BODY_SCHEMA = {
    "type": "array",
    "maxItems": wire.MAX_BATCH_EVENTS,
    "items": {"$ref": "#/components/schemas/WireEvent"},
}


@router.post(
    "/events",
    response_model=wire.BatchResult,
    summary="Store a batch of events (idempotent on event_id)",
    responses={
        413: {"description": "Body over the size limit or more than MAX_BATCH_EVENTS events"},
        422: {"description": "Not a JSON array, or every event was rejected (body: BatchResult)"},
    },
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": _BODY_SCHEMA}}}},
)
def post_events(
    request: Request,
    batch: Annotated[list[Any], Body(description="A JSON array of wire events")],
    session: Session = Depends(get_session),
    _scopes: set[str] = Depends(require_scope("ingest")),
    x_watcher_backlog: Annotated[
        int | None, Header(ge=0, description="Events the agent still has queued (shown by watcher status)")
    ] = None,
    x_watcher_node: Annotated[
        str | None, Header(pattern=r"^[A-Za-z0-9._-]{1,253}$", description="Reporting node (heartbeat on empty batches)")
    ] = None,
    x_watcher_source: Annotated[
        str | None, Header(pattern=r"^(filemon|procmon|legacy|ipynb|import)$", description="Reporting agent")
    ] = None,
):
    metrics = request.app.state.metrics
    if len(batch) > wire.MAX_BATCH_EVENTS:
        raise HTTPException(
            status_code=413,
            detail=f"batch has {len(batch)} events; at most {wire.MAX_BATCH_EVENTS} per request (split it)",
        )
    valid: list[wire.Event] = []
    rejected: list[wire.Rejection] = []
    for index, item in enumerate(batch):
        try:
            valid.append(wire.parse_event(item))
        except ValidationError as exc:
            event_id = item.get("event_id") if isinstance(item, dict) else None
            rejected.append(
                wire.Rejection(
                    index=index,
                    event_id=event_id if isinstance(event_id, str) and len(event_id) <= 128 else None,
                    error=wire.describe_error(exc),
                )
            )
            metrics.events.labels(type_label(item.get("type") if isinstance(item, dict) else None), "rejected").inc()
    if valid:
        result = store.ingest(session, valid, backlog=x_watcher_backlog)
        accepted, duplicates = result.accepted, result.duplicates
        for t, n in result.accepted_by_type.items():
            metrics.events.labels(t, "accepted").inc(n)
        for t, n in result.duplicates_by_type.items():
            metrics.events.labels(t, "duplicate").inc(n)
    else:
        accepted = duplicates = 0
        if not batch and x_watcher_node and x_watcher_source:
            store.touch_agent(session, x_watcher_node, x_watcher_source, x_watcher_backlog)
    answer = wire.BatchResult(accepted=accepted, duplicates=duplicates, rejected=rejected)
    if rejected:
        log.info("batch of %d: %d accepted, %d duplicates, %d rejected (first: #%d %s)", len(batch), accepted,
                 duplicates, len(rejected), rejected[0].index, rejected[0].error[:200])
    status = 422 if batch and not valid else 200
    return JSONResponse(answer.model_dump(mode="json"), status_code=status)
