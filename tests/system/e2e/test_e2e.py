"""The whole pipeline, real parts only: the demo's student session, played by two students IN PARALLEL.

Real inotify (filemon), real eBPF (procmon --mode ebpf), real HTTP on loopback, the backend on SQLite
and, in the second run of this module, on a private PostgreSQL server. Every assertion is EXACT: the
backend must hold precisely the events the session produced, no more and no fewer, each attributed to
the right course, section, student, assignment and path, with snapshot contents and diffs retrievable.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import pytest
from system.e2e.session import (
    ASSIGNMENT,
    BASE,
    COURSE,
    PY,
    SECTION,
    count_types,
    reader,
    require_ebpf,
    run,
    settle,
    start_stack,
    student_hw,
    timeline,
    wait_until,
)

from support.postgres import PostgresServer, find_pg_bin
from watcher_local import demo

STUDENTS = ("202011111", "202022222")
EXPECTED_COUNTS = {"file.save": 4, "file.delete": 1, "process.compile": 2, "process.run": 2}
# (type, path) in time order: the demo's script, step by step.
EXPECTED_SEQUENCE = [
    ("file.save", "hello.c"),
    ("process.compile", "hello.c"),  # broken hello.c, gcc fails
    ("file.save", "hello.c"),
    ("process.compile", "hello.c"),  # fixed, gcc succeeds
    ("process.run", "hello"),  # ./hello
    ("file.save", "calc.py"),
    ("process.run", "calc.py"),  # python calc.py
    ("file.save", "scratch.c"),
    ("file.delete", "scratch.c"),  # a scratch file, deleted
]
CONTENTS = {"hello.c": {demo.HELLO_BROKEN, demo.HELLO_FIXED}, "calc.py": {demo.CALC_PY}, "scratch.c": {demo.SCRATCH}}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def database_url(request, tmp_path_factory):
    require_ebpf()
    if request.param == "sqlite":
        yield None
        return
    if find_pg_bin() is None:
        pytest.skip("PostgreSQL is not installed (scripts/deps/postgres.sh)")
    with PostgresServer(tmp_path_factory.mktemp("pg")) as pg:
        yield pg.create_database("watcher_e2e")


@pytest.fixture(scope="module")
def played(database_url, tmp_path_factory):
    """The stack, after both students played the demo's session at the same time and everything settled."""
    stack = start_stack(tmp_path_factory.mktemp("e2e"), database_url=database_url)
    try:
        logs = {sid: [] for sid in STUDENTS}
        threads = [
            threading.Thread(target=demo.play_student, args=(student_hw(stack, sid), logs[sid])) for sid in STUDENTS
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for sid in STUDENTS:  # the session itself went as scripted (gcc failed, then succeeded, ...)
            assert [line.rsplit(" ", 1)[-1] for line in logs[sid]] == ["1", "0", "0", "0"], logs[sid]
        with reader(stack) as http:
            seen: dict = {}

            def all_there() -> bool:
                seen.update({sid: count_types(timeline(http, sid)) for sid in STUDENTS})
                return all(c == EXPECTED_COUNTS for c in seen.values())

            try:
                wait_until(all_there, 60, "both students' events")
            except AssertionError:
                raise AssertionError(
                    f"expected {EXPECTED_COUNTS} per student, got {seen}; logs in {stack.data_dir / 'logs'}"
                ) from None
            settle(stack)
            timelines = {sid: timeline(http, sid) for sid in STUDENTS}
        yield stack, timelines
    finally:
        stack.stop()


def test_each_student_has_exactly_the_expected_events_in_order(played):
    stack, timelines = played
    for sid, events in timelines.items():
        assert count_types(events) == EXPECTED_COUNTS, sid
        assert [(ev["type"], ev["path"]) for ev in events] == EXPECTED_SEQUENCE, sid
        assert len({ev["event_id"] for ev in events}) == len(events)  # nothing stored twice


def test_every_event_is_attributed_to_its_student_assignment_and_node(played):
    stack, timelines = played
    for sid, events in timelines.items():
        for ev in events:
            assert (ev["course"], ev["section"], ev["student_id"], ev["assignment"]) == (
                COURSE,
                SECTION,
                sid,
                ASSIGNMENT,
            )
            assert ev["node"] == "e2e-node"
            assert ev["source"] == ("filemon" if ev["type"].startswith("file.") else "procmon")


def test_compiles_and_runs_carry_what_happened(played):
    stack, timelines = played
    for events in timelines.values():
        compiles = [ev for ev in events if ev["type"] == "process.compile"]
        assert [(c["compiler"], c["sources"], c["output"], c["exit_code"], c["succeeded"]) for c in compiles] == [
            ("gcc", ["hello.c"], "hello", 1, False),
            ("gcc", ["hello.c"], "hello", 0, True),
        ]
        assert all(c["argv"] == ["gcc", "hello.c", "-o", "hello"] and c["cwd"] == "." for c in compiles)
        runs = [ev for ev in events if ev["type"] == "process.run"]
        assert [(r["kind"], r["target"], r["exit_code"], r["signal"]) for r in runs] == [
            ("binary", "hello", 0, None),
            ("python", "calc.py", 0, None),
        ]
        assert runs[1]["argv"] == [sys.executable, "calc.py"]


def test_snapshot_contents_equal_what_was_written_and_the_diff_shows_the_fix(played):
    stack, timelines = played
    with reader(stack) as http:
        for sid, events in timelines.items():
            saves = [ev for ev in events if ev["type"] == "file.save"]
            for ev in saves:
                r = http.get(f"/api/v1/snapshots/{ev['sha256']}")
                assert r.status_code == 200
                assert r.text in CONTENTS[ev["path"]] and len(r.content) == ev["size"]
            broken, fixed = (ev["sha256"] for ev in saves if ev["path"] == "hello.c")
            assert http.get(f"/api/v1/snapshots/{broken}").text == demo.HELLO_BROKEN
            assert http.get(f"/api/v1/snapshots/{fixed}").text == demo.HELLO_FIXED
            diff = http.get("/api/v1/diff", params={"from": broken, "to": fixed}).json()
            assert not diff["identical"]
            changed = [
                line for line in diff["diff"].splitlines() if line[:1] in "+-" and not line.startswith(("+++", "---"))
            ]
            assert changed == ['-    printf("hello, %s\\n", "world")', '+    printf("hello, %s\\n", "world");']
            versions = http.get(f"{BASE}/students/{sid}/snapshots", params={"path": "hello.c"}).json()["snapshots"]
            assert [v["sha256"] for v in versions] == [broken, fixed]
            files = {f["path"]: f for f in http.get(f"{BASE}/students/{sid}/files").json()["files"]}
            assert {p: f["state"] for p, f in files.items()} == {
                "hello.c": "saved",
                "calc.py": "saved",
                "scratch.c": "deleted",
            }
            assert files["hello.c"]["latest_sha256"] == fixed and files["hello.c"]["saves"] == 2


def test_assignment_summary_counts_both_students(played):
    stack, _ = played
    with reader(stack) as http:
        summary = http.get(f"{BASE}/summary").json()
    assert (summary["students"], summary["saves"], summary["compiles"], summary["runs"]) == (2, 8, 4, 4)
    assert summary["compile_success_rate"] == 0.5
    assert sorted(s["student_id"] for s in summary["per_student"]) == sorted(STUDENTS)


def test_watcher_status_shows_both_agents_and_the_stored_events(played):
    stack, timelines = played
    cmd = [
        sys.executable,
        "-m",
        "watcher_core",
        "status",
        "--backend-url",
        stack.url,
        "--data-dir",
        str(stack.data_dir),
    ]
    as_json = subprocess.run(cmd + ["--json"], capture_output=True, text=True, timeout=30)
    assert as_json.returncode == 0, as_json.stderr
    status = json.loads(as_json.stdout)
    by_type = {t: n for t, n in status["events_by_type"].items() if n}
    assert by_type == {t: n * len(STUDENTS) for t, n in EXPECTED_COUNTS.items()}
    assert sorted((a["node"], a["source"]) for a in status["agents"]) == [
        ("e2e-node", "filemon"),
        ("e2e-node", "procmon"),
    ]
    table = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert table.returncode == 0, table.stderr
    assert f"events stored: {sum(by_type.values())}" in table.stdout
    agent_rows = [line.split() for line in table.stdout.splitlines() if line.startswith("e2e-node")]
    assert sorted(row[1] for row in agent_rows) == ["filemon", "procmon"]


def test_a_script_that_execs_python_is_one_run(played):
    """A shell script that ``exec``s python (like pyenv's shim): one real run, so exactly ONE process.run."""
    stack, _ = played
    sid = "202033333"
    hw = student_hw(stack, sid)
    (hw / "calc.py").write_text(demo.CALC_PY)
    script = hw / "run.sh"
    script.write_text(f"#!/bin/sh\nexec {PY} calc.py\n")
    script.chmod(0o755)
    with reader(stack) as http:
        wait_until(lambda: count_types(timeline(http, sid)).get("file.save") == 1, 30, "the save of calc.py")
        run(["./run.sh"], hw, check_exit=0)
        wait_until(lambda: count_types(timeline(http, sid)).get("process.run"), 30, "the run")
        settle(stack)
        runs = [ev for ev in timeline(http, sid) if ev["type"] == "process.run"]
    assert len(runs) == 1, runs
    assert runs[0]["exit_code"] == 0 and runs[0]["signal"] is None
