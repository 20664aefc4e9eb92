"""Shared path and query parameters, validated with the identity rules (bad value -> 422 naming it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Path, Query

from watcher_core import identity, wire

CoursePath = Annotated[str, Path(pattern=rf"^{identity.COURSE_RE.pattern}$", description="Course code, e.g. os")]
SectionPath = Annotated[str, Path(pattern=rf"^{identity.SECTION_RE.pattern}$", description="Section, e.g. 1")]
StudentPath = Annotated[str, Path(pattern=rf"^{identity.STUDENT_ID_RE.pattern}$", description="Student id (string)")]
AssignmentPath = Annotated[
    str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", max_length=64, description="Assignment, e.g. hw1")
]
Sha256Path = Annotated[str, Path(pattern=r"^[0-9a-f]{64}$", description="sha256 of the content (lowercase hex)")]

Since = Annotated[wire.UtcTime | None, Query(description="Only events at or after this time (RFC 3339 with offset)")]
Until = Annotated[wire.UtcTime | None, Query(description="Only events before this time (RFC 3339 with offset)")]
Limit = Annotated[int, Query(ge=1, le=1000, description="Page size")]
Cursor = Annotated[str | None, Query(max_length=200, description="next_cursor from the previous page")]


@dataclass(frozen=True)
class Assignment:
    """One assignment, from the path: a dependency (`Annotated[Assignment, Depends()]`), so the routes under
    /courses/{course}/sections/{section}/assignments/{assignment} declare the three parameters once."""

    course: CoursePath
    section: SectionPath
    assignment: AssignmentPath

    def ids(self) -> dict[str, str]:
        """The three as a response echoes them."""
        return {"course": self.course, "section": self.section, "assignment": self.assignment}


AssignmentOf = Annotated[Assignment, Depends()]
