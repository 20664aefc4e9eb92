"""The old platform API (``/api/{class_div}/...``), served from the new event store.

The JCode platform keeps calling the paths, field names and messages it always did (reference §1.3);
behind them is the same store as ``/api/v1``. What changed on purpose (docs/legacy-api.md):
reads see writes at once (no cache), lists are sorted, student ids keep leading zeros, bad input is a
422 naming the field (never a 500), exact duplicate writes are stored once, ``file_size`` of a log is
the size of the file's closest snapshot, and tokens are required (writes: ``ingest``, reads: ``read``).

Route order matters: the static-prefix routes (``/api/snapshot_avg/...``, ``/api/assignment/...``)
come first, then the ``.../logs/build|run`` routes, then the generic ``{filename}/{timestamp}`` ones.
A real class_div always contains ``-`` and the static prefixes never do, and a snapshot timestamp is
always ``YYYYMMDD_HHMMSS``, never ``build``/``run``; so no URL is ambiguous (tests/integration/legacy).
This router is included after the v1 routers, so ``/api/v1/...`` always wins.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from sqlmodel import Session
from starlette.datastructures import Headers
from starlette.responses import Response

from watcher_core import identity, wire

from .. import rollups
from ..auth import get_session, require_legacy_read, require_scope
from ..ingest_lane import LaneRoute
from . import adapter, stats, timezones
from .adapter import Scope
from .schemas import (
    AssignmentResponse,
    AvgCountResponse,
    BuildLogCreate,
    BuildLogResponse,
    CodeSizeChangeResponse,
    GraphResponse,
    Message,
    MonitoringResponse,
    RunLogCreate,
    RunLogResponse,
    SnapshotAvgResponse,
    SnapshotCreate,
    StudentSizeChange,
    TopStudent,
    Trend,
)

router = APIRouter(tags=["legacy"])
# the platform backend reads without a token (auth.require_legacy_read says from where)
READ = [Depends(require_legacy_read)]
INGEST = [Depends(require_scope("ingest"))]

MAX_INTERVAL_MINUTES = 10 * 366 * 24 * 60  # ten years; larger values overflow date arithmetic

# Path parameters carry their formats in the OpenAPI schema (clients and fuzzers see them); a value that
# does not match is a 422 naming the parameter. The handlers check the same rules again (scope_of).
PATTERNS = {
    "class_div": rf"^{identity.COURSE_RE.pattern}-{identity.SECTION_RE.pattern}$",
    "hw_name": rf"^{adapter.ASSIGNMENT_RE.pattern}$",
    "student_id": rf"^{identity.STUDENT_ID_RE.pattern}$",
    "timestamp": r"^\d{8}_\d{6}(\..*)?$",
}
_COMPILED_PATTERNS = {name: re.compile(pattern) for name, pattern in PATTERNS.items()}
ClassDiv = Annotated[
    str,
    Path(
        pattern=PATTERNS["class_div"],
        description="{course}-{section}, e.g. os-1 or data-structure-2 (split at the last '-')",
    ),
]
HwName = Annotated[str, Path(pattern=PATTERNS["hw_name"], description="Assignment folder, e.g. hw1")]
StudentId = Annotated[
    str, Path(pattern=PATTERNS["student_id"], description="Student id, a string (leading zeros kept)")
]
FileName = Annotated[str, Path(description="Path in the assignment folder, folders joined with '@' (src@util.c)")]
SnapshotTs = Annotated[
    str,
    Path(
        pattern=PATTERNS["timestamp"],
        description="YYYYMMDD_HHMMSS, the writer's UTC clock by default (WATCHER_LEGACY_SNAPSHOT_TZ, docs/legacy-api.md); a trailing .ext is ignored",
    ),
]


# ------------------------------------------------------------------------------------------ helpers


def invalid(field: str, message: str, value: Any = None, where: str = "path") -> HTTPException:
    """A 422 shaped like FastAPI's own validation errors, naming the field."""
    return HTTPException(
        status_code=422,
        detail=[{"type": "value_error", "loc": [where, field], "msg": message, "input": value}],
    )


