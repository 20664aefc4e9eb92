"""Bearer-token access control and the shared request dependencies.

Scopes: ``ingest`` (agents post events), ``read`` (dashboards, the platform, ``watcher status``) and
``admin`` (deleting a student's records; the admin token also grants ``read``). Tokens come from the
settings (``WATCHER_INGEST_TOKEN`` / ``WATCHER_READ_TOKEN`` / ``WATCHER_ADMIN_TOKEN`` or ``*_FILE``).
A scope whose token is not configured cannot be used at all. With ``auth_enabled=False``
(``--insecure-no-auth``, local development only) every request has every scope.

The old platform API's reads (``require_legacy_read``) also admit requests without a token from the
sources in ``WATCHER_LEGACY_READS_FROM``: the JCode platform backend cannot send one. Such a request gets
nothing but those GETs.

A notebook token (``nb1.…``, ``watcher_core.cell_tokens``, verified against ``WATCHER_NOTEBOOK_KEY``) is a
credential that lives in a student's pod: it may post ``notebook.cell`` events of the student it names and
nothing else (``require_ingest_or_notebook``; every other route answers 403 saying so).

Reads return a principal, ``Reader`` (``require_read``, ``require_admin``, ``require_legacy_read``): who
reads (``.name``), whether they are an admin (``.is_admin``) and which (course, section) pairs they may
see (``.allows(course, section)``, ``.grants``; ``None`` = every course). The environment tokens and the
platform's token-less legacy reads see every course. A read whose path names a course and section
(``/courses/{course}/sections/{section}/...``, the old API's ``{class_div}``) is refused with 403 before
its handler runs when the reader may not see that section; routes without one in the path filter by
``Reader.grants`` themselves (``store.readable``).

Named tokens (``wtk_…``, ``tokens.py``; ``watcher tokens``, ``/api/v1/admin/tokens``) grant ``read``
(limited to the courses and sections they name) or ``admin``, until they expire or are revoked: then a
401 says which. They are looked up in the database only when the token is none of the environment's.

Single sign-on (``sso_reader``): from a peer in ``WATCHER_SSO_TRUSTED_PROXIES`` (oauth2-proxy), a request
without a watcher token is the person ``X-Forwarded-User`` names, reading what ``X-Forwarded-Groups`` map
to in ``WATCHER_SSO_GROUPS`` (admins: ``WATCHER_SSO_ADMIN_GROUPS``). From any other peer those headers
are ignored.

Answers: no token or an unknown token -> 401 with ``WWW-Authenticate: Bearer``; a valid token without the
scope -> 403. Tokens are compared with ``hmac.compare_digest``.

Use in a router (the legacy router does the same)::

    from fastapi import APIRouter, Depends
    from sqlmodel import Session
    from watcher_backend.auth import Reader, get_session, require_read

    router = APIRouter(dependencies=[Depends(require_read)])  # a {course}/{section} path is checked here

    @router.get("/things")
    def things(session: Session = Depends(get_session), reader: Reader = Depends(require_read)):
        ...  # no section in the path: filter with store.readable(reader.grants, ...) or reader.check(...)

``get_session`` yields one SQLModel ``Session`` per request on the app's engine (``app.state.engine``).
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from fastapi import Depends, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.engine import Engine
from sqlmodel import Session

from watcher_core import cell_tokens, identity

from . import tokens
from .grants import Grant, merge
from .settings import SCOPES, Settings

__all__ = ["Grant", "Reader", "get_session", "require_admin", "require_read", "require_legacy_read", "require_scope"]

# auto_error=False: we answer 401 ourselves (FastAPI's default is 403 for a missing header).
bearer = HTTPBearer(auto_error=False, description="A token of scope ingest, read or admin")

# A token grants these scopes.
GRANTS = {"ingest": {"ingest"}, "read": {"read"}, "admin": {"admin", "read"}}


@dataclass(frozen=True, slots=True)
class Reader:
    """Who reads and what they may see. ``grants=None``: every course and section."""

    name: str
    is_admin: bool = False
    grants: tuple[Grant, ...] | None = None

    @property
    def every_course(self) -> bool:
        return self.grants is None

    def allows(self, course: str, section: str) -> bool:
        return self.grants is None or any(g.covers(course, section) for g in self.grants)

    def allows_course(self, course: str) -> bool:
        """Whether any section of ``course`` is visible (a course listing shows it, filtered)."""
        return self.grants is None or any(g.course == course for g in self.grants)

    def refuse(self, course: str, section: str) -> HTTPException:
        """The 403 for a read of a section this reader may not see; it names what the reader may see."""
        allowed = ", ".join(str(g) for g in self.grants or ()) or "nothing"
        return HTTPException(
            status_code=status.HTTP_403_FORBIDDEN,
            detail=f"{self.name} may not read course {course!r} section {section!r} (it may read: {allowed})",
        )

    def check(self, course: str, section: str) -> None:
        if not self.allows(course, section):
            raise self.refuse(course, section)


def get_session(request: Request) -> Iterator[Session]:
    """One database session per request; closed (and rolled back if uncommitted) afterwards."""
    with Session(request.app.state.engine) as session:
        yield session


def scopes_of(token: str | None, settings: Settings) -> set[str] | None:
    """The scopes a presented token grants, or None if it is not a known token."""
    if not settings.auth_enabled:
        return set(SCOPES)
    if not token:
        return None
    granted: set[str] = set()
    matched = False
    presented = token.encode()
    for scope, configured in settings.tokens.items():
        # compare against every configured token, so timing does not reveal which one matched
        if configured and hmac.compare_digest(presented, configured.encode()):
            granted |= GRANTS[scope]
            matched = True
    return granted if matched else None


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(
        status_code=status.HTTP_401_UNAUTHORIZED,
        detail=message,
        headers={"WWW-Authenticate": 'Bearer realm="watcher"'},
    )


NOTEBOOK_ONLY = "a notebook token may only post notebook.cell events of its own student (POST /api/v1/events)"


def notebook_student(token: str, settings: Settings) -> identity.Student | None:
    """The student a genuine notebook token names; None for any other token."""
    if not cell_tokens.looks_like(token):
        return None
    return cell_tokens.verify(settings.notebook_key, token)


def _check(
    scope: str,
    settings: Settings,
    credentials: HTTPAuthorizationCredentials | None,
    missing: str = "missing bearer token (Authorization: Bearer <token>)",
) -> set[str]:
    if not settings.auth_enabled:
        return set(SCOPES)
    if credentials is None:
        raise _unauthorized(missing)
    granted = scopes_of(credentials.credentials, settings)
    if granted is None:
        if tokens.looks_like(credentials.credentials) and scope == "ingest":
            raise _unauthorized("a named token (wtk_...) grants read or admin, never ingest")
        if notebook_student(credentials.credentials, settings) is not None:
            raise HTTPException(status_code=status.HTTP_403_FORBIDDEN, detail=NOTEBOOK_ONLY)
        if cell_tokens.looks_like(credentials.credentials):
            raise _unauthorized(
                "invalid notebook token"
                if settings.notebook_key
                else "notebook tokens are not accepted: WATCHER_NOTEBOOK_KEY is not set"
            )
        raise _unauthorized("invalid bearer token")
    if scope not in granted:
        raise HTTPException(status_code=status.HTTP_403_FORBIDDEN, detail=f"this token lacks the '{scope}' scope")
    return granted


def require_scope(scope: str):
    """A dependency that lets the request through only with a token granting ``scope``. The checks are
    coroutines: they only compare strings, and a plain function would cost every request a thread hand-off."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}")

    async def check(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> set[str]:
        return _check(scope, request.app.state.settings, credentials)

    check.__name__ = f"require_{scope}_scope"
    return check


async def require_ingest_or_notebook(
    request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)
) -> set[str] | identity.Student:
    """``POST /api/v1/events``: the ingest scope, or a notebook token (then only that student's cells)."""
    settings: Settings = request.app.state.settings
    if settings.auth_enabled and credentials is not None:
        student = notebook_student(credentials.credentials, settings)
        if student is not None:
            return student
    return _check("ingest", settings, credentials)


