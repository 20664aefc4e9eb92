"""The dashboard's JSON (read scope): a course's assignments over time, an assignment's students with their
flags and heat strips, and an assignment's ProgSnap2 export as a streamed zip. The pages are ``ui.py``.

Every route depends on ``auth.require_read``: a path naming a section the reader may not see is a 403 before
the handler runs, and a course's page shows only the sections the reader may see."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import Response, StreamingResponse
from sqlmodel import Session

from .. import audit, dashboard, store
from ..auth import Reader, get_session, require_read
from ..export import archive, progsnap2
from ..export.cli import iter_events
from ..params import AssignmentPath, CoursePath, Cursor, SectionPath, StudentPath
from ..schemas import AssignmentActivityView, CompactTimeline, CourseActivity

router = APIRouter(prefix="/api/v1", tags=["dashboard"], dependencies=[Depends(require_read)])

ASSIGNMENT = "/courses/{course}/sections/{section}/assignments/{assignment}"


def _thresholds(request: Request) -> dashboard.Thresholds:
    settings = request.app.state.settings
    return dashboard.Thresholds(settings.stuck_compiles, settings.paste_bytes)


@router.get("/courses/{course}/activity", response_model=CourseActivity, summary="A course's assignments over time")
def course_activity(
    request: Request,
    course: CoursePath,
    session: Session = Depends(get_session),
    reader: Reader = Depends(require_read),
):
    sections = None
    if not reader.every_course:
        if not reader.allows_course(course):
            allowed = ", ".join(str(g) for g in reader.grants or ()) or "nothing"
            raise HTTPException(
                status_code=403, detail=f"{reader.name} may not read course {course!r} (it may read: {allowed})"
            )
        sections = {s for s in dashboard.sections_of(session, course) if reader.allows(course, s)}
    return dashboard.course_view(session, course, request.app.state.settings.time_zone, sections)


@router.get(
    ASSIGNMENT + "/activity",
    response_model=AssignmentActivityView,
    summary="An assignment's students: counts, flags (stuck, large paste) and activity per hour",
)
def assignment_activity(
    request: Request,
    course: CoursePath,
    section: SectionPath,
    assignment: AssignmentPath,
    session: Session = Depends(get_session),
):
    settings = request.app.state.settings
    return dashboard.assignment_view(
        session,
        course,
        section,
        assignment,
        idle_gap_seconds=settings.idle_gap_seconds,
        thresholds=_thresholds(request),
        zone_name=settings.time_zone,
    )


@router.get(
    ASSIGNMENT + "/students/{student_id}/events",
    summary="A page of a student's events, compact (the dashboard's timeline)",
    response_class=Response,
    responses={200: {"model": CompactTimeline, "content": {"application/json": {}}}},
)
def student_events(
    course: CoursePath,
    section: SectionPath,
    assignment: AssignmentPath,
    student_id: StudentPath,
    limit: Annotated[int, Query(ge=1, le=2000, description="Page size")] = 1000,
    cursor: Cursor = None,
    session: Session = Depends(get_session),
):
    try:
        page = dashboard.timeline_page(session, course, section, assignment, student_id, limit=limit, cursor=cursor)
    except store.BadCursor as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from None
    # Serialised here, not through the response model: validating 1,000 event models again would cost the
    # page more than the query does. CompactTimeline documents the shape, and the tests hold them equal.
    return Response(json.dumps(page, separators=(",", ":")), media_type="application/json")


@router.get(
    ASSIGNMENT + "/export/progsnap2",
    summary="The assignment as a ProgSnap2 dataset (a zip, streamed)",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/zip": {}}}},
)
def export_progsnap2(
    request: Request,
    course: CoursePath,
    section: SectionPath,
    assignment: AssignmentPath,
    session: Session = Depends(get_session),
    reader: Reader = Depends(require_read),
):
    app = request.app
    name = f"progsnap2-{course}-{section}-{assignment}"
    # An export reads every student's code of the assignment: one audit row naming the assignment.
    route = f"{request.method} {getattr(request.scope.get('route'), 'path', request.url.path)}"
    audit.record(session, reader.name, route, {"course": course, "section": section, "assignment": assignment})

    def body() -> Iterator[bytes]:
        # Written to a temporary folder first (CodeStates are folders the mapper fills as it goes), then
        # zipped while sent; the folder goes when the answer ends or the client leaves.
        with tempfile.TemporaryDirectory(prefix="watcher-export-") as tmp:
            events = iter_events(app.state.engine, course=course, section=section, assignment=assignment)
            progsnap2.write_dataset(events, tmp, app.state.settings.snapshot_dir)
            yield from archive.zip_stream(tmp, name)

    return StreamingResponse(
        body(), media_type="application/zip", headers={"Content-Disposition": f'attachment; filename="{name}.zip"'}
    )
