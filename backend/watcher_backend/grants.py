"""What a reader may see: courses, or single sections of them. Pure (no database, no web framework):
named tokens (``tokens.py``), the single sign-on's group mapping (``settings.py``) and ``auth.Reader``
share it."""

from __future__ import annotations

from dataclasses import dataclass

from watcher_core import identity


class GrantError(ValueError):
    """Not a course or course/section."""


@dataclass(frozen=True, slots=True)
class Grant:
    """One course a reader may see: all of its sections (``section=None``) or just one."""

    course: str
    section: str | None = None

    def covers(self, course: str, section: str) -> bool:
        return self.course == course and (self.section is None or self.section == section)

    def __str__(self) -> str:
        return self.course if self.section is None else f"{self.course}/{self.section}"


def parse_grant(text: str) -> Grant:
    """``os`` (every section of os) or ``os/1`` (section 1 only)."""
    course, sep, section = text.strip().partition("/")
    if not identity.COURSE_RE.fullmatch(course):
        raise GrantError(f"{text!r} is not a course (letters, digits, '-', '_'), e.g. os or os/1")
    if sep and not identity.SECTION_RE.fullmatch(section):
        raise GrantError(f"{text!r}: the section after '/' is letters or digits, e.g. os/1")
    return Grant(course, section if sep else None)


def merge(*groups: tuple[Grant, ...] | None) -> tuple[Grant, ...] | None:
    """The grants of several sources together (a person in several groups); None (every course) wins."""
    out: dict[Grant, None] = {}
    for grants in groups:
        if grants is None:
            return None
        out.update(dict.fromkeys(grants))
    return tuple(out)