LEGACY_READ = "legacy-read"  # what a token-less platform request gets: the old API's GETs, nothing else


def peer_in(host: str | None, networks) -> bool:
    if not host or not networks:
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:  # a unix socket or a test client's name
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return any(address in network for network in networks)


def is_legacy_reader(host: str | None, settings: Settings) -> bool:
    return peer_in(host, settings.legacy_reads_from)


async def require_legacy_read(
    request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)
) -> Reader:
    """The old API's GETs: a ``read`` token, or no token at all from a ``WATCHER_LEGACY_READS_FROM`` source
    (the platform, which sees every course as it always did)."""
    settings: Settings = request.app.state.settings
    host = request.client.host if request.client else None
    if credentials is None and settings.auth_enabled and is_legacy_reader(host, settings):
        request.app.state.metrics.legacy_tokenless_reads.inc()
        return _reader({LEGACY_READ}, None, settings)
    if settings.legacy_reads_from:
        why = f"{host} is not in WATCHER_LEGACY_READS_FROM"
    else:
        why = "WATCHER_LEGACY_READS_FROM is not set"
    reader = await _principal(
        "read",
        request,
        credentials,
        missing=f"missing bearer token (Authorization: Bearer <token>); the old API is read without "
        f"one only from the platform's addresses, and {why}",
    )
    return _enforce_path(request, reader)


def _reader(granted: set[str], credentials: HTTPAuthorizationCredentials | None, settings: Settings) -> Reader:
    """The principal of a request that passed the environment-token check (every course)."""
    if not settings.auth_enabled:
        return Reader("insecure-no-auth", is_admin=True)
    if LEGACY_READ in granted:
        return Reader("platform (token-less legacy read)")
    admin = "admin" in granted
    return Reader("admin token" if admin else "read token", is_admin=admin)


