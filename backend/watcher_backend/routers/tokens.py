"""Named tokens (admin scope): make one (its secret is in this answer only), list them, revoke one.
The same as ``watcher tokens create|list|revoke``; the rules are in ``tokens.py``."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from fastapi import APIRouter, Depends, HTTPException, Path
from sqlmodel import Session

from .. import tokens
from ..auth import Reader, get_session, require_admin
from ..schemas import TokenCreate, TokenCreated, TokenInfo, TokenList

log = logging.getLogger("watcher_backend.tokens")
router = APIRouter(prefix="/api/v1/admin/tokens", tags=["admin"], dependencies=[Depends(require_admin)])
TokenName = Path(pattern=rf"^{tokens.NAME_RE.pattern}$", description="The token's name")


def _field_error(exc: tokens.TokenError) -> HTTPException:
    return HTTPException(status_code=409 if isinstance(exc, tokens.Conflict) else 422, detail=str(exc))


@router.post("", response_model=TokenCreated, status_code=201, summary="Make a named token (its secret is shown once)")
def create_token(body: TokenCreate, session: Session = Depends(get_session), reader: Reader = Depends(require_admin)):
    now = datetime.now(UTC)
    if body.expires_at is not None and body.expires_in_days is not None:
        raise HTTPException(status_code=422, detail="expires_in_days: give expires_at or expires_in_days, not both")
    expires = body.expires_at
    if body.expires_in_days is not None:
        expires = now + timedelta(days=body.expires_in_days)
    try:
        made, secret = tokens.create(
            session, body.name, body.scope, body.courses, every_course=body.every_course, expires_at=expires, now=now
        )
    except tokens.TokenError as exc:
        raise _field_error(exc) from None
    log.info("%s made token %r (%s, courses %s)", reader.name, made.name, made.scope, made.as_dict(now)["courses"])
    return made.as_dict(now) | {"token": secret}


@router.get("", response_model=TokenList, summary="Every named token (never a secret)")
def list_tokens(session: Session = Depends(get_session)):
    now = datetime.now(UTC)
    return {"tokens": [t.as_dict(now) for t in tokens.list_tokens(session)]}


@router.delete("/{name}", response_model=TokenInfo, summary="Revoke a named token (at once; the row stays)")
def revoke_token(
    name: str = TokenName, session: Session = Depends(get_session), reader: Reader = Depends(require_admin)
):
    revoked = tokens.revoke(session, name)
    if revoked is None:
        raise HTTPException(status_code=404, detail=f"name: no token named {name!r}")
    log.info("%s revoked token %r", reader.name, name)
    return revoked.as_dict(datetime.now(UTC))
