"""Analytics reads (read scope): course listing, assignment summary, student timeline, store status.

Every route depends on ``auth.require_read``: a path naming a section the reader may not see is a 403
before the handler runs; the course listing shows only what the reader may see."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from sqlmodel import Session

from watcher_core import wire

from .. import diagnosis, store
from ..auth import Reader, get_session, require_read
from ..params import AssignmentOf, CoursePath, Cursor, Limit, SectionPath, Since, StudentPath, Until
from ..schemas import (
    AssignmentMeasures,
    AssignmentSummary,
    Courses,
    ErrorClasses,
    Status,
    StudentAssignmentsMeasures,
    Timeline,
)

router = APIRouter(prefix="/api/v1", tags=["queries"], dependencies=[Depends(require_read)])

ASSIGNMENT = "/courses/{course}/sections/{section}/assignments/{assignment}"
EventType = Literal[wire.EVENT_TYPES]  # type: ignore[valid-type]  # the one list of event types


@router.get("/courses", response_model=Courses, summary="Courses, their sections and assignments, with counts")
def list_courses(
    course: Annotated[str | None, Query(max_length=64, description="Only this course")] = None,
    since: Since = None,
    until: Until = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="Assignments per page")] = 200,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    session: Session = Depends(get_session),
    reader: Reader = Depends(require_read),
):
    listing, next_offset = store.course_listing(
        session, course=course, since=since, until=until, limit=limit, offset=offset, grants=reader.grants
    )
    return {"courses": listing, "next_offset": next_offset}


@router.get(ASSIGNMENT + "/summary", response_model=AssignmentSummary, summary="An assignment at a glance")
def assignment_summary(
    request: Request,
    where: AssignmentOf,
    since: Since = None,
    until: Until = None,
    idle_gap_seconds: Annotated[
        int | None, Query(ge=1, le=86400, description="Gaps longer than this are breaks")
    ] = None,
    session: Session = Depends(get_session),
):
    idle = idle_gap_seconds or request.app.state.settings.idle_gap_seconds
    return store.summary(
        session, where.course, where.section, where.assignment, since=since, until=until, idle_gap_seconds=idle
    )


@router.get(
    ASSIGNMENT + "/students/{student_id}/timeline",
    response_model=Timeline,
    summary="A student's saves, deletes, compiles and runs in time order",
)
def student_timeline(
    where: AssignmentOf,
    student_id: StudentPath,
    since: Since = None,
    until: Until = None,
    type: Annotated[list[EventType] | None, Query(description="Only these event types (repeatable)")] = None,
    limit: Limit = 100,
    cursor: Cursor = None,
    session: Session = Depends(get_session),
):
    try:
        events, next_cursor = store.timeline(
            session,
            where.course,
            where.section,
            where.assignment,
            student_id,
            since=since,
            until=until,
            types=type,
            limit=limit,
            cursor=cursor,
        )
    except store.BadCursor as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from None
    diagnosis.attach(session, events)
    return {**where.ids(), "student_id": student_id, "events": events, "next_cursor": next_cursor}


DiagnosticKind = Literal["error", "warning", "note", "exception"]


@router.get(
    ASSIGNMENT + "/errors",
    response_model=ErrorClasses,
    summary="The most frequent compiler errors and Python exceptions of an assignment, and who hit them",
)
def assignment_errors(
    where: AssignmentOf,
    kind: Annotated[
        list[DiagnosticKind] | None,
        Query(description="Only these kinds (repeatable); default error and exception"),
    ] = None,
    since: Since = None,
    until: Until = None,
    limit: Annotated[int, Query(ge=1, le=500, description="Error classes to list")] = 20,
    session: Session = Depends(get_session),
):
    kinds = sorted(set(kind or ("error", "exception")))
    classes = diagnosis.top_classes(
        session, where.course, where.section, where.assignment, kinds=kinds, since=since, until=until, limit=limit
    )
    return {**where.ids(), "kinds": kinds, "classes": classes}


@router.get(
    ASSIGNMENT + "/measures",
    response_model=AssignmentMeasures,
    summary="Error Quotient, Repeated Error Density and Watwin of each student of an assignment",
)
def assignment_measures(where: AssignmentOf, session: Session = Depends(get_session)):
    students = diagnosis.assignment_measures(session, where.course, where.section, where.assignment)
    return {**where.ids(), "students": students}


@router.get(
    "/courses/{course}/sections/{section}/students/{student_id}/measures",
    response_model=StudentAssignmentsMeasures,
    summary="Error Quotient, Repeated Error Density and Watwin of one student in each assignment",
)
def student_measures(
    course: CoursePath,
    section: SectionPath,
    student_id: StudentPath,
    session: Session = Depends(get_session),
):
    assignments = diagnosis.student_measures(session, course, section, student_id)
    return {"course": course, "section": section, "student_id": student_id, "assignments": assignments}


@router.get("/status", response_model=Status, summary="Events stored by type and the agents that report")
def store_status(session: Session = Depends(get_session)):
    return store.status(session)
