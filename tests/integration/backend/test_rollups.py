"""The rollups kept at ingest answer exactly what the scans over every event answer.

A scripted class (two assignments, students saving, deleting, compiling, running, running notebook cells,
with repeated sizes, equal timestamps and long breaks) is stored in shuffled batches, out of time order and
with duplicates re-sent; after each step every rollup answer (assignment summary, course listing, the old
API's assignment statistics and build/run averages) is compared with the scan it replaces. SQLite here;
tests/system/backend runs this module again on PostgreSQL.
"""

import random
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import Session

from support.backend import run_backend, wire_event
from watcher_backend import db, migrate, rollups, store
from watcher_backend.legacy import adapter, stats
from watcher_core import wire

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
ASSIGNMENTS = (("os", "1", "hw1"), ("os", "1", "hw2"), ("ds", "2", "hw1"))
GAP = 300


def scripted_class(seed: int, n: int = 600) -> list[wire.Event]:
    rng = random.Random(seed)
    events = []
    clock = {}
    for _ in range(n):
        course, section, assignment = rng.choice(ASSIGNMENTS)
        student = f"2024{rng.randrange(6):05d}"
        key = (course, section, assignment, student)
        # mostly short steps, sometimes a break longer than the idle gap, sometimes the same instant
        step = rng.choice((0, 3, 17, 45, 120, 299, 301, 900, 5000)) + rng.randrange(1000) / 1000
        clock[key] = clock.get(key, T0 + timedelta(seconds=rng.randrange(3600))) + timedelta(seconds=step)
        kind = rng.choices(
            ("file.save", "file.delete", "file.too_large", "process.compile", "process.run", "notebook.cell"),
            weights=(10, 1, 1, 4, 3, 2),
        )[0]
        fields = dict(course=course, section=section, assignment=assignment, student_id=student)
        fields["timestamp"] = clock[key]
        if kind.startswith("file."):
            fields["path"] = rng.choice(("main.c", "lib/util.c", "util.h"))
        if kind == "file.save":
            fields["size"] = rng.choice((0, 10, 10, 120, 512, 4096, rng.randrange(10_000)))
        elif kind == "file.too_large":
            fields["size"] = 2_000_000 + rng.randrange(3)
        elif kind in ("process.compile", "process.run"):
            fields["exit_code"] = rng.choice((0, 0, 1, 2))
            if kind == "process.run" and rng.random() < 0.2:
                fields["exit_code"], fields["signal"] = None, 11
        elif kind == "notebook.cell" and rng.random() < 0.3:
            fields["error"] = "ZeroDivisionError"
        events.append(wire.parse_event(wire_event(kind, **fields)))
    return events


@pytest.fixture
def session(database_url):
    engine = db.make_engine(database_url)
    migrate.upgrade(engine)
    with Session(engine) as s:
        yield s
    engine.dispose()


def without_active(summary):
    rows = [{k: v for k, v in r.items() if k != "active_seconds"} for r in summary["per_student"]]
    return {k: v for k, v in summary.items() if k not in ("active_seconds", "per_student")} | {"per_student": rows}


def assert_rollups_match_scans(session: Session) -> None:
    assert rollups.usable(session, GAP, None, None)
    for course, section, assignment in ASSIGNMENTS:
        fast = store.summary(session, course, section, assignment, idle_gap_seconds=GAP)
        slow = store.summary_scan(session, course, section, assignment, idle_gap_seconds=GAP)
        assert without_active(fast) == without_active(slow)
        # SQLite's scan measures gaps in julianday doubles (about 40 us per gap); the rollups add exact
        # microseconds. PostgreSQL's scan is exact too.
        for a, b in zip(fast["per_student"], slow["per_student"]):
            assert a["active_seconds"] == pytest.approx(b["active_seconds"], abs=0.02), a["student_id"]
        assert fast["active_seconds"] > 0

        scope = adapter.Scope(course, section, assignment)
        sizes, students = rollups.snapshot_aggregates(session, course, section, assignment)
        from_rollups = stats.assignment_stats_from(sizes, [stats.StudentSnaps(*s) for s in students])
        assert from_rollups == stats.assignment_stats(adapter.snaps(session, scope))
        for types in (adapter.BUILD_TYPES, adapter.RUN_TYPES):
            assert rollups.type_counts(session, course, section, assignment, types) == adapter.log_counts(
                session, scope, types
            )
    for course in (None, "os"):
        listing = store.course_listing(session, course=course, limit=2)
        far = datetime(2000, 1, 1, tzinfo=UTC)  # a window that covers everything forces the scan
        assert listing == store.course_listing(session, course=course, limit=2, since=far)
        assert listing[0], listing


