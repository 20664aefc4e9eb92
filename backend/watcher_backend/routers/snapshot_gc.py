"""Erased contents (ingest scope, for filemon): which snapshot contents to remove from the store, and
what was removed. filemon owns the store; the backend only knows which contents events still refer to."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from sqlmodel import Session

from watcher_core import wire

from .. import store
from ..auth import get_session, require_scope

log = logging.getLogger("watcher_backend.snapshot_gc")
router = APIRouter(
    prefix="/api/v1/snapshots/unreferenced",
    tags=["snapshot collection"],
    dependencies=[Depends(require_scope("ingest"))],
)


@router.get(
    "",
    response_model=wire.UnreferencedSnapshots,
    summary="Erased snapshot contents that no event refers to any more (for filemon to remove)",
)
def unreferenced(
    session: Session = Depends(get_session),
    limit: Annotated[int, Query(ge=1, le=wire.MAX_GC_BATCH, description="Contents in one page")] = 1000,
):
    shas, pending = store.unreferenced_contents(session, limit)
    return wire.UnreferencedSnapshots(sha256=shas, pending=pending)


@router.post(
    "/removed",
    response_model=wire.ForgottenSnapshots,
    summary="Report contents removed from the snapshot store (and those kept for now)",
)
def removed(request: Request, body: wire.RemovedSnapshots, session: Session = Depends(get_session)):
    forgotten = store.forget_erased_contents(session, body.sha256, body.kept)
    request.app.state.metrics.erased_contents_removed.inc(forgotten)
    if forgotten:
        log.info("snapshot store: %d erased contents removed by filemon", forgotten)
    return wire.ForgottenSnapshots(forgotten=forgotten)
