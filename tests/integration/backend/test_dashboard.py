"""The dashboard's data: activity per hour and the flags (failing-compile streaks, the largest growth of one
save) kept at ingest equal what the events say, a rebuild gives the same, revision 0010 backfills them, and
the JSON routes, the export and the pages answer over real HTTP.
"""

import io
import json
import random
import zipfile
from collections import Counter
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import select, text
from sqlmodel import Session

from support.backend import run_backend, wire_event
from watcher_backend import dashboard, db, migrate, rollups, store
from watcher_backend.models import ACTIVITY_HOUR_TABLE, HOUR_COUNTERS, STUDENT_ROLLUP_TABLE
from watcher_core import wire

T0 = datetime(2026, 3, 2, 14, 30, tzinfo=UTC)  # 23:30 in Seoul: the day boundary falls inside the class
GAP = 300
STUDENTS = [f"2024{i:05d}" for i in range(5)]


def scripted_students(seed: int, n: int = 400) -> list[wire.Event]:
    """Students of os/1/hw1 saving two files (sometimes a big jump), deleting, compiling (failing streaks)
    and running, in time order, over about a day."""
    rng = random.Random(seed)
    clock = {s: T0 + timedelta(minutes=rng.randrange(60)) for s in STUDENTS}
    size = {}
    events = []
    for _ in range(n):
        student = rng.choice(STUDENTS)
        clock[student] += timedelta(seconds=rng.choice((5, 40, 200, 1800, 4000)))
        kind = rng.choices(("file.save", "file.delete", "process.compile", "process.run"), weights=(8, 1, 4, 2))[0]
        fields = dict(course="os", section="1", assignment="hw1", student_id=student, timestamp=clock[student])
        if kind.startswith("file."):
            path = rng.choice(("main.c", "util.c"))
            fields["path"] = path
            if kind == "file.save":
                grown = size.get((student, path), 0) + rng.choice((-30, 10, 40, 120, 2500))
                size[(student, path)] = max(0, grown)
                fields["size"] = size[(student, path)]
            else:
                size[(student, path)] = 0
        elif kind == "process.compile":
            fields["exit_code"] = rng.choice((0, 1, 1, 1))
        else:
            fields["exit_code"] = rng.choice((0, 1))
        events.append(wire.parse_event(wire_event(kind, **fields)))
    return events


def expected(events: list[wire.Event]) -> tuple[dict, dict]:
    """The flags and the hours straight from the events (the oracle the rollups must equal)."""
    hours: dict[tuple[str, datetime], Counter] = {}
    flags = {}
    for student in STUDENTS:
        mine = sorted((e for e in events if e.student_id == student), key=lambda e: e.timestamp)
        streak = longest = growth = 0
        sizes: dict[str, int] = {}
        for e in mine:
            bucket = hours.setdefault((student, rollups.hour_of(e.timestamp)), Counter())
            ok = wire.succeeded_from(e.type, e.__dict__)
            bucket["events"] += 1
            bucket["saves"] += e.type == wire.FILE_SAVE
            bucket["compiles"] += e.type == wire.PROCESS_COMPILE
            bucket["compile_successes"] += e.type == wire.PROCESS_COMPILE and bool(ok)
            bucket["runs"] += e.type == wire.PROCESS_RUN
            if e.type == wire.PROCESS_COMPILE:
                streak = 0 if ok else streak + 1
                longest = max(longest, streak)
            elif e.type == wire.FILE_DELETE:
                sizes[e.path] = 0
            elif e.type == wire.FILE_SAVE:
                growth = max(growth, e.size - sizes.get(e.path, 0))
                sizes[e.path] = e.size
        flags[student] = (streak, longest, growth)
    return flags, {k: {n: v[n] for n in HOUR_COUNTERS} for k, v in hours.items()}