def path_section(request: Request) -> tuple[str, str] | None:
    """The (course, section) a read's path names, or None. A malformed one is left to the route's own
    validation (a 422 naming the parameter)."""
    params = request.path_params
    course, section = params.get("course"), params.get("section")
    if isinstance(course, str) and isinstance(section, str):
        return course, section
    class_div = params.get("class_div")
    if isinstance(class_div, str):
        try:
            return identity.parse_class_div(class_div)
        except identity.IdentityError:
            return None
    return None


def _enforce_path(request: Request, reader: Reader) -> Reader:
    where = path_section(request)
    if where is not None:
        reader.check(*where)
    return reader


def _named(engine: Engine, token: str) -> tokens.Token | None:
    with Session(engine) as session:
        return tokens.lookup(session, token)


def _when(value: datetime | None) -> str:
    return value.isoformat().replace("+00:00", "Z") if value else "?"


def named_reader(found: tokens.Token | None, scope: str, now: datetime | None = None) -> Reader:
    """The principal of a named token, or the 401/403 that refuses it (saying why)."""
    if found is None:
        raise _unauthorized("invalid bearer token")
    state = found.state(now or datetime.now(UTC))
    if state == "revoked":
        raise _unauthorized(f"token {found.name!r} was revoked at {_when(found.revoked_at)}")
    if state == "expired":
        raise _unauthorized(f"token {found.name!r} expired at {_when(found.expires_at)}")
    granted = GRANTS[found.scope]
    if scope not in granted:
        raise HTTPException(
            status_code=status.HTTP_403_FORBIDDEN, detail=f"token {found.name!r} lacks the '{scope}' scope"
        )
    return Reader(f"token {found.name!r}", is_admin="admin" in granted, grants=found.grants)


MAX_GROUPS = 200  # a header from the trusted proxy, still bounded


def sso_reader(request: Request, settings: Settings) -> Reader | None:
    """The person the trusted reverse proxy signed in (``X-Forwarded-User``, ``-Email``, ``-Groups``), or
    None: single sign-on off, a peer that is not a trusted proxy (its headers are ignored), or no user."""
    if not settings.sso_trusted_proxies:
        return None
    if not peer_in(request.client.host if request.client else None, settings.sso_trusted_proxies):
        return None
    user = (request.headers.get("x-forwarded-user") or "").strip()[:256]
    if not user:
        return None
    email = (request.headers.get("x-forwarded-email") or "").strip()[:256]
    groups = {g.strip() for g in (request.headers.get("x-forwarded-groups") or "").split(",")[:MAX_GROUPS]} - {""}
    name = f"sso {user!r}" + (f" <{email}>" if email and email != user else "")
    if groups & set(settings.sso_admin_groups):
        return Reader(name, is_admin=True)
    mapped = [grant for group, grant in settings.sso_groups if group in groups]
    if not mapped:
        return Reader(name, grants=())  # signed in, reads nothing: every read is a 403 saying so
    return Reader(name, grants=merge(*((g,) if g is not None else None for g in mapped)))


async def _principal(
    scope: str, request: Request, credentials: HTTPAuthorizationCredentials | None, **check: str
) -> Reader:
    """The reader behind a request needing ``scope``: an environment token (no database), else a named
    token (one indexed lookup, in a worker thread: the event loop never waits on the database), else a
    person signed in by the trusted reverse proxy (whose own bearer, an OIDC token, means nothing here)."""
    settings: Settings = request.app.state.settings
    person = sso_reader(request, settings) if settings.auth_enabled else None
    if person is not None and (
        credentials is None
        or not (tokens.looks_like(credentials.credentials) or scopes_of(credentials.credentials, settings))
    ):
        if scope == "admin" and not person.is_admin:
            raise HTTPException(status_code=status.HTTP_403_FORBIDDEN, detail=f"{person.name} is not an admin")
        return person
    if (
        settings.auth_enabled
        and credentials is not None
        and tokens.looks_like(credentials.credentials)
        and scopes_of(credentials.credentials, settings) is None
    ):
        found = await run_in_threadpool(_named, request.app.state.engine, credentials.credentials)
        return named_reader(found, scope)
    granted = _check(scope, settings, credentials, **check)
    return _reader(granted, credentials, settings)


async def require_read(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> Reader:
    """A read: a token with the ``read`` scope. Returns the ``Reader``; a path naming a section the reader
    may not see is a 403 here. FastAPI caches it per request, so a handler that also asks for it
    (``reader: Reader = Depends(require_read)``) gets the same object without a second check."""
    return _enforce_path(request, await _principal("read", request, credentials))


async def require_admin(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> Reader:
    """Admin routes: a token with the ``admin`` scope (which sees every course)."""
    return await _principal("admin", request, credentials)