@functools.lru_cache(maxsize=8192)  # every write and read parses its URL's names: a class's are few
def scope_of(class_div: str, hw_name: str, student_id: str | None = None) -> Scope:
    try:
        course, section = identity.parse_class_div(class_div)
    except identity.IdentityError as exc:
        raise invalid("class_div", str(exc), class_div) from None
    if not adapter.ASSIGNMENT_RE.fullmatch(hw_name):
        raise invalid("hw_name", "must be 1-64 letters, digits, '_', '.' or '-' (e.g. hw1)", hw_name)
    if student_id is not None and not identity.STUDENT_ID_RE.fullmatch(student_id):
        raise invalid("student_id", "must be 1-32 letters or digits (leading zeros are kept)", student_id)
    return Scope(course, section, hw_name, student_id)


def student_scope(session: Session, class_div: str, hw_name: str, student_id: str) -> Scope:
    """The scope of a read about one student; ``123`` also finds the one stored ``000123`` (the platform
    sends ids as integers). Several stored ids equal to it as numbers: a 409 naming them."""
    scope = scope_of(class_div, hw_name, student_id)
    try:
        return adapter.match_student(session, scope)
    except adapter.AmbiguousStudent as exc:
        raise HTTPException(
            status_code=409,
            detail=[{"type": "ambiguous", "loc": ["path", "student_id"], "msg": str(exc), "input": student_id}],
        ) from None


def path_of(filename: str) -> str:
    try:
        return identity.path_from_legacy_filename(filename)
    except identity.IdentityError as exc:
        raise invalid("filename", f"{exc} (nested folders are joined with '@', e.g. src@util.c)", filename) from None


async def _store_one(app, event: wire.Event) -> None:
    result = await app.state.writer.write([event])
    metrics = getattr(app.state, "metrics", None)
    if metrics is not None:
        metrics.events.labels(event.type, "accepted" if result.accepted else "duplicate").inc()


def _time(parse: Callable[[], datetime], field: str, value: str, where: str = "path") -> datetime:
    try:
        return parse()
    except timezones.LegacyTimeError as exc:
        raise invalid(field, str(exc), value, where) from None


def _body_time(app, value: datetime) -> datetime:
    zone = app.state.settings.legacy_naive_zone
    return _time(lambda: timezones.body_datetime_to_utc(value, zone), "timestamp", value.isoformat(), "body")


# ------------------------------------------------------------------------------------------ static-prefix reads


@router.get(
    "/api/snapshot_avg/{class_div}/{hw_name}/{student_id}/{filename}",
    response_model=SnapshotAvgResponse,
    dependencies=READ,
    summary="Number of snapshots and mean size of one file",
)
def snapshot_avg(
    class_div: ClassDiv,
    hw_name: HwName,
    student_id: StudentId,
    filename: FileName,
    session: Session = Depends(get_session),
):
    scope = student_scope(session, class_div, hw_name, student_id)
    sizes = [s.size for s in adapter.snaps(session, scope, path_of(filename))]
    count, avg = stats.snapshot_avg(sizes)
    return SnapshotAvgResponse(snapshot_avg=count, snapshot_size_avg=avg)


@router.get(
    "/api/assignments/snapshot_avg/{class_div}/{hw_name}/{student_id}",
    response_model=MonitoringResponse,
    dependencies=READ,
    summary="A student's snapshot count, mean size, first/last time and gaps in one assignment",
)
def monitoring(class_div: ClassDiv, hw_name: HwName, student_id: StudentId, session: Session = Depends(get_session)):
    scope = student_scope(session, class_div, hw_name, student_id)
    m = stats.monitoring(adapter.snaps(session, scope))
    return MonitoringResponse(
        snapshot_avg=m.snapshot_avg,
        snapshot_size_avg=m.snapshot_size_avg,
        first=timezones.naive_kst(m.first) if m.first else None,
        last=timezones.naive_kst(m.last) if m.last else None,
        total=m.total,
        interval=m.interval,
    )


