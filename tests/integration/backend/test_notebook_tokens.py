"""A notebook token lives in a student's pod, so the student can read it: prove it admits that student's
notebook.cell events and nothing else, against a real backend. Tokens come from `watcher notebook token`."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys

import httpx
import pytest

from support.backend import run_backend, wire_event

KEY = secrets.token_hex(32)
ME = {"course": "os", "section": "1", "student_id": "202400001"}


def notebook_token(student: str, key: str = KEY, course: str = "os", section: str = "1") -> str:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "watcher_core",
            "notebook",
            "token",
            "--course",
            course,
            "--section",
            section,
            "--student",
            student,
        ],
        env={**os.environ, "WATCHER_NOTEBOOK_KEY": key},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    with run_backend(tmp_path_factory.mktemp("nb"), env={"WATCHER_NOTEBOOK_KEY": KEY}) as b:
        yield b


def as_student(backend, token: str) -> httpx.Client:
    return httpx.Client(base_url=backend.url, headers={"Authorization": f"Bearer {token}"}, timeout=10)


def test_a_students_token_stores_its_own_cells_and_they_show_in_the_timeline_and_summary(backend):
    token = notebook_token("202400001")
    ok, raised = (
        wire_event("notebook.cell"),
        wire_event("notebook.cell", error="ZeroDivisionError", cell_id="c2", execution_count=2),
    )
    with as_student(backend, token) as http:
        r = http.post("/api/v1/events", json=[ok, raised])
    assert r.status_code == 200, r.text
    assert r.json() == {"accepted": 2, "duplicates": 0, "rejected": []}
    with backend.client("read") as http:
        events = http.get(
            "/api/v1/courses/os/sections/1/assignments/hw1/students/202400001/timeline",
            params={"types": "notebook.cell"},
        ).json()["events"]
        summary = http.get("/api/v1/courses/os/sections/1/assignments/hw1/summary").json()
    assert [(e["path"], e["cell_id"], e["execution_count"], e["error"], e["succeeded"]) for e in events] == [
        ("lab.ipynb", "c1", 1, None, True),
        ("lab.ipynb", "c2", 2, "ZeroDivisionError", False),
    ]
    assert events[0]["duration_ms"] == pytest.approx(40.0)
    assert (summary["cells"], summary["cell_successes"]) == (2, 1)


def test_it_cannot_write_saves_compiles_runs_or_another_students_cells(backend):
    token = notebook_token("202400001")
    batch = [
        wire_event("file.save", **ME),
        wire_event("process.compile", **ME),
        wire_event("process.run", **ME),
        wire_event("notebook.cell", student_id="202400002"),  # a classmate
        wire_event("notebook.cell", course="ds", section="2"),  # the same number in another course
        wire_event("notebook.cell", source="legacy"),  # posing as the old API
        wire_event("notebook.cell"),  # its own: the only one stored
    ]
    with as_student(backend, token) as http:
        r = http.post("/api/v1/events", json=batch)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["accepted"] == 1
    reasons = {x["index"]: x["error"] for x in body["rejected"]}
    assert sorted(reasons) == [0, 1, 2, 3, 4, 5]
    assert "only send notebook.cell events (source ipynb), not file.save" in reasons[0]
    assert "of os/1/202400001 may not send events of os/1/202400002" in reasons[3]
    assert "ds/2/202400001" in reasons[4]
    with backend.client("read") as http:
        stored = http.get("/api/v1/courses/os/sections/1/assignments/hw1/students/202400002/timeline").json()
    assert stored["events"] == []
    # every refused item alone: 422 with the reason, nothing stored
    with as_student(backend, token) as http:
        r = http.post("/api/v1/events", json=[wire_event("file.save", **ME)])
    assert r.status_code == 422 and r.json()["accepted"] == 0 and r.json()["rejected"][0]["index"] == 0


@pytest.mark.parametrize(
    "method,path,body",
    [
        ("GET", "/api/v1/courses", None),
        ("GET", "/api/v1/status", None),
        ("GET", "/api/os-1/hw1/202400001", None),  # the old API's reads
        ("POST", "/api/os-1/hw1/202400001/a.c/20250101_000000", {"bytes": 1}),  # the old API's writes
        (
            "POST",
            "/api/os-1/hw1/202400001/logs/run",
            {
                "cmdline": "<unknown>",
                "exit_code": 0,
                "cwd": "/home/coder/project/hw1",
                "target_path": "ipykernel",
                "process_type": "python",
                "timestamp": "2025-01-01T00:00:00",
            },
        ),
        ("DELETE", "/api/v1/students/202400002", None),  # the admin erase
        ("GET", "/api/v1/snapshots/unreferenced", None),
    ],
)
def test_every_other_route_answers_403_saying_what_the_token_is_for(backend, method, path, body):
    with as_student(backend, notebook_token("202400001")) as http:
        r = http.request(method, path, json=body)
    assert r.status_code == 403, (path, r.status_code, r.text)
    assert "notebook token may only post notebook.cell events of its own student" in r.json()["detail"]


def test_a_forged_or_foreign_token_is_refused_with_the_reason(backend, tmp_path):
    genuine = notebook_token("202400001")
    forged = genuine[:-4] + ("AAAA" if not genuine.endswith("AAAA") else "BBBB")
    renamed = genuine.replace("202400001", "202400002")  # someone else's id, this MAC
    other_key = notebook_token("202400001", key=secrets.token_hex(32))
    for token in (forged, renamed, other_key, "nb1.os.1"):
        with as_student(backend, token) as http:
            r = http.post("/api/v1/events", json=[wire_event("notebook.cell")])
        assert r.status_code == 401, token
        assert r.json()["detail"] == "invalid notebook token"
    # a backend without the key accepts no notebook token, and says so
    with run_backend(tmp_path) as plain, as_student(plain, genuine) as http:
        r = http.post("/api/v1/events", json=[wire_event("notebook.cell")])
    assert r.status_code == 401
    assert r.json()["detail"] == "notebook tokens are not accepted: WATCHER_NOTEBOOK_KEY is not set"


def test_the_cli_refuses_a_short_key_and_the_backend_will_not_start_with_one(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "watcher_core",
            "notebook",
            "token",
            "--course",
            "os",
            "--section",
            "1",
            "--student",
            "1",
        ],
        env={**os.environ, "WATCHER_NOTEBOOK_KEY": "short"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2 and "at least 32 characters" in proc.stderr
    with pytest.raises(Exception, match="WATCHER_NOTEBOOK_KEY"):
        with run_backend(tmp_path, env={"WATCHER_NOTEBOOK_KEY": "short"}, timeout=15):
            pass
