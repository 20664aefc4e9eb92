"""Diagnostics end to end in the backend: a compile's and a Python run's captured stderr (what real gcc and
python3 print) is parsed at ingest, shown on the timeline, counted per assignment, and erased with the
student or by the retention purge. SQLite here; tests/system/backend runs this module on PostgreSQL.
"""

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import func, select
from sqlmodel import Session

from support.backend import wire_event
from watcher_backend import db, migrate, store
from watcher_backend.models import DIAGNOSTIC_TABLE
from watcher_core import wire

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
BROKEN_C = "int main(void) {\n    int total = 0\n    total += 1;\n    return totl;\n}\n"
WARNED_C = "int main(void) {\n    int unused;\n    return 0;\n}\n"
NAME_PY = "values = [1, 2]\nprint(valuez)\n"


def stderr_of(argv, cwd):
    env = {**os.environ, "LC_ALL": "C.UTF-8"}
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, env=env).stderr


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    """What gcc and python3 really print for a few student mistakes, run in <tmp>/hw1."""
    folder = tmp_path_factory.mktemp("student") / "hw1"
    folder.mkdir()
    (folder / "broken.c").write_text(BROKEN_C)
    (folder / "warned.c").write_text(WARNED_C)
    (folder / "name.py").write_text(NAME_PY)
    return {
        "broken": stderr_of(["gcc", "-Wall", "-c", "broken.c", "-o", os.devnull], folder),
        "warned": stderr_of(["gcc", "-Wall", "-c", "warned.c", "-o", os.devnull], folder),
        "name": stderr_of([sys.executable, "name.py"], folder),
    }


def compile_event(ident, stderr, path, at, exit_code=1):
    return wire_event(
        "process.compile",
        **ident,
        path=path,
        sources=[path],
        argv=["gcc", "-Wall", path],
        timestamp=at,
        exit_code=exit_code,
        stderr=stderr,
    )


def run_event(ident, stderr, path, at):
    return wire_event(
        "process.run",
        **ident,
        path=path,
        kind="python",
        target=path,
        argv=["python3", path],
        timestamp=at,
        exit_code=1,
        stderr=stderr,
    )


def test_timeline_and_frequent_errors(backend, ident, outputs):
    other = ident | {"student_id": ident["student_id"][:-1] + ("0" if ident["student_id"][-1] != "0" else "1")}
    events = [
        compile_event(ident, outputs["broken"], "broken.c", T0),
        compile_event(ident, outputs["warned"], "warned.c", T0 + timedelta(seconds=30), exit_code=0),
        run_event(ident, outputs["name"], "name.py", T0 + timedelta(seconds=60)),
        compile_event(other, outputs["broken"], "broken.c", T0 + timedelta(seconds=5)),
        compile_event(ident, "", "ok.c", T0 + timedelta(seconds=90), exit_code=0),
    ]
    assert backend.post_events(events).status_code == 200
    # sent again: duplicates, and no second copy of their diagnostics
    assert backend.post_events(events).json()["duplicates"] == len(events)
    base = f"/api/v1/courses/{ident['course']}/sections/1/assignments/hw1"
    with backend.client() as http:
        timeline = http.get(f"{base}/students/{ident['student_id']}/timeline").json()["events"]
        broken, warned, run, clean = timeline
        assert [(d["kind"], d["file"], d["line"], d["error_class"]) for d in broken["diagnostics"]] == [
            ("error", "broken.c", 3, "expected ',' or ';' before <id>"),
            ("error", "broken.c", 4, "<id> undeclared (first use in this function)"),
            ("note", "broken.c", 4, "each undeclared identifier is reported only once for each function it appears in"),
            ("warning", "broken.c", 2, "unused variable <id>"),
        ]
        assert broken["exception"] is None
        [warning] = warned["diagnostics"]
        assert (warning["kind"], warning["flag"], warning["line"]) == ("warning", "-Wunused-variable", 2)
        exc = run["exception"]
        assert (exc["flag"], exc["file"], exc["line"]) == ("NameError", "name.py", 2)
        assert exc["error_class"] == "NameError: name <id> is not defined"
        assert "diagnostics" not in run or run["diagnostics"] is None
        assert clean["diagnostics"] == []

        errors = http.get(f"{base}/errors").json()
        assert errors["kinds"] == ["error", "exception"]
        top = [(c["kind"], c["error_class"], c["count"], c["students"]) for c in errors["classes"]]
        both = sorted([ident["student_id"], other["student_id"]])
        assert top == [
            ("error", "<id> undeclared (first use in this function)", 2, both),
            ("error", "expected ',' or ';' before <id>", 2, both),
            ("exception", "NameError: name <id> is not defined", 1, [ident["student_id"]]),
        ]
        assert "totl" in errors["classes"][0]["example"]["message"]
        warnings = http.get(f"{base}/errors", params={"kind": "warning", "limit": 1}).json()["classes"]
        assert [(c["error_class"], c["count"], c["student_count"]) for c in warnings] == [
            ("unused variable <id>", 3, 2)
        ]
        later = http.get(f"{base}/errors", params={"since": (T0 + timedelta(seconds=20)).isoformat()}).json()
        assert [c["kind"] for c in later["classes"]] == ["exception"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"kind": "fatal"}, "kind"),
        ({"limit": 0}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"since": "yesterday"}, "since"),
    ],
)
def test_bad_parameters_name_the_field(backend, params, field):
    with backend.client() as http:
        r = http.get("/api/v1/courses/os/sections/1/assignments/hw1/errors", params=params)
    assert r.status_code == 422
    assert field in r.text


