"""Who read whose code: every snapshot content, diff and export served is a row of ``read_audit``
(who, when, which route, which student and file), readable by admins (``/api/v1/admin/audit``).

A handler calls ``record`` once it has decided to serve (after every check, before the bytes go out), in
its own short transaction: a refused request is not a read. Exports call it once per export, naming the
scope exported (an assignment: no student)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import store
from .models import AUDIT_TABLE as AUDIT

FIELDS = ("course", "section", "assignment", "student_id", "path", "sha256", "to_sha256")


def record(
    session: Session, reader: str, route: str, what: Mapping[str, str | None], now: datetime | None = None
) -> None:
    """One read: ``reader`` (the principal's name), ``route`` (method and path template) and what was
    read (``FIELDS``; None where the request did not say)."""
    unknown = set(what) - set(FIELDS)
    if unknown:
        raise TypeError(f"audit.record: unknown fields {sorted(unknown)}")
    values = {"at": now or datetime.now(UTC), "reader": reader[:300], "route": route[:200], **what}
    with store.write_lock(session):
        session.execute(AUDIT.insert().values(**values))
        session.commit()


class BadCursor(ValueError):
    pass


def entries(
    session: Session,
    *,
    reader: str | None = None,
    course: str | None = None,
    section: str | None = None,
    student_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 100,
    cursor: str | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """Newest first; ``cursor`` is the ``next_cursor`` of the page before (a row id: ids grow with time)."""
    q = select(AUDIT)
    for column, value in (("reader", reader), ("course", course), ("section", section), ("student_id", student_id)):
        if value is not None:
            q = q.where(AUDIT.c[column] == value)
    if since is not None:
        q = q.where(AUDIT.c.at >= since)
    if until is not None:
        q = q.where(AUDIT.c.at < until)
    if cursor is not None:
        if not cursor.isdigit() or len(cursor) > 19:
            raise BadCursor("cursor: not a cursor returned by this API")
        q = q.where(AUDIT.c.id < int(cursor))
    rows = [dict(r._mapping) for r in session.execute(q.order_by(AUDIT.c.id.desc()).limit(limit + 1))]
    next_cursor = str(rows[limit - 1]["id"]) if len(rows) > limit else None
    return rows[:limit], next_cursor