@router.get(
    "/api/graph_data/{class_div}/{hw_name}/{student_id}/{interval}",
    response_model=GraphResponse,
    dependencies=READ,
    summary="Total code size per time bucket of `interval` minutes",
    responses={400: {"description": "Interval must be a positive integer."}},
)
def graph_data(
    class_div: ClassDiv, hw_name: HwName, student_id: StudentId, interval: int, session: Session = Depends(get_session)
):
    scope = student_scope(session, class_div, hw_name, student_id)
    if interval <= 0:
        raise HTTPException(status_code=400, detail="Interval must be a positive integer.")
    if interval > MAX_INTERVAL_MINUTES:
        raise invalid("interval", f"must be at most {MAX_INTERVAL_MINUTES} minutes", interval)
    trends = stats.graph_trends(adapter.snaps(session, scope), interval)
    return GraphResponse(
        trends=[
            Trend(timestamp=timezones.graph_string(t.start), total_size=t.total_size, size_change=t.size_change)
            for t in trends
        ]
    )


@router.get(
    "/api/assignment/{class_div}/{hw_name}",
    response_model=AssignmentResponse,
    dependencies=READ,
    summary="Snapshot size percentiles, averages and the 7 most recently active students",
)
def assignment(class_div: ClassDiv, hw_name: HwName, session: Session = Depends(get_session)):
    scope = scope_of(class_div, hw_name)
    if rollups.built_gap(session) is not None:  # one row per student and per size, not every snapshot
        sizes, per_student = rollups.snapshot_aggregates(session, scope.course, scope.section, scope.assignment)
        st = stats.assignment_stats_from(sizes, [stats.StudentSnaps(*s) for s in per_student])
    else:
        st = stats.assignment_stats(adapter.snaps(session, scope))
    return AssignmentResponse(
        percentile_90=st.percentile_90,
        percentile_50=st.percentile_50,
        avg_bytes=st.avg_bytes,
        avg_num=st.avg_num,
        top_7=[
            TopStudent(student_num=t.student, timestamp=timezones.snapshot_string(t.time), code_size=t.code_size)
            for t in st.top_7
        ],
    )


@router.get(
    "/api/total_graph_data/{class_div}/{hw_name}/{start}/{end}",
    response_model=CodeSizeChangeResponse,
    dependencies=READ,
    summary="Per student, the sum of |size change| between consecutive snapshots in [start, end]",
)
def total_graph_data(
    class_div: ClassDiv, hw_name: HwName, start: str, end: str, session: Session = Depends(get_session)
):
    scope = scope_of(class_div, hw_name)
    t_start = _time(lambda: timezones.parse_range_bound(start), "start", start)
    t_end = _time(lambda: timezones.parse_range_bound(end), "end", end)
    if t_end < t_start:
        raise invalid("end", "must not be before start", end)
    changes = stats.size_change_by_student(adapter.snaps(session, scope), t_start, t_end)
    return CodeSizeChangeResponse(
        results=[StudentSizeChange(student_num=s, size_change=n) for s, n in sorted(changes.items())]
    )


def _avg(class_div: str, hw_name: str, session: Session, event_types: tuple[str, ...]) -> AvgCountResponse:
    scope = scope_of(class_div, hw_name)
    if rollups.built_gap(session) is not None:
        n, students = rollups.type_counts(session, scope.course, scope.section, scope.assignment, event_types)
    else:
        n, students = adapter.log_counts(session, scope, event_types)
    return AvgCountResponse(avg_count=stats.avg_count(n, students))


@router.get(
    "/api/build_avg/{class_div}/{hw_name}",
    response_model=AvgCountResponse,
    dependencies=READ,
    summary="Compiles per student (students with at least one)",
)
def build_avg(class_div: ClassDiv, hw_name: HwName, session: Session = Depends(get_session)):
    return _avg(class_div, hw_name, session, adapter.BUILD_TYPES)


@router.get(
    "/api/run_avg/{class_div}/{hw_name}",
    response_model=AvgCountResponse,
    dependencies=READ,
    summary="Runs per student (students with at least one)",
)
def run_avg(class_div: ClassDiv, hw_name: HwName, session: Session = Depends(get_session)):
    return _avg(class_div, hw_name, session, adapter.RUN_TYPES)


# ------------------------------------------------------------------------------------------ logs