def test_rollups_kept_at_ingest_equal_the_scans_under_shuffled_batches_and_duplicates(session):
    rollups.ensure_built(session, GAP)  # an empty database: built at once, then kept by every ingest
    rng = random.Random(1)
    events = scripted_class(seed=2)
    rng.shuffle(events)  # out of time order, like two agents' outboxes draining after an outage
    for start in range(0, len(events), 37):
        batch = events[start : start + 37] + rng.sample(events[:start], min(start, 5))  # some sent again
        store.ingest(session, batch)
    assert_rollups_match_scans(session)


def test_a_rebuild_from_the_events_equals_the_rollups_kept_at_ingest(session):
    events = scripted_class(seed=3)
    store.ingest(session, events[:300])  # stored before the rollups exist (an upgrade): not counted yet
    assert rollups.built_gap(session) is None
    assert rollups.ensure_built(session, GAP) is True
    store.ingest(session, events[300:])
    assert_rollups_match_scans(session)
    kept = store.summary(session, "os", "1", "hw1", idle_gap_seconds=GAP)
    rollups.rebuild(session, GAP)
    assert store.summary(session, "os", "1", "hw1", idle_gap_seconds=GAP) == kept


def test_erasing_a_student_and_the_retention_purge_keep_the_rollups_exact(session):
    rollups.ensure_built(session, GAP)
    events = scripted_class(seed=4)
    store.ingest(session, events)
    store.delete_student(session, "202400001")
    store.delete_student(session, "202400002", course="os", section="1")
    assert_rollups_match_scans(session)
    assert "202400001" not in [s["student_id"] for s in store.summary(session, "os", "1", "hw1")["per_student"]]
    store.purge_older_than(session, T0 + timedelta(hours=3), chunk=50)
    assert_rollups_match_scans(session)


def test_another_idle_gap_or_a_window_is_answered_by_the_scan(session):
    rollups.ensure_built(session, GAP)
    store.ingest(session, scripted_class(seed=5, n=200))
    assert not rollups.usable(session, 60, None, None)
    assert not rollups.usable(session, GAP, T0, None)
    other = store.summary(session, "os", "1", "hw1", idle_gap_seconds=60)
    assert other == store.summary_scan(session, "os", "1", "hw1", idle_gap_seconds=60)
    assert other["active_seconds"] < store.summary(session, "os", "1", "hw1", idle_gap_seconds=GAP)["active_seconds"]
    # a changed setting rebuilds them for the new gap
    assert rollups.ensure_built(session, 60) is True
    assert rollups.built_gap(session) == 60
    assert rollups.ensure_built(session, 60) is False


def test_the_backend_builds_missing_rollups_at_start_up_and_says_so(tmp_path, database_url):
    engine = db.make_engine(database_url)
    migrate.upgrade(engine)
    with Session(engine) as s:
        store.ingest(s, scripted_class(seed=6, n=120))  # an upgraded database: events, no rollups
        expected = store.summary_scan(s, "os", "1", "hw1", idle_gap_seconds=GAP)
    engine.dispose()
    with run_backend(tmp_path / "b", database_url=database_url) as backend:
        with backend.client("read") as http:
            got = http.get("/api/v1/courses/os/sections/1/assignments/hw1/summary").json()
        log = backend.logs()
    assert "Rollups not built yet: rebuilding them from 120 events for WATCHER_IDLE_GAP_SECONDS=300" in log
    assert "Rollups built in" in log
    assert got["students"] == expected["students"] and got["events"] == expected["events"]
    assert got["compiles"] == expected["compiles"] and got["code_size"] == expected["code_size"]
    assert got["active_seconds"] == pytest.approx(expected["active_seconds"], abs=0.1)


def test_saves_of_one_file_at_the_same_instant_keep_the_one_stored_last(session):
    rollups.ensure_built(session, GAP)
    same = dict(course="os", section="1", assignment="hw1", student_id="202400009", timestamp=T0, path="a.c")
    first, second, third = (wire.parse_event(wire_event("file.save", **same, size=n)) for n in (100, 200, 300))
    store.ingest(session, [first])
    store.ingest(session, [second, third])
    summary = store.summary(session, "os", "1", "hw1", idle_gap_seconds=GAP)
    # the one stored last: the last sent on SQLite; on PostgreSQL a batch is inserted in event_id order
    assert summary["code_size"] == (
        300 if session.get_bind().dialect.name == "sqlite" else max((second, third), key=lambda ev: ev.event_id).size
    )
    assert without_active(summary) == without_active(store.summary_scan(session, "os", "1", "hw1"))
