"""Privacy operations (admin scope): erase one student's records; run the retention purge now."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from sqlmodel import Session

from watcher_core import identity

from .. import store
from ..auth import get_session, require_admin
from ..params import StudentPath
from ..schemas import Deleted, Purged

log = logging.getLogger("watcher_backend.admin")
router = APIRouter(prefix="/api/v1", tags=["admin"], dependencies=[Depends(require_admin)])

SNAPSHOT_NOTE = (
    "The student's snapshot contents are queued for removal: filemon removes from its store every one that "
    "no other event refers to, once it has not been saved for its grace period (WATCHER_SNAPSHOT_GC_GRACE_SECONDS, "
    "default one day). Contents shared with other students (starter code) stay."
)


@router.delete("/students/{student_id}", response_model=Deleted, summary="Erase every stored record of one student")
def delete_student(
    request: Request,
    student_id: StudentPath,
    course: Annotated[
        str | None, Query(pattern=rf"^{identity.COURSE_RE.pattern}$", description="Only this course")
    ] = None,
    section: Annotated[
        str | None, Query(pattern=rf"^{identity.SECTION_RE.pattern}$", description="Only this section")
    ] = None,
    session: Session = Depends(get_session),
):
    if section is not None and course is None:
        raise HTTPException(status_code=422, detail="section: give course too")
    deleted, queued = store.delete_student(session, student_id, course=course, section=section)
    request.app.state.metrics.students_deleted.inc(sum(deleted.values()))
    log.info(
        "erased student %s (course=%s section=%s): %s, %d snapshot contents queued for removal",
        student_id,
        course,
        section,
        deleted,
        queued,
    )
    return Deleted(
        student_id=student_id,
        course=course,
        section=section,
        deleted=deleted,
        contents_queued=queued,
        note=SNAPSHOT_NOTE,
    )


@router.post("/admin/retention", response_model=Purged, summary="Purge events older than the retention period now")
def run_retention(request: Request, session: Session = Depends(get_session)):
    days = request.app.state.settings.retention_days
    if days is None:
        raise HTTPException(status_code=409, detail="retention is off (set WATCHER_RETENTION_DAYS)")
    cutoff = store.retention_cutoff(days)
    purged = store.purge_older_than(session, cutoff)
    request.app.state.metrics.retention_purged.inc(purged)
    request.app.state.metrics.retention_runs.labels("ok").inc()
    return Purged(retention_days=days, cutoff=cutoff, purged=purged)