def stored(session: Session) -> tuple[dict, dict]:
    r = STUDENT_ROLLUP_TABLE.c
    flags = {
        row.student_id: (row.fail_streak, row.max_fail_streak, row.max_growth)
        for row in session.execute(select(r.student_id, r.fail_streak, r.max_fail_streak, r.max_growth))
    }
    hours = {
        (row.student_id, row.hour): {n: row._mapping[n] for n in HOUR_COUNTERS}
        for row in session.execute(select(ACTIVITY_HOUR_TABLE))
    }
    return flags, hours


@pytest.fixture
def session(database_url):
    engine = db.make_engine(database_url)
    migrate.upgrade(engine)
    with Session(engine) as s:
        yield s
    engine.dispose()


def test_flags_and_hours_kept_at_ingest_equal_the_events_and_a_rebuild(session):
    rollups.ensure_built(session, GAP)
    events = scripted_students(seed=1)
    for start in range(0, len(events), 23):  # batches in arrival (= time) order, some resent
        store.ingest(session, events[start : start + 23] + events[max(0, start - 3) : start])
    want = expected(events)
    assert want[0] and any(growth >= 2500 for _, _, growth in want[0].values())
    assert stored(session) == want
    rollups.rebuild(session, GAP)
    assert stored(session) == want


def test_erasing_a_student_takes_their_hours_and_flags_too(session):
    rollups.ensure_built(session, GAP)
    events = scripted_students(seed=2)
    store.ingest(session, events)
    store.delete_student(session, STUDENTS[0])
    flags, hours = stored(session)
    assert STUDENTS[0] not in flags and not [k for k in hours if k[0] == STUDENTS[0]]
    rest = [e for e in events if e.student_id != STUDENTS[0]]
    want_flags, want_hours = expected(rest)
    want_flags.pop(STUDENTS[0])
    assert (flags, hours) == (want_flags, want_hours)


def test_revision_0010_backfills_by_rebuilding_from_the_events(database_url):
    engine = db.make_engine(database_url)
    migrate.upgrade(engine, "0009")
    events = scripted_students(seed=3, n=120)
    with Session(engine) as s:
        store.ingest(s, events)  # rollups not built: events only
        s.execute(text("INSERT INTO rollup_state (id, idle_gap_seconds, built_at) VALUES (1, 300, '2026-01-01')"))
        s.commit()
    migrate.upgrade(engine)
    with Session(engine) as s:
        assert rollups.built_gap(s) is None  # forgotten: the next start rebuilds everything
        assert rollups.ensure_built(s, GAP) is True
        assert stored(s) == expected(events)
    engine.dispose()


def test_the_course_view_counts_days_in_the_platform_zone(session):
    rollups.ensure_built(session, GAP)
    late = dict(course="os", section="1", assignment="hw1", student_id="1")
    store.ingest(
        session,
        [
            wire.parse_event(wire_event("file.save", **late, timestamp=datetime(2026, 3, 2, 14, 59, tzinfo=UTC))),
            wire.parse_event(wire_event("file.save", **late, timestamp=datetime(2026, 3, 2, 15, 1, tzinfo=UTC))),
        ],
    )
    seoul = dashboard.course_view(session, "os", "Asia/Seoul")["assignments"][0]["days"]
    utc = dashboard.course_view(session, "os", "UTC")["assignments"][0]["days"]
    assert [(d["day"], d["saves"]) for d in seoul] == [("2026-03-02", 1), ("2026-03-03", 1)]  # 23:59, 00:01 KST
    assert [(d["day"], d["saves"], d["active_students"]) for d in utc] == [("2026-03-02", 2, 1)]


