"""Named tokens: read or admin tokens with a name, an expiry and, for reads, the courses and sections
they may see (a teaching assistant's token sees one section). ``watcher tokens`` and
``/api/v1/admin/tokens`` manage them; ``auth.py`` checks them.

A token is ``wtk_`` and 43 characters of ``secrets.token_urlsafe(32)`` (256 random bits). Only its sha256
is stored, so a copy of the database opens nothing; the secret is shown once, when it is made. A request's
token is found by its sha256 (a unique index): a lookup by the digest of a 256-bit secret tells a timing
observer nothing about any stored secret, and the digests are compared again with
``hmac.compare_digest``. The environment tokens are checked first and work as before.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from . import store
from .grants import Grant, GrantError, parse_grant
from .models import TOKEN_TABLE as TOKEN

PREFIX = "wtk_"
SCOPES = ("read", "admin")
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
# last_used_at is written at most this often per token: a read must not cost a write each time.
LAST_USED_RESOLUTION = timedelta(minutes=1)


class TokenError(ValueError):
    """Bad input for a token (the message starts with the field it is about)."""


class Conflict(TokenError):
    """A token of that name exists (revoked ones too: names are never reused)."""


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def looks_like(token: str) -> bool:
    return token.startswith(PREFIX)


@dataclass(frozen=True, slots=True)
class Token:
    """A stored token as shown (never the secret)."""

    name: str
    scope: str
    grants: tuple[Grant, ...] | None
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None

    def state(self, now: datetime) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"

    def as_dict(self, now: datetime) -> dict[str, Any]:
        return {
            "name": self.name,
            "scope": self.scope,
            "courses": None if self.grants is None else [str(g) for g in self.grants],
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "last_used_at": self.last_used_at,
            "revoked_at": self.revoked_at,
            "state": self.state(now),
        }


def _token(row: Any) -> Token:
    m = row._mapping
    grants = None if m["grants"] is None else tuple(parse_grant(g) for g in json.loads(m["grants"]))
    return Token(m["name"], m["scope"], grants, m["created_at"], m["expires_at"], m["last_used_at"], m["revoked_at"])


def _columns():
    return (
        TOKEN.c.name,
        TOKEN.c.scope,
        TOKEN.c.grants,
        TOKEN.c.created_at,
        TOKEN.c.expires_at,
        TOKEN.c.last_used_at,
        TOKEN.c.revoked_at,
    )


def check_request(
    name: str,
    scope: str,
    courses: list[str] | tuple[str, ...],
    every_course: bool,
    expires_at: datetime | None,
    now: datetime,
) -> tuple[Grant, ...] | None:
    """The grants of a token to be made, or TokenError naming the field. A read token names its courses
    (or says every course, explicitly); an admin token sees every course and names none."""
    if not NAME_RE.fullmatch(name):
        raise TokenError(
            f"name: {name!r} must be 1-64 letters, digits, '_', '.', '@' or '-', starting with one of the first two"
        )
    if scope not in SCOPES:
        raise TokenError(f"scope: {scope!r} is not one of {', '.join(SCOPES)}")
    if expires_at is not None and expires_at.year >= 9999:  # UTC of 9999-12-31T23:00-14:00 is year 10000
        raise TokenError(f"expires_at: {expires_at.isoformat()} is too far away (before 9999, or none: never)")
    if expires_at is not None and expires_at <= now:
        raise TokenError(f"expires_at: {expires_at.isoformat()} is not in the future")
    if scope == "admin":
        if courses:
            raise TokenError("courses: an admin token sees every course; give no courses")
        return None
    if every_course and courses:
        raise TokenError("courses: give courses or every_course, not both")
    if every_course:
        return None
    if not courses:
        raise TokenError("courses: a read token names the courses (os) or sections (os/1) it may read, or every_course")
    try:
        return tuple(dict.fromkeys(parse_grant(c) for c in courses))  # in order, without repeats
    except GrantError as exc:
        raise TokenError(f"courses: {exc}") from None


def create(
    session: Session,
    name: str,
    scope: str,
    courses: list[str] | tuple[str, ...] = (),
    *,
    every_course: bool = False,
    expires_at: datetime | None = None,
    now: datetime | None = None,
) -> tuple[Token, str]:
    """Make a token; returns it and its secret (shown once, never stored)."""
    now = now or datetime.now(UTC)
    grants = check_request(name, scope, courses, every_course, expires_at, now)
    secret = PREFIX + secrets.token_urlsafe(32)
    values = {
        "name": name,
        "token_sha256": digest(secret),
        "scope": scope,
        "grants": None if grants is None else json.dumps([str(g) for g in grants]),
        "created_at": now,
        "expires_at": expires_at,
    }
    try:
        with store.write_lock(session):
            session.execute(TOKEN.insert().values(**values))
            session.commit()
    except IntegrityError:
        session.rollback()
        raise Conflict(f"name: a token named {name!r} exists (names of revoked tokens are not reused)") from None
    return Token(name, scope, grants, now, expires_at, None, None), secret


def list_tokens(session: Session) -> list[Token]:
    return [_token(r) for r in session.execute(select(*_columns()).order_by(TOKEN.c.created_at, TOKEN.c.id))]


def get(session: Session, name: str) -> Token | None:
    row = session.execute(select(*_columns()).where(TOKEN.c.name == name)).first()
    return None if row is None else _token(row)


def revoke(session: Session, name: str, now: datetime | None = None) -> Token | None:
    """Revoke a token (again: no change, its first revocation time stays). None: no such token."""
    now = now or datetime.now(UTC)
    with store.write_lock(session):
        session.execute(update(TOKEN).where(TOKEN.c.name == name, TOKEN.c.revoked_at.is_(None)).values(revoked_at=now))
        session.commit()
    return get(session, name)


def lookup(session: Session, token: str, now: datetime | None = None) -> Token | None:
    """The stored token a presented secret is, or None; notes when it was used (at most once a minute)."""
    wanted = digest(token)
    row = session.execute(select(TOKEN.c.token_sha256, *_columns()).where(TOKEN.c.token_sha256 == wanted)).first()
    if row is None or not hmac.compare_digest(row.token_sha256, wanted):
        return None
    found = _token(row)
    now = now or datetime.now(UTC)
    if found.state(now) == "active" and (
        found.last_used_at is None or now - found.last_used_at >= LAST_USED_RESOLUTION
    ):
        with store.write_lock(session):
            session.execute(update(TOKEN).where(TOKEN.c.name == found.name).values(last_used_at=now))
            session.commit()
        found = replace(found, last_used_at=now)
    return found
