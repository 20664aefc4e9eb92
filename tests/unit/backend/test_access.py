"""Who may see what: the ``Reader`` principal and the store's filters for it, on a real SQLite file
(the HTTP side, every route with a section-scoped token, is in tests/security/test_access_routes.py)."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import select
from sqlmodel import Session

from support.backend import wire_event
from watcher_backend import auth, db, grants, migrate, rollups, settings, store, tokens
from watcher_backend.models import TOKEN_TABLE
from watcher_core import wire
from watcher_core.settings_spec import SettingsError

TA = auth.Reader("token ta-os-1", grants=(auth.Grant("os", "1"),))
PROF = auth.Reader("token prof-os", grants=(auth.Grant("os"),))
NOBODY = auth.Reader("token empty", grants=())
EVERYONE = auth.Reader("read token")


def test_a_section_grant_covers_only_that_section():
    assert TA.allows("os", "1")
    assert not TA.allows("os", "2") and not TA.allows("db", "1")
    assert TA.allows_course("os") and not TA.allows_course("db")
    assert not TA.every_course


def test_a_course_grant_covers_every_section_of_it():
    assert PROF.allows("os", "1") and PROF.allows("os", "9")
    assert not PROF.allows("osx", "1")  # a course name, not a prefix


def test_environment_readers_see_everything_and_no_grants_see_nothing():
    assert EVERYONE.every_course and EVERYONE.allows("any", "1")
    assert not NOBODY.allows("os", "1") and not NOBODY.allows_course("os")


def test_the_refusal_names_the_section_and_what_the_reader_may_see():
    with pytest.raises(auth.HTTPException) as err:
        TA.check("os", "2")
    assert err.value.status_code == 403
    assert "'os' section '2'" in err.value.detail and "may read: os/1" in err.value.detail


@pytest.fixture
def session(tmp_path):
    engine = db.make_engine(f"sqlite:///{tmp_path / 'a.db'}")
    migrate.upgrade(engine)
    events = [
        wire_event("file.save", course="os", section="1", sha256="a" * 64),
        wire_event("file.save", course="os", section="2", student_id="202400002", sha256="b" * 64),
        wire_event("file.save", course="db", section="1", student_id="202400003", sha256="c" * 64),
    ]
    with Session(engine) as s:
        store.ingest(s, [wire.parse_event(e) for e in events])
        yield s
    engine.dispose()


def _sections(listing):
    return sorted((c["course"], s["section"]) for c in listing for s in c["sections"])


@pytest.mark.parametrize("rollups_built", [False, True])
def test_the_course_listing_shows_only_granted_sections(session, rollups_built):
    if rollups_built:  # the listing reads the rollups then; the filter must apply there too
        rollups.ensure_built(session, 300)
    assert _sections(store.course_listing(session, grants=TA.grants)[0]) == [("os", "1")]
    assert _sections(store.course_listing(session, grants=PROF.grants)[0]) == [("os", "1"), ("os", "2")]
    assert _sections(store.course_listing(session, grants=NOBODY.grants)[0]) == []
    assert len(_sections(store.course_listing(session, grants=None)[0])) == 3


def test_saved_by_checks_every_content_against_the_student(session):
    assert store.saved_by(session, ["a" * 64], "os", "1", "hw1", "202400001")
    assert not store.saved_by(session, ["a" * 64, "b" * 64], "os", "1", "hw1", "202400001")
    assert not store.saved_by(session, ["b" * 64], "os", "1", "hw1", "202400001")
    assert store.saved_by(session, ["b" * 64], "os", "2", "hw1", "202400002")


# ------------------------------------------------------------------------------------------ named tokens


def test_grants_parse_from_course_or_course_slash_section():
    assert grants.parse_grant("os") == auth.Grant("os")
    assert grants.parse_grant(" os/1 ") == auth.Grant("os", "1")
    for bad in ("os/", "o s", "os/1/2", "../x", ""):
        with pytest.raises(grants.GrantError, match="e.g."):
            grants.parse_grant(bad)


NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"name": "bad name"}, "name"),
        ({"scope": "ingest"}, "scope"),
        ({"courses": ()}, "courses"),  # a read token names what it reads
        ({"courses": ("os",), "every_course": True}, "courses"),
        ({"scope": "admin", "courses": ("os",)}, "courses"),
        ({"expires_at": NOW}, "expires_at"),
        ({"expires_at": datetime(9999, 12, 31, 23, 0, tzinfo=timezone(timedelta(hours=-14)))}, "expires_at"),
    ],
)
def test_a_bad_token_request_names_the_field(kwargs, field):
    request = {"name": "ta", "scope": "read", "courses": ("os/1",), "every_course": False, "expires_at": None}
    with pytest.raises(tokens.TokenError, match=f"^{field}:"):
        tokens.check_request(**(request | kwargs), now=NOW)


def test_only_the_digest_is_stored_and_the_secret_finds_the_token(session):
    made, secret = tokens.create(session, "ta-os-1", "read", ["os/1", "os/1"], now=NOW)
    assert secret.startswith("wtk_") and len(secret) > 40
    assert made.grants == (auth.Grant("os", "1"),)  # repeats dropped
    stored = session.execute(select(TOKEN_TABLE)).one()._mapping
    assert secret not in {str(v) for v in stored.values()}
    assert stored["token_sha256"] == hashlib.sha256(secret.encode()).hexdigest()
    found = tokens.lookup(session, secret, now=NOW)
    assert found is not None and found.name == "ta-os-1" and found.last_used_at == NOW
    assert tokens.lookup(session, secret[:-1] + ("A" if secret[-1] != "A" else "B"), now=NOW) is None


def test_last_used_is_written_at_most_once_a_minute(session):
    _, secret = tokens.create(session, "ta", "read", ["os"], now=NOW)
    tokens.lookup(session, secret, now=NOW)
    assert tokens.lookup(session, secret, now=NOW + timedelta(seconds=59)).last_used_at == NOW
    later = NOW + timedelta(minutes=1)
    assert tokens.lookup(session, secret, now=later).last_used_at == later


def test_names_are_never_reused_and_revoking_keeps_the_first_time(session):
    tokens.create(session, "ta", "read", ["os"], now=NOW)
    tokens.revoke(session, "ta", NOW)
    with pytest.raises(tokens.Conflict, match="^name:"):
        tokens.create(session, "ta", "read", ["os"], now=NOW)
    again = tokens.revoke(session, "ta", NOW + timedelta(hours=1))
    assert again is not None and again.revoked_at == NOW and again.state(NOW) == "revoked"
    assert tokens.revoke(session, "nobody", NOW) is None


def test_a_named_token_is_refused_saying_why(session):
    _, secret = tokens.create(session, "ta", "read", ["os/1"], expires_at=NOW + timedelta(days=1), now=NOW)
    found = tokens.lookup(session, secret, now=NOW)
    reader = auth.named_reader(found, "read", now=NOW)
    assert reader.name == "token 'ta'" and reader.grants == (auth.Grant("os", "1"),) and not reader.is_admin
    with pytest.raises(auth.HTTPException) as err:
        auth.named_reader(found, "admin", now=NOW)
    assert err.value.status_code == 403 and "lacks the 'admin' scope" in err.value.detail
    with pytest.raises(auth.HTTPException) as err:
        auth.named_reader(found, "read", now=NOW + timedelta(days=1))
    assert err.value.status_code == 401 and err.value.detail == "token 'ta' expired at 2026-12-08T12:00:00Z"
    revoked = tokens.revoke(session, "ta", NOW)
    with pytest.raises(auth.HTTPException) as err:
        auth.named_reader(revoked, "read", now=NOW)
    assert err.value.status_code == 401 and err.value.detail == "token 'ta' was revoked at 2026-12-07T12:00:00Z"


def test_an_admin_token_sees_every_course(session):
    made, secret = tokens.create(session, "ops", "admin", now=NOW)
    reader = auth.named_reader(tokens.lookup(session, secret, now=NOW), "read", now=NOW)
    assert made.grants is None and reader.every_course and reader.is_admin


# -------------------------------------------------------------------------------------- single sign-on


def test_the_group_map_reads_group_equals_course_or_section_or_star():
    parsed = settings.group_map("/os-ta-1=os/1, os-prof=os ,a=b=db,ops=*")
    assert parsed == (
        ("/os-ta-1", auth.Grant("os", "1")),
        ("os-prof", auth.Grant("os")),
        ("a=b", auth.Grant("db")),
        ("ops", None),
    )
    for bad in ("os/1", "=os", "ta=os/1/2", "ta=o s"):
        with pytest.raises(ValueError, match=re.escape(repr(bad))):
            settings.group_map(bad)


def test_sso_settings_must_come_together():
    base = {"WATCHER_READ_TOKEN": "r" * 20}
    with pytest.raises(SettingsError, match="^WATCHER_SSO_TRUSTED_PROXIES"):
        settings.from_env(base | {"WATCHER_SSO_GROUPS": "ta=os/1"}).validate()
    with pytest.raises(SettingsError, match="^WATCHER_SSO_GROUPS"):
        settings.from_env(base | {"WATCHER_SSO_TRUSTED_PROXIES": "10.0.0.0/8"}).validate()
    with pytest.raises(SettingsError, match="WATCHER_SSO_GROUPS.*'nonsense'"):
        settings.from_env(base | {"WATCHER_SSO_GROUPS": "nonsense"})
    ok = settings.from_env(base | {"WATCHER_SSO_TRUSTED_PROXIES": "10.0.0.0/8", "WATCHER_SSO_ADMIN_GROUPS": "ops"})
    assert ok.validate().sso_admin_groups == ("ops",)


def test_several_groups_add_up_and_every_course_wins():
    assert grants.merge((auth.Grant("os", "1"),), (auth.Grant("os", "2"), auth.Grant("os", "1"))) == (
        auth.Grant("os", "1"),
        auth.Grant("os", "2"),
    )
    assert grants.merge((auth.Grant("os", "1"),), None) is None