@router.post(
    "/api/{class_div}/{hw_name}/{student_id}/logs/build",
    response_model=Message,
    dependencies=INGEST,
    summary="Record a compile (stored as a process.compile event)",
)
async def post_build_log(
    request: Request,
    class_div: ClassDiv,
    hw_name: HwName,
    student_id: StudentId,
    body: BuildLogCreate,
):
    await _store_one(request.app, build_log_event(request.app, class_div, hw_name, student_id, body))
    return Message(message=BUILD_LOGGED)


BUILD_LOGGED = "Build log registered successfully"
RUN_LOGGED = "Run log registered successfully"
SNAPSHOT_LOGGED = "Snapshot registered successfully"


def build_log_event(app, class_div: str, hw_name: str, student_id: str, body: BuildLogCreate) -> wire.Event:
    scope = scope_of(class_div, hw_name, student_id)
    when = _body_time(app, body.timestamp)
    return _build(lambda: adapter.build_event(scope, body, when))


@router.post(
    "/api/{class_div}/{hw_name}/{student_id}/logs/run",
    response_model=Message,
    dependencies=INGEST,
    summary="Record a program run (stored as a process.run event)",
)
async def post_run_log(
    request: Request,
    class_div: ClassDiv,
    hw_name: HwName,
    student_id: StudentId,
    body: RunLogCreate,
):
    await _store_one(request.app, run_log_event(request.app, class_div, hw_name, student_id, body))
    return Message(message=RUN_LOGGED)


def run_log_event(app, class_div: str, hw_name: str, student_id: str, body: RunLogCreate) -> wire.Event:
    scope = scope_of(class_div, hw_name, student_id)
    when = _body_time(app, body.timestamp)
    return _build(lambda: adapter.run_event(scope, body, when))


def _build(make: Callable[[], wire.Event]) -> wire.Event:
    """Build a wire event; a fact the wire rejects becomes a 422 naming it (never a 500)."""
    try:
        return make()
    except ValidationError as exc:
        raise HTTPException(status_code=422, detail=wire.describe_error(exc)) from None


def _log_time(row: adapter.LogRow) -> datetime:
    return timezones.naive_kst(row.timestamp)


@router.get(
    "/api/{class_div}/{hw_name}/{student_id}/logs/build",
    response_model=list[BuildLogResponse],
    dependencies=READ,
    summary="A student's compiles in an assignment, newest first",
)
def get_build_logs(
    class_div: ClassDiv, hw_name: HwName, student_id: StudentId, session: Session = Depends(get_session)
):
    scope = student_scope(session, class_div, hw_name, student_id)
    rows = adapter.logs(session, scope, adapter.BUILD_TYPES)
    sizes = stats.SizeHistory(adapter.snaps(session, scope)) if rows else None
    out = []
    for r in rows:
        first = r.argv[0] if r.argv else ""
        compiler = r.compiler or ""
        out.append(
            BuildLogResponse(
                # the full path where one is known: the old procmon's (kept in compiler), else argv[0]'s
                binary_path=compiler if "/" in compiler else first if "/" in first else (compiler or first),
                cmdline=" ".join(r.argv),
                exit_code=r.legacy_exit_code,
                cwd=adapter.pod_path(scope.assignment, r.cwd),
                target_path=adapter.pod_path(scope.assignment, r.file_path) if r.file_path else "",
                timestamp=_log_time(r),
                file_size=(sizes.size_at(r.file_path, r.timestamp) or 0) if sizes else 0,
            )
        )
    return out


@router.get(
    "/api/{class_div}/{hw_name}/{student_id}/logs/run",
    response_model=list[RunLogResponse],
    dependencies=READ,
    summary="A student's program runs in an assignment, newest first",
)
def get_run_logs(class_div: ClassDiv, hw_name: HwName, student_id: StudentId, session: Session = Depends(get_session)):
    scope = student_scope(session, class_div, hw_name, student_id)
    rows = adapter.logs(session, scope, adapter.RUN_TYPES)
    sizes = stats.SizeHistory(adapter.snaps(session, scope)) if rows else None
    out = []
    for r in rows:
        # a notebook cell reads as the old IPython hook's row did
        file_path = None if r.is_cell else r.file_path
        out.append(
            RunLogResponse(
                cmdline=adapter.NOTEBOOK_CMDLINE if r.is_cell else " ".join(r.argv),
                exit_code=r.legacy_exit_code,
                cwd=adapter.pod_path(scope.assignment, r.cwd),
                target_path=adapter.NOTEBOOK_TARGET
                if r.is_cell
                else (adapter.pod_path(scope.assignment, file_path) if file_path else ""),
                process_type="python" if r.is_cell else (r.kind or "other"),
                timestamp=_log_time(r),
                file_size=(sizes.size_at(file_path, r.timestamp) or 0) if sizes and file_path else 0,
            )
        )
    return out


