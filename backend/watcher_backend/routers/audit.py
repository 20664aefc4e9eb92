"""The read audit (admin scope): who read whose code, newest first, paged and filtered (``audit.py``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query
from sqlmodel import Session

from watcher_core import identity

from .. import audit
from ..auth import get_session, require_admin
from ..params import Cursor, Limit, Since, Until
from ..schemas import AuditPage

router = APIRouter(prefix="/api/v1/admin", tags=["admin"], dependencies=[Depends(require_admin)])


@router.get("/audit", response_model=AuditPage, summary="Who read whose code (contents, diffs, exports)")
def read_audit(
    reader: Annotated[str | None, Query(max_length=300, description="Exactly this reader's name")] = None,
    course: Annotated[str | None, Query(pattern=rf"^{identity.COURSE_RE.pattern}$")] = None,
    section: Annotated[str | None, Query(pattern=rf"^{identity.SECTION_RE.pattern}$")] = None,
    student_id: Annotated[str | None, Query(pattern=rf"^{identity.STUDENT_ID_RE.pattern}$")] = None,
    since: Since = None,
    until: Until = None,
    limit: Limit = 100,
    cursor: Cursor = None,
    session: Session = Depends(get_session),
):
    try:
        entries, next_cursor = audit.entries(
            session,
            reader=reader,
            course=course,
            section=section,
            student_id=student_id,
            since=since,
            until=until,
            limit=limit,
            cursor=cursor,
        )
    except audit.BadCursor as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from None
    return {"entries": entries, "next_cursor": next_cursor}
