"""Who may see what: the ``Reader`` principal and the store's filters for it, on a real SQLite file
(the HTTP side, every route with a section-scoped token, is in tests/security/test_access_routes.py)."""

from __future__ import annotations

import pytest
from sqlmodel import Session

from support.backend import wire_event
from watcher_backend import auth, db, migrate, rollups, store
from watcher_core import wire

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
