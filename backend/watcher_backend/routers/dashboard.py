"""The dashboard's JSON (read scope): a course's assignments over time, an assignment's students with their
flags and heat strips, and an assignment's ProgSnap2 export as a streamed zip. The pages are ``ui.py``."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from sqlmodel import Session

from .. import dashboard
from ..auth import get_session, require_scope
from ..export import archive, progsnap2
from ..export.cli import iter_events
from ..params import AssignmentPath, CoursePath, SectionPath
from ..schemas import AssignmentActivityView, CourseActivity

router = APIRouter(prefix="/api/v1", tags=["dashboard"], dependencies=[Depends(require_scope("read"))])

ASSIGNMENT = "/courses/{course}/sections/{section}/assignments/{assignment}"


def _thresholds(request: Request) -> dashboard.Thresholds:
    settings = request.app.state.settings
    return dashboard.Thresholds(settings.stuck_compiles, settings.paste_bytes)


@router.get("/courses/{course}/activity", response_model=CourseActivity, summary="A course's assignments over time")
def course_activity(request: Request, course: CoursePath, session: Session = Depends(get_session)):
    return dashboard.course_view(session, course, request.app.state.settings.time_zone)


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
    ASSIGNMENT + "/export/progsnap2",
    summary="The assignment as a ProgSnap2 dataset (a zip, streamed)",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/zip": {}}}},
)
def export_progsnap2(request: Request, course: CoursePath, section: SectionPath, assignment: AssignmentPath):
    app = request.app
    name = f"progsnap2-{course}-{section}-{assignment}"

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