def test_errors_need_read_scope(backend):
    r = httpx.get(backend.url + "/api/v1/courses/os/sections/1/assignments/hw1/errors")
    assert r.status_code == 401


def test_erasing_a_student_erases_their_diagnostics(backend, ident, outputs):
    events = [compile_event(ident, outputs["broken"], "broken.c", T0), run_event(ident, outputs["name"], "n.py", T0)]
    assert backend.post_events(events).status_code == 200
    with backend.client("admin") as http:
        r = http.delete(f"/api/v1/students/{ident['student_id']}", params={"course": ident["course"]})
        assert r.json()["deleted"] == {"event": 2, "diagnostic": 5}
        errors = http.get(f"/api/v1/courses/{ident['course']}/sections/1/assignments/hw1/errors").json()
        assert errors["classes"] == []


@pytest.fixture
def session(database_url):
    engine = db.make_engine(database_url)
    migrate.upgrade(engine)
    with Session(engine) as s:
        yield s
    engine.dispose()


def count(session):
    return session.scalar(select(func.count()).select_from(DIAGNOSTIC_TABLE))


def test_retention_purges_diagnostics_with_their_events(session, outputs):
    ident = {"course": "os", "section": "1", "student_id": "2024001", "assignment": "hw1"}
    old, new = T0 - timedelta(days=400), T0
    events = [
        wire.parse_event(compile_event(ident, outputs["broken"], "broken.c", old)),
        wire.parse_event(compile_event(ident, outputs["warned"], "warned.c", new, exit_code=0)),
    ]
    assert tuple(store.ingest(session, events)) == (2, 0)
    assert count(session) == 5
    assert store.purge_older_than(session, T0 - timedelta(days=365)) == 1
    assert count(session) == 1  # the warning of the compile that stays


def test_measures_per_assignment_and_per_student(backend, ident, outputs):
    """The worked example of tests/unit/backend/test_measures.py's EQ, through ingest and HTTP: the same
    error at the same line twice, then another error, a success, and the first error again."""
    undeclared = outputs["broken"]
    warned_only = outputs["warned"]
    other_error = "broken.c:9:1: error: expected declaration or statement at end of input\n"
    stderrs = [undeclared, undeclared, other_error, warned_only, undeclared]
    codes = [1, 1, 1, 0, 1]
    events = [
        compile_event(ident, text, "broken.c", T0 + timedelta(seconds=10 * i), exit_code=code)
        for i, (text, code) in enumerate(zip(stderrs, codes))
    ]
    events.append(compile_event(ident | {"assignment": "hw2"}, undeclared, "broken.c", T0))
    assert backend.post_events(events).status_code == 200
    with backend.client() as http:
        base = f"/api/v1/courses/{ident['course']}/sections/1"
        [row] = http.get(f"{base}/assignments/hw1/measures").json()["students"]
        assert (row["student_id"], row["compiles"], row["failed_compiles"]) == (ident["student_id"], 5, 4)
        assert row["error_quotient"] == pytest.approx(10 / 44, abs=1e-6)
        assert row["repeated_error_density"] == pytest.approx(0.5)  # one string of two: 1/2
        assert 0 < row["watwin"] <= 1
        mine = http.get(f"{base}/students/{ident['student_id']}/measures").json()["assignments"]
        assert [(a["assignment"], a["compiles"]) for a in mine] == [("hw1", 5), ("hw2", 1)]
        assert mine[0]["error_quotient"] == row["error_quotient"]
        assert mine[1]["error_quotient"] is None  # one compilation: no pair
        assert http.get(f"{base}/students/not-an-id!/measures").status_code == 422