# ------------------------------------------------------------------------------------------ snapshots


@router.post(
    "/api/{class_div}/{hw_name}/{student_id}/{filename}/{timestamp}",
    response_model=Message,
    dependencies=INGEST,
    summary="Record a snapshot (a save of `bytes` bytes; content is not sent)",
)
async def post_snapshot(
    request: Request,
    class_div: ClassDiv,
    hw_name: HwName,
    student_id: StudentId,
    filename: FileName,
    timestamp: SnapshotTs,
    body: SnapshotCreate,
):
    await _store_one(
        request.app, snapshot_event(request.app, class_div, hw_name, student_id, filename, timestamp, body)
    )
    return Message(message=SNAPSHOT_LOGGED)


def snapshot_event(
    app, class_div: str, hw_name: str, student_id: str, filename: str, timestamp: str, body: SnapshotCreate
) -> wire.Event:
    scope = scope_of(class_div, hw_name, student_id)
    path = path_of(filename)
    zone = app.state.settings.legacy_snapshot_zone
    when = _time(lambda: timezones.parse_snapshot_timestamp(timestamp, zone), "timestamp", timestamp)
    return _build(lambda: adapter.snapshot_event(scope, path, when, body.bytes))


@router.get(
    "/api/{class_div}/{hw_name}/{student_id}",
    response_model=list[str],
    dependencies=READ,
    summary="A student's files in an assignment ('@' joins folders), sorted",
)
def list_files(class_div: ClassDiv, hw_name: HwName, student_id: StudentId, session: Session = Depends(get_session)):
    return adapter.filenames(session, student_scope(session, class_div, hw_name, student_id))


@router.get(
    "/api/{class_div}/{hw_name}/{student_id}/{filename}",
    response_model=list[str],
    dependencies=READ,
    summary="Snapshot timestamps of one file (YYYYMMDD_HHMMSS, KST), oldest first",
)
def list_snapshots(
    class_div: ClassDiv,
    hw_name: HwName,
    student_id: StudentId,
    filename: FileName,
    session: Session = Depends(get_session),
):
    scope = student_scope(session, class_div, hw_name, student_id)
    return adapter.snapshot_times(adapter.snaps(session, scope, path_of(filename)))


# ------------------------------------------------------------------------------------------ ingest lane


def _lane(body_model: type[BaseModel], make: Callable[..., wire.Event], message: str) -> Callable[[Any], LaneRoute]:
    """The ingest lane's stand-in (ingest_lane.py) for one of the writes above: FastAPI's checks of the path
    parameters and the body, then the route's own event builder; anything it is not sure of raises."""
    answer = JSONResponse({"message": message}).body  # the route's answer, the same bytes every time

    def prepare(app, params: Mapping[str, str], raw: bytes, headers: Headers):
        for name, value in params.items():
            pattern = _COMPILED_PATTERNS.get(name)
            if not value.isascii() or (pattern is not None and not pattern.fullmatch(value)):
                raise ValueError(name)
        body = body_model.model_validate(json.loads(raw))  # what FastAPI does with a JSON body
        event = make(app, **params, body=body)

        async def run() -> Response:
            await _store_one(app, event)
            return Response(answer, media_type="application/json")

        return run

    return lambda route: LaneRoute(route, prepare)


# In the order of the routes above: a log's path is also a snapshot's path shape ("logs/build").
LANE = {
    post_build_log: _lane(BuildLogCreate, build_log_event, BUILD_LOGGED),
    post_run_log: _lane(RunLogCreate, run_log_event, RUN_LOGGED),
    post_snapshot: _lane(SnapshotCreate, snapshot_event, SNAPSHOT_LOGGED),
}