def test_heat_strips_are_binned_to_at_most_120_cells_of_whole_hours(session):
    rollups.ensure_built(session, GAP)
    who = dict(course="os", section="1", assignment="hw9", student_id="7")
    start = datetime(2026, 3, 2, 5, 0, tzinfo=UTC)
    at = [start + timedelta(minutes=10), start + timedelta(minutes=50), start + timedelta(hours=130, minutes=5)]
    at.append(start + timedelta(hours=300, minutes=59))
    store.ingest(session, [wire.parse_event(wire_event("process.run", **who, timestamp=t)) for t in at])
    view = dashboard.assignment_view(
        session, "os", "1", "hw9", idle_gap_seconds=GAP, thresholds=dashboard.Thresholds(5, 800), zone_name="UTC"
    )
    assert view["heat_start"] == start and view["heat_hours"] == 301 and view["heat_bin_hours"] == 3
    assert view["per_student"][0]["heat"] == [[0, 2], [43, 1], [100, 1]]  # hours 0, 130 and 300, by 3


# ------------------------------------------------------------------------------------------ over HTTP


SERVED_ENV = {"WATCHER_STUCK_COMPILES": "3", "WATCHER_PASTE_BYTES": "1000", "WATCHER_TIME_ZONE": "Asia/Seoul"}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    handle = run_backend(tmp_path_factory.mktemp("dash"), env=SERVED_ENV)
    yield handle
    handle.stop()


def test_assignment_activity_flags_students_by_the_configured_thresholds(served):
    base = dict(course="dash", section="2", assignment="hw3")
    t = T0
    batch = []
    for i, ok in enumerate((0, 1, 1, 1)):  # stuck: three failing compiles since the last success
        batch.append(
            wire_event("process.compile", **base, student_id="100", timestamp=t + timedelta(minutes=i), exit_code=ok)
        )
    batch.append(wire_event("file.save", **base, student_id="200", path="a.c", size=100, timestamp=t))
    batch.append(
        wire_event("file.save", **base, student_id="200", path="a.c", size=1200, timestamp=t + timedelta(hours=2))
    )
    assert served.post_events(batch).status_code == 200
    with served.client("read") as http:
        got = http.get("/api/v1/courses/dash/sections/2/assignments/hw3/activity").json()
    assert got["thresholds"] == {"stuck_compiles": 3, "paste_bytes": 1000}
    assert got["time_zone"] == "Asia/Seoul"
    rows = {r["student_id"]: r for r in got["per_student"]}
    assert (rows["100"]["stuck"], rows["100"]["fail_streak"], rows["100"]["failed_compiles"]) == (True, 3, 3)
    assert (rows["200"]["large_paste"], rows["200"]["max_growth"], rows["200"]["max_growth_path"]) == (
        True,
        1100,
        "a.c",
    )
    assert not rows["100"]["large_paste"] and not rows["200"]["stuck"]
    assert (got["heat_hours"], got["heat_bin_hours"]) == (3, 1) and rows["200"]["heat"] == [[0, 1], [2, 1]]
    with served.client("read") as http:
        course = http.get("/api/v1/courses/dash/activity").json()
    (hw3,) = course["assignments"]
    assert (hw3["students"], hw3["compiles"], hw3["compile_success_rate"]) == (2, 4, 0.25)


def test_dashboard_routes_need_a_read_token_and_name_bad_fields(served):
    assert httpx.get(served.url + "/api/v1/courses/dash/activity").status_code == 401
    with served.client("ingest") as http:
        assert http.get("/api/v1/courses/dash/activity").status_code == 403
    with served.client("read") as http:
        bad = http.get("/api/v1/courses/dash/sections/2/assignments/hw..!/activity")
        assert bad.status_code == 422 and "assignment" in bad.text
        assert http.get("/api/v1/courses/no-such/activity").json()["assignments"] == []


