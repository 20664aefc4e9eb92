"""``POST /api/v1/events``: agents post batches of wire events.

Status codes: 200 with a BatchResult when the array was empty or at least one event was valid (the valid
ones are stored, each rejected one is listed by index); 422 with the same BatchResult body when every
event was rejected; 422 for a body that is not a JSON array; 413 for a body over the byte limit or more
than ``wire.MAX_BATCH_EVENTS`` events. Sending the same batch again changes nothing (duplicates).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import TypeAdapter, ValidationError
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers

from watcher_core import identity, wire

from .. import store
from ..auth import require_ingest_or_notebook
from ..ingest_lane import LaneRoute
from ..metrics import type_label

log = logging.getLogger("watcher_backend.events")
router = APIRouter(prefix="/api/v1", tags=["ingest"])

# Fast path: a batch whose events are all valid is validated straight from the JSON bytes in one call.
_BATCH = TypeAdapter(list[wire.Event])

# The headers' formats, for FastAPI's checks and the ingest lane's.
NODE_PATTERN = r"^[A-Za-z0-9._-]{1,253}$"
SOURCE_PATTERN = r"^(filemon|procmon|legacy|ipynb|import)$"

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
async def post_events(
    request: Request,
    writer: set[str] | identity.Student = Depends(require_ingest_or_notebook),
    x_watcher_backlog: Annotated[
        int | None, Header(ge=0, description="Events the agent still has queued (shown by watcher status)")
    ] = None,
    x_watcher_node: Annotated[
        str | None,
        Header(pattern=NODE_PATTERN, description="Reporting node (heartbeat on empty batches)"),
    ] = None,
    x_watcher_source: Annotated[str | None, Header(pattern=SOURCE_PATTERN, description="Reporting agent")] = None,
):
    raw = await request.body()
    cells_of = writer if isinstance(writer, identity.Student) else None
    return await store_batch(request.app, raw, x_watcher_backlog, x_watcher_node, x_watcher_source, cells_of)


def parse_batch(raw: bytes) -> tuple[int, list[wire.Event], list[wire.Rejection]]:
    """(number of elements, valid events, rejections) of a request body; HTTPException for a bad body."""
    try:
        events = _BATCH.validate_json(raw)
    except ValidationError:
        pass  # something is wrong: find out what, element by element
    else:
        _check_count(len(events))
        return len(events), events, []
    try:
        batch: Any = json.loads(raw)
    except RecursionError:
        raise HTTPException(status_code=422, detail="body: JSON nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise HTTPException(status_code=422, detail=f"body: not valid JSON ({exc})") from None
    if not isinstance(batch, list):
        raise HTTPException(status_code=422, detail="body: must be a JSON array of events")
    _check_count(len(batch))
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
    return len(batch), valid, rejected


def _check_count(n: int) -> None:
    if n > wire.MAX_BATCH_EVENTS:
        raise HTTPException(
            status_code=413, detail=f"batch has {n} events; at most {wire.MAX_BATCH_EVENTS} per request (split it)"
        )


_LOGGED_UNKNOWN: set[str] = set()  # unknown field names already logged (once each, at most MAX_LOGGED_UNKNOWN)
MAX_LOGGED_UNKNOWN = 1000


def _positions(size: int, rejected: list[wire.Rejection]) -> list[int]:
    """The batch index of each valid event: parse_batch keeps them in order and leaves out the rejected."""
    bad = {r.index for r in rejected}
    return [i for i in range(size) if i not in bad]


def _ignored_fields(size: int, valid: list[wire.Event], rejected: list[wire.Rejection]) -> list[wire.Ignored]:
    """Stored events with fields this version does not know, by their index in the batch."""
    if not any(ev.__pydantic_extra__ for ev in valid):
        return []
    return [
        wire.Ignored(index=i, event_id=ev.event_id, fields=ev.unknown_fields[:50])
        for i, ev in zip(_positions(size, rejected), valid)
        if ev.unknown_fields
    ]


def only_cells_of(
    student: identity.Student, size: int, valid: list[wire.Event], rejected: list[wire.Rejection]
) -> tuple[list[wire.Event], list[wire.Rejection]]:
    """What a notebook token may store of a parsed batch: its own student's notebook.cell events from the hook."""
    allowed: list[wire.Event] = []
    refused = list(rejected)
    for index, ev in zip(_positions(size, rejected), valid):
        if ev.type != wire.NOTEBOOK_CELL or ev.source != "ipynb":
            why = f"a notebook token may only send notebook.cell events (source ipynb), not {ev.type}"
        elif ev.student != student:
            why = (
                f"a notebook token of {student.course}/{student.section}/{student.student_id} may not send "
                f"events of {ev.course}/{ev.section}/{ev.student_id}"
            )
        else:
            allowed.append(ev)
            continue
        refused.append(wire.Rejection(index=index, event_id=ev.event_id, error=why))
    return allowed, sorted(refused, key=lambda r: r.index)


