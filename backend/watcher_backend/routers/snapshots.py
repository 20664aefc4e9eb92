"""Snapshot content (by sha256), diffs, and a student's files with their saved versions (read scope).

A content is addressed by its sha256 alone, which names no course. So the content and diff routes take
the student whose save it is (``course``, ``section``, ``assignment``, ``student_id`` query parameters):
optional for a reader that sees every course, required for one limited to some courses or sections.
When given, the contents must be saves of that student (checked through the student index), so a
section-scoped reader cannot open another section's code by its hash."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import Response
from sqlmodel import Session

from watcher_core import identity, snapshots

from .. import audit, store
from ..auth import Reader, get_session, require_read
from ..diffing import decode_text, unified_diff
from ..params import AssignmentPath, CoursePath, Cursor, Limit, SectionPath, Sha256Path, Since, StudentPath, Until
from ..schemas import Diff, FileList, SnapshotList

router = APIRouter(prefix="/api/v1", tags=["snapshots"], dependencies=[Depends(require_read)])

STUDENT = "/courses/{course}/sections/{section}/assignments/{assignment}/students/{student_id}"
Sha256Query = Annotated[str, Query(pattern=r"^[0-9a-f]{64}$")]
OWNER_FIELDS = ("course", "section", "assignment", "student_id")
CourseQuery = Annotated[
    str | None, Query(pattern=rf"^{identity.COURSE_RE.pattern}$", description="Course of the student who saved it")
]
SectionQuery = Annotated[str | None, Query(pattern=rf"^{identity.SECTION_RE.pattern}$", description="Their section")]
AssignmentQuery = Annotated[
    str | None, Query(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", max_length=64, description="The assignment")
]
StudentQuery = Annotated[
    str | None, Query(pattern=rf"^{identity.STUDENT_ID_RE.pattern}$", description="The student who saved it")
]


def check_owner(
    session: Session, reader: Reader, sha256s: list[str], owner: dict[str, str | None]
) -> tuple[str, str, str, str] | None:
    """Whose saves these contents are, as the request says: None when it says nothing (only a reader of
    every course may ask so). 422 naming a missing field, 403 for a section the reader may not see, 404
    when the contents are not that student's saves."""
    given = [f for f in OWNER_FIELDS if owner[f] is not None]
    if not given:
        if reader.every_course:
            return None
        raise HTTPException(
            status_code=422,
            detail=f"course: {reader.name} reads only some courses, so give course, section, assignment and "
            "student_id of the student whose save this is",
        )
    missing = [f for f in OWNER_FIELDS if owner[f] is None]
    if missing:
        raise HTTPException(
            status_code=422, detail=f"{missing[0]}: give course, section, assignment and student_id together"
        )
    course, section, assignment, student_id = (str(owner[f]) for f in OWNER_FIELDS)
    reader.check(course, section)
    if not store.saved_by(session, sha256s, course, section, assignment, student_id):
        raise HTTPException(
            status_code=404,
            detail=f"not a save of student {student_id} in {course}/{section}/{assignment}: " + ", ".join(sha256s),
        )
    return course, section, assignment, student_id


def _route(request: Request) -> str:
    route = request.scope.get("route")
    return f"{request.method} {getattr(route, 'path', request.url.path)}"


def _content(request: Request, sha256: str) -> bytes:
    try:
        data = snapshots.read_snapshot(request.app.state.settings.snapshot_dir, sha256)
    except OSError as exc:  # unreadable store (permissions, a directory in the way, I/O error)
        raise HTTPException(status_code=503, detail=f"snapshot store unreadable: {exc.strerror or exc}") from None
    if data is None:
        raise HTTPException(status_code=404, detail=f"snapshot {sha256} is not in the snapshot store")
    return data


@router.get(
    "/snapshots/{sha256}",
    summary="The content of one snapshot",
    response_class=Response,
    responses={
        200: {"content": {"text/plain": {}, "application/octet-stream": {}}},
        404: {"description": "Not stored"},
    },
)
def get_snapshot(
    request: Request,
    sha256: Sha256Path,
    course: CourseQuery = None,
    section: SectionQuery = None,
    assignment: AssignmentQuery = None,
    student_id: StudentQuery = None,
    session: Session = Depends(get_session),
    reader: Reader = Depends(require_read),
):
    owner = {"course": course, "section": section, "assignment": assignment, "student_id": student_id}
    check_owner(session, reader, [sha256], owner)
    data = _content(request, sha256)
    audit.record(session, reader.name, _route(request), owner | {"sha256": sha256})
    _, binary = decode_text(data)
    media = "application/octet-stream" if binary else "text/plain; charset=utf-8"
    return Response(
        content=data,
        media_type=media,
        headers={"ETag": f'"{sha256}"', "Cache-Control": "private, max-age=86400, immutable"},
    )


@router.get("/diff", response_model=Diff, summary="Unified diff between two snapshots")
def get_diff(
    request: Request,
    from_sha256: Annotated[str, Query(alias="from", pattern=r"^[0-9a-f]{64}$", description="Older snapshot")],
    to_sha256: Annotated[str, Query(alias="to", pattern=r"^[0-9a-f]{64}$", description="Newer snapshot")],
    context: Annotated[int, Query(ge=0, le=100, description="Context lines")] = 3,
    course: CourseQuery = None,
    section: SectionQuery = None,
    assignment: AssignmentQuery = None,
    student_id: StudentQuery = None,
    session: Session = Depends(get_session),
    reader: Reader = Depends(require_read),
):
    owner = {"course": course, "section": section, "assignment": assignment, "student_id": student_id}
    check_owner(session, reader, [from_sha256, to_sha256], owner)
    old, new = _content(request, from_sha256), _content(request, to_sha256)
    audit.record(session, reader.name, _route(request), owner | {"sha256": from_sha256, "to_sha256": to_sha256})
    text, binary = unified_diff(old, new, from_sha256[:12], to_sha256[:12], context)
    return Diff(from_sha256=from_sha256, to_sha256=to_sha256, identical=(old == new), binary=binary, diff=text)


@router.get(STUDENT + "/files", response_model=FileList, summary="A student's files in an assignment, latest state")
def list_files(
    course: CoursePath,
    section: SectionPath,
    assignment: AssignmentPath,
    student_id: StudentPath,
    since: Since = None,
    until: Until = None,
    session: Session = Depends(get_session),
):
    files = store.file_list(session, course, section, assignment, student_id, since=since, until=until)
    return {"course": course, "section": section, "assignment": assignment, "student_id": student_id, "files": files}


@router.get(STUDENT + "/snapshots", response_model=SnapshotList, summary="The saved versions of one file, oldest first")
def list_snapshots(
    course: CoursePath,
    section: SectionPath,
    assignment: AssignmentPath,
    student_id: StudentPath,
    path: Annotated[
        str,
        Query(min_length=1, max_length=identity.MAX_PATH_LENGTH, description="File path relative to the assignment"),
    ],
    since: Since = None,
    until: Until = None,
    limit: Limit = 100,
    cursor: Cursor = None,
    session: Session = Depends(get_session),
):
    try:
        path = identity.check_relative_path(path)
    except identity.IdentityError as exc:
        raise HTTPException(status_code=422, detail=f"path: {exc}") from None
    try:
        items, next_cursor = store.file_snapshots(
            session, course, section, assignment, student_id, path, since=since, until=until, limit=limit, cursor=cursor
        )
    except store.BadCursor as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from None
    return {"path": path, "snapshots": items, "next_cursor": next_cursor}