def test_the_progsnap2_export_streams_a_zip_of_the_assignment(served):
    base = dict(course="exp", section="1", assignment="hw1", student_id="300")
    events = [
        wire_event("file.save", **base, timestamp=T0, size=3),
        wire_event("process.compile", **base, timestamp=T0 + timedelta(seconds=5)),
    ]
    assert served.post_events(events).status_code == 200
    with served.client("read") as http:
        res = http.get("/api/v1/courses/exp/sections/1/assignments/hw1/export/progsnap2")
    assert res.status_code == 200 and res.headers["content-type"] == "application/zip"
    assert "progsnap2-exp-1-hw1.zip" in res.headers["content-disposition"]
    archive = zipfile.ZipFile(io.BytesIO(res.content))
    names = archive.namelist()
    assert "progsnap2-exp-1-hw1/MainTable.csv" in names and "progsnap2-exp-1-hw1/DatasetMetadata.csv" in names
    main = archive.read("progsnap2-exp-1-hw1/MainTable.csv").decode()
    assert "File.Edit" in main and "Compile" in main and "300" in main
    with served.client("admin") as http:  # an export reads every student's code: audited, once
        rows = http.get("/api/v1/admin/audit", params={"course": "exp"}).json()["entries"]
    assert [(r["route"], r["section"], r["assignment"], r["student_id"]) for r in rows] == [
        ("GET /api/v1/courses/{course}/sections/{section}/assignments/{assignment}/export/progsnap2", "1", "hw1", None)
    ]


def test_pages_are_served_offline_with_versioned_assets(served):
    page = httpx.get(served.url + "/ui/courses/os/sections/1/assignments/hw1/students/0001")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "http://" not in page.text.replace(served.url, "") and "https://" not in page.text  # no CDN
    script = page.text.split('<script src="')[1].split('"')[0]
    assert script.startswith("/ui/assets/") and script.endswith("/app.js")
    asset = httpx.get(served.url + script)
    assert asset.status_code == 200 and "immutable" in asset.headers["cache-control"]
    assert "Asia/Seoul" in page.text  # the platform zone reaches the page
    assert httpx.get(served.url + "/ui/assets/x/evil.js").status_code == 404


def test_the_compact_timeline_says_what_the_timeline_says_page_by_page(served):
    base = dict(course="tl", section="1", assignment="hw1", student_id="400")
    events = [
        wire_event("file.save", **base, path="a.c", size=12, sha256="a" * 64, timestamp=T0),
        wire_event("process.compile", **base, exit_code=1, timestamp=T0 + timedelta(seconds=1)),
        wire_event(
            "process.run",
            **base,
            argv=["./main", "--password=hunter2"],
            exit_code=None,
            signal=11,
            timestamp=T0 + timedelta(seconds=2),
        ),
        wire_event("file.delete", **base, path="b.c", timestamp=T0 + timedelta(seconds=3)),
        wire_event("file.save", **base, path="a.c", size=30, sha256="b" * 64, timestamp=T0 + timedelta(seconds=3)),
    ]
    assert served.post_events(events).status_code == 200
    url = "/api/v1/courses/tl/sections/1/assignments/hw1/students/400"
    compact, cursor = [], None
    with served.client("read") as http:
        full = http.get(url + "/timeline", params={"limit": 1000}).json()["events"]
        while True:
            page = http.get(url + "/events", params={"limit": 2} | ({"cursor": cursor} if cursor else {})).json()
            assert len(page["events"]) <= 2
            assert "hunter2" not in json.dumps(page)  # known secrets replaced, as on /timeline
            compact += [dict(zip(page["columns"], e)) | {"page": page} for e in page["events"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        bad = http.get(url + "/events", params={"cursor": "nonsense"})
    assert bad.status_code == 422 and "cursor" in bad.text
    assert len(compact) == len(full) == 5
    for c, f in zip(compact, full):
        page = c.pop("page")
        assert c["id"] == f["id"] and page["types"][c["type"]] == f["type"] and page["paths"][c["path"]] == f["path"]
        assert c["time_ms"] == int(datetime.fromisoformat(f["timestamp"]).timestamp() * 1000)
        for name in ("size", "sha256", "exit_code", "signal", "argv", "error"):
            assert c[name] == f.get(name), name