async def store_batch(
    app, raw: bytes, backlog: int | None, node: str | None, source: str | None, cells_of: identity.Student | None = None
) -> JSONResponse:
    """Validate a request body and store its valid events through the app's group commit (ingest_writer).

    A small body is parsed on the event loop (a thread hand-off would cost more). A large one is parsed in
    a worker thread, on SQLite holding the write lock: parsing a batch while the writer's thread steps SQLite
    only looks parallel, since sqlite3 releases the GIL on every row and the parser then holds it for a
    switch interval each time (the GIL convoy), which made two concurrent clients slower than one."""
    if len(raw) <= LOOP_PARSE_BYTES:
        parsed = parse_batch(raw)
    else:
        parsed = await run_in_threadpool(_parse_large, app, raw)
    return await store_parsed(app, raw, parsed, backlog, node, source, cells_of)


LOOP_PARSE_BYTES = 64 * 1024  # about a hundred events


def _parse_large(app, raw: bytes) -> tuple[int, list[wire.Event], list[wire.Rejection]]:
    if app.state.engine.dialect.name == "sqlite":
        with store.sqlite_write_lock():
            return parse_batch(raw)
    return parse_batch(raw)


async def store_parsed(
    app,
    raw: bytes,
    parsed: tuple[int, list[wire.Event], list[wire.Rejection]],
    backlog: int | None,
    node: str | None,
    source: str | None,
    cells_of: identity.Student | None = None,
) -> JSONResponse:
    """``store_batch`` of a body ``parse_batch`` has read."""
    metrics = app.state.metrics
    size, valid, rejected = parsed
    if cells_of is not None:
        valid, rejected = only_cells_of(cells_of, size, valid, rejected)
        node = source = None  # a student's kernel is no agent: no heartbeat
    if rejected:
        items = None
        for r in rejected:
            if items is None:
                items = json.loads(raw)
            item = items[r.index]
            metrics.events.labels(type_label(item.get("type") if isinstance(item, dict) else None), "rejected").inc()
    accepted = duplicates = 0
    if valid:
        result = await app.state.writer.write(valid, backlog)
        accepted, duplicates = result.accepted, result.duplicates
        for t, n in result.accepted_by_type.items():
            metrics.events.labels(t, "accepted").inc(n)
        for t, n in result.duplicates_by_type.items():
            metrics.events.labels(t, "duplicate").inc(n)
        metrics.observe_stored(valid, result.duplicates_by_type)
    elif size == 0 and node and source:  # an empty batch: the agent's heartbeat
        await run_in_threadpool(_heartbeat, app.state.engine, node, source, backlog)
    ignored = _ignored_fields(size, valid, rejected)
    if ignored:
        metrics.fields_ignored.inc(len(ignored))
        names = sorted({f for i in ignored for f in i.fields})
        new = [n for n in names if n not in _LOGGED_UNKNOWN]
        if new and len(_LOGGED_UNKNOWN) < MAX_LOGGED_UNKNOWN:
            _LOGGED_UNKNOWN.update(new)
            log.warning(
                "events carry fields this backend does not know, stored without them: %s (a newer agent? "
                "upgrade the backend first)",
                ", ".join(names[:20]),
            )
    answer = wire.BatchResult(accepted=accepted, duplicates=duplicates, rejected=rejected, ignored=ignored)
    if rejected:
        log.info(
            "batch of %d: %d accepted, %d duplicates, %d rejected (first: #%d %s)",
            size,
            accepted,
            duplicates,
            len(rejected),
            rejected[0].index,
            rejected[0].error[:200],
        )
    status = 422 if size and not valid else 200
    # `ignored` only when there is something to say: the answer keeps the shape older clients know
    return JSONResponse(
        answer.model_dump(mode="json", exclude={"ignored"} if not ignored else None), status_code=status
    )


def _heartbeat(engine, node: str, source: str, backlog: int | None) -> None:
    with Session(engine) as session:
        store.touch_agent(session, node, source, backlog)


def _lane_post_events(app, params: Mapping[str, str], raw: bytes, headers: Headers):
    """``post_events`` in the ingest lane (ingest_lane.py): the same checks and the same storing, for an
    ingest token. Raises (the lane then leaves the request to the route) at a header it does not take as
    plainly valid or a body ``parse_batch`` refuses."""
    backlog_text, node, source = (headers.get(f"x-watcher-{name}") for name in ("backlog", "node", "source"))
    backlog = None
    if backlog_text is not None:
        if not (backlog_text.isascii() and backlog_text.isdigit() and len(backlog_text) <= 18):
            raise ValueError("X-Watcher-Backlog")
        backlog = int(backlog_text)
    for value, pattern in ((node, NODE_PATTERN), (source, SOURCE_PATTERN)):
        if value is not None and not re.fullmatch(pattern, value):
            raise ValueError(pattern)
    if len(raw) > LOOP_PARSE_BYTES:
        raise ValueError("a large batch: the route parses it apart from the writer")
    parsed = parse_batch(raw)
    return lambda: store_parsed(app, raw, parsed, backlog, node, source)


LANE = {post_events: lambda route: LaneRoute(route, _lane_post_events)}
