"""The backend's HTTP API against a real server on loopback (SQLite here; PostgreSQL in tests/system).

Every test uses a fresh identity (``ident``), so the module can share one server.
"""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from support.backend import run_backend, wire_event
from watcher_core import snapshots, wire

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def at(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat()


def base(ident) -> str:
    return f"/api/v1/courses/{ident['course']}/sections/{ident['section']}/assignments/{ident['assignment']}"


def timeline_of(backend, ident, **params):
    with backend.client("read") as http:
        r = http.get(base(ident) + f"/students/{ident['student_id']}/timeline", params=params)
    assert r.status_code == 200, r.text
    return r.json()


# ------------------------------------------------------------------------------------------- operations


def test_health_answers_exactly_status_and_rfc3339_utc_timestamp(backend):
    r = httpx.get(backend.url + "/health")
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"status", "timestamp"}
    assert body["status"] == "healthy"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", body["timestamp"])


def test_ready_metrics_health_and_docs_are_open(backend):
    assert httpx.get(backend.url + "/ready").json()["status"] == "ready"
    assert httpx.get(backend.url + "/readyz").status_code == 200
    assert httpx.get(backend.url + "/metrics").status_code == 200
    assert httpx.get(backend.url + "/docs").status_code == 200
    schema = httpx.get(backend.url + "/openapi.json").json()
    assert "/api/v1/events" in schema["paths"]
    assert "WireEvent" in schema["components"]["schemas"]


def test_startup_logs_the_deployment_guide_lines_in_order(backend):
    logs = backend.logs()
    lines = [
        line
        for line in logs.splitlines()
        if line in (f"Server starting on port {backend.port}", "Database initialized", "API endpoints ready")
    ]
    assert lines[:3] == [f"Server starting on port {backend.port}", "Database initialized", "API endpoints ready"]


# ------------------------------------------------------------------------------------------- ingest


def test_every_event_type_is_stored_and_the_timeline_is_in_time_order(backend, ident):
    events = [
        wire_event("process.run", timestamp=at(40), **ident, path="main", target="main"),
        wire_event("file.save", timestamp=at(0), **ident, sha256="a" * 64, size=120),
        wire_event("process.compile", timestamp=at(30), **ident, exit_code=1),
        wire_event("file.too_large", timestamp=at(10), **ident, path="data.c"),
        wire_event("file.delete", timestamp=at(20), **ident, path="old.c"),
    ]
    r = backend.post_events(events)
    assert r.status_code == 200, r.text
    assert r.json() == {"accepted": 5, "duplicates": 0, "rejected": []}
    got = timeline_of(backend, ident)["events"]
    assert [e["type"] for e in got] == ["file.save", "file.too_large", "file.delete", "process.compile", "process.run"]
    save, too_large, _, compile_, run = got
    assert save["sha256"] == "a" * 64 and save["size"] == 120
    assert too_large["limit"] == 1_048_576
    assert compile_["argv"] == ["gcc", "main.c", "-o", "main"] and compile_["exit_code"] == 1
    assert compile_["succeeded"] is False and compile_["sources"] == ["main.c"] and compile_["compiler"] == "gcc"
    assert run["kind"] == "binary" and run["duration_ms"] == pytest.approx(250)
    assert all(e["timestamp"].endswith("Z") for e in got)


def test_process_stderr_is_stored_as_sent(backend, ident, tmp_path):
    # What the real gcc and python3 print (quotes, carets, a traceback), a full-size capture with
    # non-ASCII text, and a process whose stderr was not captured.
    (tmp_path / "main.c").write_text("int main(void) { return x; }\n")
    gcc = subprocess.run(["gcc", "-c", "main.c"], cwd=tmp_path, capture_output=True, text=True)
    (tmp_path / "calc.py").write_text("print(1 / 0)\n")
    python = subprocess.run([sys.executable, "calc.py"], cwd=tmp_path, capture_output=True, text=True)
    assert gcc.returncode == 1 and "undeclared" in gcc.stderr and "ZeroDivisionError" in python.stderr
    full = ("오류 " * wire.MAX_STDERR_BYTES)[: wire.MAX_STDERR_BYTES]
    events = [
        wire_event("process.compile", timestamp=at(0), **ident, exit_code=1, stderr=gcc.stderr),
        wire_event("process.run", timestamp=at(1), **ident, kind="python", exit_code=1, stderr=python.stderr),
        wire_event("process.run", timestamp=at(2), **ident, exit_code=1, stderr=full, stderr_truncated=True),
        wire_event("process.compile", timestamp=at(3), **ident),
    ]
    assert backend.post_events(events).json()["accepted"] == 4
    got = timeline_of(backend, ident)["events"]
    assert [(e["stderr"], e["stderr_truncated"]) for e in got] == [
        (gcc.stderr, False),
        (python.stderr, False),
        (full, True),
        (None, False),
    ]


def test_same_batch_twice_is_stored_once(backend, ident):
    batch = [wire_event("file.save", timestamp=at(i), **ident) for i in range(5)]
    assert backend.post_events(batch).json() == {"accepted": 5, "duplicates": 0, "rejected": []}
    before = timeline_of(backend, ident)
    assert backend.post_events(batch).json() == {"accepted": 0, "duplicates": 5, "rejected": []}
    assert timeline_of(backend, ident) == before


def test_a_repeat_inside_one_batch_counts_as_duplicate(backend, ident):
    e = wire_event("file.save", **ident)
    assert backend.post_events([e, e, e]).json() == {"accepted": 1, "duplicates": 2, "rejected": []}


def test_concurrent_overlapping_batches_store_each_event_once(backend, ident):
    from concurrent.futures import ThreadPoolExecutor

    batches = [[wire_event("file.save", **ident, timestamp=at(b * 100 + i)) for i in range(50)] for b in range(4)]

    def send(k):
        order = batches[k % 4 :] + batches[: k % 4]
        # odd senders reverse each batch, so overlapping transactions meet the same keys in opposite orders
        return [backend.post_events(batch[::-1] if k % 2 else batch) for batch in order]

    with ThreadPoolExecutor(8) as pool:
        responses = [r for rs in pool.map(send, range(8)) for r in rs]
    assert {r.status_code for r in responses} == {200}
    assert sum(r.json()["accepted"] for r in responses) == 200
    assert sum(r.json()["duplicates"] for r in responses) == 200 * 7
    assert len(timeline_of(backend, ident, limit=1000)["events"]) == 200


def test_timestamps_with_offsets_are_stored_as_utc(backend, ident):
    backend.post_events([wire_event("file.save", timestamp="2026-03-02T18:00:00+09:00", **ident)])
    assert timeline_of(backend, ident)["events"][0]["timestamp"] == "2026-03-02T09:00:00Z"


def test_reads_see_writes_at_once(backend, ident):
    assert timeline_of(backend, ident)["events"] == []  # the old system cached this empty answer for 10 minutes
    backend.post_events([wire_event("process.compile", **ident)])
    assert len(timeline_of(backend, ident)["events"]) == 1


# ------------------------------------------------------------------------------------------- bad input

BAD_EVENTS = {
    "wrong field type": ({"size": "big"}, "size"),
    "missing sha256": ({"sha256": None}, "sha256"),
    "absolute path": ({"path": "/etc/passwd"}, "path"),
    "dot-dot path": ({"path": "../other/main.c"}, "path"),
    "unknown type": ({"type": "file.rename"}, "type"),
    "naive timestamp": ({"timestamp": "2026-03-02T09:00:00"}, "timestamp"),
    "student id with dash": ({"student_id": "2024-01"}, "student_id"),
    "negative size": ({"size": -1}, "size"),
    "bad sha256": ({"sha256": "XYZ"}, "sha256"),
}
BAD_PROCESS_EVENTS = {
    "absolute cwd": ("process.compile", {"cwd": "/home/coder/project/hw1"}, "cwd"),
    "dot-dot in sources": ("process.compile", {"sources": ["ok.c", "../../x.c"]}, "sources"),
    "absolute output": ("process.compile", {"output": "/tmp/a.out"}, "output"),
    "dot-dot target": ("process.run", {"target": "../main"}, "target"),
    "unknown kind": ("process.run", {"kind": "java"}, "kind"),
    "exit code out of range": ("process.run", {"exit_code": 300}, "exit_code"),
    "ended before started": ("process.run", {"ended_at": "2020-01-01T00:00:00Z"}, "ended_at"),
    "NUL in stderr": ("process.compile", {"stderr": "a.c:1:1: error\x00"}, "stderr"),
    "stderr over the limit": ("process.run", {"stderr": "x" * (wire.MAX_STDERR_BYTES + 1)}, "stderr"),
    "stderr not text": ("process.run", {"stderr": ["a"]}, "stderr"),
}


@pytest.mark.parametrize("change,field", BAD_EVENTS.values(), ids=BAD_EVENTS.keys())
def test_a_bad_file_event_is_rejected_naming_the_field(backend, ident, change, field):
    event = wire_event("file.save", **ident, sha256="b" * 64, size=1)
    event.update(change)
    r = backend.post_events([event])
    assert r.status_code == 422
    body = r.json()
    assert body["accepted"] == 0 and len(body["rejected"]) == 1
    assert body["rejected"][0]["index"] == 0
    assert field in body["rejected"][0]["error"]
    assert timeline_of(backend, ident)["events"] == []


@pytest.mark.parametrize("type_,change,field", BAD_PROCESS_EVENTS.values(), ids=BAD_PROCESS_EVENTS.keys())
def test_a_bad_process_event_is_rejected_naming_the_field(backend, ident, type_, change, field):
    event = wire_event(type_, **ident, timestamp=at(0))
    event.update(change)
    r = backend.post_events([event])
    assert r.status_code == 422
    rejected = r.json()["rejected"]
    assert rejected[0]["index"] == 0 and field in rejected[0]["error"]


def test_a_partial_batch_stores_the_valid_events_and_names_the_rejected_indexes(backend, ident):
    good1, good2 = wire_event("file.save", **ident, timestamp=at(1)), wire_event("file.save", **ident, timestamp=at(2))
    bad_path = wire_event("file.save", **ident, path="../escape.c")
    r = backend.post_events([good1, bad_path, good2, {"type": "file.save"}, "not an object"])
    assert r.status_code == 200
    body = r.json()
    assert body["accepted"] == 2 and body["duplicates"] == 0
    assert [x["index"] for x in body["rejected"]] == [1, 3, 4]
    assert body["rejected"][0]["event_id"] == bad_path["event_id"]
    assert "path" in body["rejected"][0]["error"]
    assert "event_id" in body["rejected"][1]["error"]  # every missing field is named
    stored = {e["event_id"] for e in timeline_of(backend, ident)["events"]}
    assert stored == {good1["event_id"], good2["event_id"]}


@pytest.mark.parametrize(
    "content",
    [b'{"event_id": "x"}', b"[1, 2", b"not json", b'"a string"', b"", b"[" * 200_000, b"\xff\xfe"],
    ids=["object", "truncated", "garbage", "string", "empty", "nested too deep", "not utf-8"],
)
def test_a_body_that_is_not_a_json_array_is_422(backend, content):
    r = httpx.post(
        backend.url + "/api/v1/events",
        content=content,
        headers={**backend.headers("ingest"), "Content-Type": "application/json"},
    )
    assert r.status_code == 422
    assert "detail" in r.json()


def test_a_body_over_the_limit_is_413(backend):
    big = b"[" + b" " * (wire.MAX_BATCH_BYTES + 10) + b"]"
    r = httpx.post(
        backend.url + "/api/v1/events",
        content=big,
        headers={**backend.headers("ingest"), "Content-Type": "application/json"},
    )
    assert r.status_code == 413
    assert "limit" in r.json()["detail"]


def test_a_chunked_body_over_the_limit_is_413_without_content_length(backend):
    def chunks():
        yield b"["
        for _ in range(wire.MAX_BATCH_BYTES // 65536 + 2):
            yield b" " * 65536
        yield b"]"

    r = httpx.post(
        backend.url + "/api/v1/events",
        content=chunks(),
        headers={**backend.headers("ingest"), "Content-Type": "application/json"},
    )
    assert r.status_code == 413


def test_more_events_than_the_batch_limit_is_413(backend, ident):
    batch = [wire_event("file.delete", **ident) for _ in range(wire.MAX_BATCH_EVENTS + 1)]
    r = backend.post_events(batch)
    assert r.status_code == 413
    assert str(wire.MAX_BATCH_EVENTS) in r.json()["detail"]
    assert timeline_of(backend, ident)["events"] == []


def test_query_parameters_are_validated(backend, ident):
    with backend.client("read") as http:
        naive = http.get(
            base(ident) + f"/students/{ident['student_id']}/timeline", params={"since": "2026-01-01T00:00:00"}
        )
        assert naive.status_code == 422 and "since" in naive.text
        bad_cursor = http.get(base(ident) + f"/students/{ident['student_id']}/timeline", params={"cursor": "nope"})
        assert bad_cursor.status_code == 422 and "cursor" in bad_cursor.text
        bad_student = http.get(base(ident) + "/students/20-24/timeline")
        assert bad_student.status_code == 422 and "student_id" in bad_student.text
        traversal = http.get(
            base(ident) + f"/students/{ident['student_id']}/snapshots", params={"path": "../../etc/passwd"}
        )
        assert traversal.status_code == 422 and "path" in traversal.text
        absolute = http.get(base(ident) + f"/students/{ident['student_id']}/snapshots", params={"path": "/etc/passwd"})
        assert absolute.status_code == 422


# ------------------------------------------------------------------------------------------- auth


def test_auth_missing_or_unknown_token_is_401_wrong_scope_is_403(backend, ident):
    url = backend.url + "/api/v1/events"
    r = httpx.post(url, json=[])
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
    r = httpx.post(url, json=[], headers={"Authorization": "Bearer not-a-real-token-at-all"})
    assert r.status_code == 401
    assert httpx.post(url, json=[], headers=backend.headers("read")).status_code == 403
    assert httpx.post(url, json=[], headers=backend.headers("admin")).status_code == 403
    status_url = backend.url + "/api/v1/status"
    assert httpx.get(status_url).status_code == 401
    assert httpx.get(status_url, headers=backend.headers("ingest")).status_code == 403
    assert httpx.get(status_url, headers=backend.headers("read")).status_code == 200
    assert httpx.get(status_url, headers=backend.headers("admin")).status_code == 200  # admin implies read
    delete_url = backend.url + f"/api/v1/students/{ident['student_id']}"
    assert httpx.delete(delete_url, headers=backend.headers("read")).status_code == 403
    assert httpx.delete(delete_url, headers={"Authorization": "Basic abc"}).status_code == 401


# ------------------------------------------------------------------------------------------- snapshots


def test_files_snapshots_content_and_diff(backend, ident):
    v1 = b"int main(void) {\n    return 0;\n}\n"
    v2 = b'#include <stdio.h>\nint main(void) {\n    puts("hi");\n    return 0;\n}\n'
    sha1, _ = snapshots.write_snapshot(backend.snapshot_dir, v1)
    sha2, _ = snapshots.write_snapshot(backend.snapshot_dir, v2)
    backend.post_events(
        [
            wire_event("file.save", **ident, path="src/main.c", timestamp=at(0), sha256=sha1, size=len(v1)),
            wire_event("file.save", **ident, path="src/main.c", timestamp=at(60), sha256=sha2, size=len(v2)),
            wire_event("file.save", **ident, path="util.c", timestamp=at(30), sha256=sha1, size=len(v1)),
            wire_event("file.delete", **ident, path="util.c", timestamp=at(90)),
        ]
    )
    student = base(ident) + f"/students/{ident['student_id']}"
    with backend.client("read") as http:
        files = {f["path"]: f for f in http.get(student + "/files").json()["files"]}
        assert files["src/main.c"]["state"] == "saved" and files["src/main.c"]["saves"] == 2
        assert files["src/main.c"]["latest_sha256"] == sha2 and files["src/main.c"]["latest_size"] == len(v2)
        assert files["util.c"]["state"] == "deleted" and files["util.c"]["latest_size"] == 0

        snaps = http.get(student + "/snapshots", params={"path": "src/main.c"}).json()["snapshots"]
        assert [s["sha256"] for s in snaps] == [sha1, sha2]
        assert all(s["event_id"] for s in snaps)

        content = http.get(f"/api/v1/snapshots/{sha2}")
        assert content.status_code == 200 and content.content == v2
        assert content.headers["content-type"].startswith("text/plain")

        diff = http.get("/api/v1/diff", params={"from": sha1, "to": sha2}).json()
        assert diff["identical"] is False and diff["binary"] is False
        assert "+#include <stdio.h>" in diff["diff"] and diff["diff"].startswith("---")
        assert http.get("/api/v1/diff", params={"from": sha1, "to": sha1}).json()["diff"] == ""

        missing = http.get("/api/v1/snapshots/" + "e" * 64)
        assert missing.status_code == 404 and "e" * 64 in missing.json()["detail"]
        assert http.get("/api/v1/diff", params={"from": sha1, "to": "e" * 64}).status_code == 404
        assert http.get("/api/v1/snapshots/NOTASHA").status_code == 422


def test_contents_and_diffs_named_with_their_student_are_checked_against_that_students_saves(backend, ident):
    mine, theirs = b"mine\n", b"a classmate's\n"
    sha_mine, _ = snapshots.write_snapshot(backend.snapshot_dir, mine)
    sha_theirs, _ = snapshots.write_snapshot(backend.snapshot_dir, theirs)
    # another student of the same section (a random id starting with 9 made "9" + id[1:] the same student)
    classmate = ident | {"student_id": str((int(ident["student_id"]) + 1) % 10**9).zfill(9)}
    backend.post_events(
        [
            wire_event("file.save", **ident, sha256=sha_mine, size=len(mine)),
            wire_event("file.save", **classmate, sha256=sha_theirs, size=len(theirs)),
        ]
    )
    with backend.client("read") as http:
        r = http.get(f"/api/v1/snapshots/{sha_mine}", params=ident)
        assert r.status_code == 200 and r.content == mine
        r = http.get(f"/api/v1/snapshots/{sha_theirs}", params=ident)
        assert r.status_code == 404 and f"not a save of student {ident['student_id']}" in r.json()["detail"]
        r = http.get("/api/v1/diff", params={"from": sha_mine, "to": sha_theirs} | ident)
        assert r.status_code == 404 and sha_theirs in r.json()["detail"]
        assert http.get("/api/v1/diff", params={"from": sha_mine, "to": sha_mine} | ident).status_code == 200
        partial = {"course": ident["course"], "section": "1"}
        r = http.get(f"/api/v1/snapshots/{sha_mine}", params=partial)
        assert r.status_code == 422 and r.json()["detail"].startswith("assignment:")


def test_an_unreadable_snapshot_is_503_not_500(backend):
    sha = "d" * 64
    (backend.snapshot_dir / sha[:2] / sha).mkdir(parents=True)  # a directory where the file should be
    with backend.client("read") as http:
        r = http.get(f"/api/v1/snapshots/{sha}")
    assert r.status_code == 503 and "snapshot store" in r.json()["detail"]


def test_binary_snapshots_diff_without_error(backend):
    a, _ = snapshots.write_snapshot(backend.snapshot_dir, b"\x00\xff\xfeabc\n")
    b, _ = snapshots.write_snapshot(backend.snapshot_dir, b"\x00\xff\xfeabd\n")
    with backend.client("read") as http:
        r = http.get("/api/v1/diff", params={"from": a, "to": b})
        assert r.status_code == 200
        assert r.json()["binary"] is True and "\ufffd" in r.json()["diff"]
        assert http.get(f"/api/v1/snapshots/{a}").headers["content-type"] == "application/octet-stream"


def test_a_mixed_store_serves_raw_whole_and_delta_contents_and_their_diffs(backend):
    """Contents a filemon older than compression stored raw, next to whole and delta ones (a store being
    migrated, or never migrated): the API serves and diffs them alike."""
    old = (Path(__file__).resolve().parents[3] / "bench" / "corpus" / "library.c").read_bytes()  # real C
    new = old + b"int main(void) { return line_3(); }\n"
    raw_sha = snapshots.sha256_of(old)
    (backend.snapshot_dir / raw_sha[:2]).mkdir(parents=True, exist_ok=True)
    (backend.snapshot_dir / raw_sha[:2] / raw_sha).write_bytes(old)  # as the old filemon wrote it
    delta = snapshots.store_snapshot(backend.snapshot_dir, new, previous=raw_sha)
    whole = snapshots.store_snapshot(backend.snapshot_dir, b"print('hello')\n")
    assert (delta.form, whole.form) == ("delta", "whole") and delta.stored_bytes < len(new) // 10
    with backend.client("read") as http:
        assert http.get(f"/api/v1/snapshots/{raw_sha}").content == old
        assert http.get(f"/api/v1/snapshots/{delta.sha256}").content == new
        assert http.get(f"/api/v1/snapshots/{whole.sha256}").content == b"print('hello')\n"
        diff = http.get("/api/v1/diff", params={"from": raw_sha, "to": delta.sha256}).json()
        assert diff["diff"].splitlines()[-1] == "+int main(void) { return line_3(); }"


def test_a_damaged_snapshot_is_503_naming_it_not_wrong_bytes(backend):
    sha = snapshots.write_snapshot(backend.snapshot_dir, b"int main(void) { return 0; }\n" * 20)[0]
    path = backend.snapshot_dir / sha[:2] / sha
    path.write_bytes(path.read_bytes()[:-4] + b"XXXX")  # a flipped tail: it no longer decompresses to its sha
    with backend.client("read") as http:
        r = http.get(f"/api/v1/snapshots/{sha}")
        assert r.status_code == 503 and sha in r.json()["detail"] and "damaged" in r.json()["detail"]
        assert http.get("/api/v1/diff", params={"from": sha, "to": sha}).status_code == 503


# ------------------------------------------------------------------------------------------- queries


def test_assignment_summary(backend, ident):
    other = {**ident, "student_id": ident["student_id"][:-1] + ("1" if ident["student_id"][-1] != "1" else "2")}
    backend.post_events(
        [
            wire_event("file.save", **ident, path="a.c", timestamp=at(0), size=100),
            wire_event("file.save", **ident, path="a.c", timestamp=at(60), size=150),  # latest a.c = 150
            wire_event("file.save", **ident, path="b.c", timestamp=at(120), size=40),
            wire_event("file.delete", **ident, path="b.c", timestamp=at(180)),  # b.c counts 0
            wire_event("process.compile", **ident, timestamp=at(200), exit_code=0),
            wire_event("process.compile", **ident, timestamp=at(260), exit_code=1),
            wire_event("process.compile", **ident, timestamp=at(3000), exit_code=None, signal=9),  # after a break
            wire_event("process.run", **ident, timestamp=at(3100)),
            wire_event("file.save", **other, path="a.c", timestamp=at(500), size=70),
            wire_event("process.compile", **other, timestamp=at(560), exit_code=0),
            # another assignment: not counted
            wire_event("file.save", **{**ident, "assignment": "hw2"}, path="a.c", timestamp=at(10), size=999),
        ]
    )
    with backend.client("read") as http:
        s = http.get(base(ident) + "/summary").json()
    assert s["students"] == 2 and s["saves"] == 4 and s["deletes"] == 1
    assert s["compiles"] == 4 and s["compile_successes"] == 2 and s["compile_success_rate"] == 0.5
    assert s["runs"] == 1
    assert s["code_size"] == 150 + 70
    assert s["first_activity"] == "2026-03-02T09:00:00Z"
    assert s["last_activity"] == (T0 + timedelta(seconds=3100)).isoformat().replace("+00:00", "Z")
    me = next(p for p in s["per_student"] if p["student_id"] == ident["student_id"])
    # gaps 60,60,60,20,60 count (<= 300 s); 2740 is a break; 100 counts
    assert me["active_seconds"] == pytest.approx(60 + 60 + 60 + 20 + 60 + 100)
    assert me["compile_success_rate"] == pytest.approx(1 / 3, abs=1e-3)
    assert s["active_seconds"] == pytest.approx(me["active_seconds"] + 60)
    with backend.client("read") as http:
        wide = http.get(base(ident) + "/summary", params={"idle_gap_seconds": 3600}).json()
        assert wide["per_student"][0]["active_seconds"] + wide["per_student"][1]["active_seconds"] == pytest.approx(
            3100 + 60
        )
        window = http.get(base(ident) + "/summary", params={"since": at(100), "until": at(1000)}).json()
        assert window["saves"] == 2 and window["compiles"] == 3
        empty = http.get(base({**ident, "assignment": "hw9"}) + "/summary").json()
        assert empty["students"] == 0 and empty["compile_success_rate"] is None


def test_timeline_pagination_and_filters(backend, ident):
    events = [wire_event("file.save", **ident, timestamp=at(i)) for i in range(7)]
    events += [wire_event("process.run", **ident, timestamp=at(3))]  # same time as the 4th save
    backend.post_events(events)
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = timeline_of(backend, ident, **params)
        seen += page["events"]
        pages += 1
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert pages == 3 and len(seen) == 8 and len({e["event_id"] for e in seen}) == 8
    assert [e["timestamp"] for e in seen] == sorted(e["timestamp"] for e in seen)
    window = timeline_of(backend, ident, since=at(2), until=at(5))["events"]
    assert len(window) == 4  # seconds 2, 3, 3 (run), 4
    runs = timeline_of(backend, ident, type="process.run")["events"]
    assert [e["type"] for e in runs] == ["process.run"]


def test_course_listing(backend, ident):
    backend.post_events(
        [
            wire_event("file.save", **ident),
            wire_event("process.compile", **ident),
            wire_event("file.save", **{**ident, "section": "2", "student_id": "7"}),
            wire_event("file.save", **{**ident, "assignment": "hw2"}),
        ]
    )
    with backend.client("read") as http:
        body = http.get("/api/v1/courses", params={"course": ident["course"]}).json()
        assert len(body["courses"]) == 1
        course = body["courses"][0]
        assert course["course"] == ident["course"]
        sections = {s["section"]: s["assignments"] for s in course["sections"]}
        assert [a["assignment"] for a in sections["1"]] == ["hw1", "hw2"]
        assert (
            sections["1"][0]["saves"] == 1 and sections["1"][0]["compiles"] == 1 and sections["1"][0]["students"] == 1
        )
        assert sections["2"][0]["students"] == 1
        first = http.get("/api/v1/courses", params={"course": ident["course"], "limit": 2}).json()
        assert first["next_offset"] == 2
        rest = http.get("/api/v1/courses", params={"course": ident["course"], "limit": 2, "offset": 2}).json()
        assert rest["next_offset"] is None and rest["courses"][0]["sections"][0]["section"] == "2"


def test_status_lists_agents_with_last_report_and_backlog(backend, ident):
    node = "node-" + ident["course"]
    r = httpx.post(
        backend.url + "/api/v1/events",
        json=[wire_event("file.save", **ident, node=node)],
        headers={**backend.headers("ingest"), "X-Watcher-Backlog": "12"},
    )
    assert r.status_code == 200
    # an empty batch with node/source headers is a heartbeat
    r = httpx.post(
        backend.url + "/api/v1/events",
        json=[],
        headers={**backend.headers("ingest"), "X-Watcher-Node": node, "X-Watcher-Source": "procmon"},
    )
    assert r.json() == {"accepted": 0, "duplicates": 0, "rejected": []}
    with backend.client("read") as http:
        status = http.get("/api/v1/status").json()
    agents = {(a["node"], a["source"]): a for a in status["agents"]}
    assert agents[(node, "filemon")]["backlog"] == 12 and agents[(node, "filemon")]["events_received"] == 1
    assert (node, "procmon") in agents
    assert status["events_by_type"]["file.save"] >= 1 and status["events_total"] >= 1


# ------------------------------------------------------------------------------------------- privacy


def test_admin_deletes_every_record_of_one_student(backend, ident):
    other = {**ident, "student_id": "999999999" if ident["student_id"] != "999999999" else "1"}
    backend.post_events(
        [wire_event("file.save", **ident) for _ in range(3)]
        + [wire_event("process.run", **{**ident, "assignment": "hw2"})]
        + [wire_event("file.save", **other)]
    )
    with httpx.Client(base_url=backend.url, headers=backend.headers("admin")) as http:
        r = http.delete(f"/api/v1/students/{ident['student_id']}", params={"course": ident["course"]})
        assert r.status_code == 200, r.text
        assert r.json()["deleted"] == {"event": 4, "diagnostic": 0}
        assert timeline_of(backend, ident)["events"] == []
        assert len(timeline_of(backend, other)["events"]) == 1
        again = http.delete(f"/api/v1/students/{ident['student_id']}", params={"course": ident["course"]})
        assert again.json()["deleted"] == {"event": 0, "diagnostic": 0}
        assert http.delete(f"/api/v1/students/{ident['student_id']}", params={"section": "1"}).status_code == 422


# ------------------------------------------------------------------------------------------- metrics


def test_metrics_use_route_templates_and_count_events(backend, ident):
    with backend.client("read") as http:
        for i in range(3):
            http.get(f"/api/v1/snapshots/{str(i) * 64}")
            http.get(f"/no/such/path/{i}")
    backend.post_events([wire_event("file.save", **ident), {"type": "file.save"}])
    too_big = httpx.post(
        backend.url + "/api/v1/events",
        content=b" " * (wire.MAX_BATCH_BYTES + 1),
        headers={**backend.headers("ingest"), "Content-Type": "application/json"},
    )
    assert too_big.status_code == 413
    text = httpx.get(backend.url + "/metrics").text
    endpoints = set(re.findall(r'http_requests_total\{[^}]*endpoint="([^"]*)"', text))
    assert "/api/v1/snapshots/{sha256}" in endpoints
    assert "<unmatched>" in endpoints
    assert not any("000000" in e or "/no/such" in e for e in endpoints)
    assert 'http_request_duration_seconds_bucket{endpoint="/api/v1/events"' in text
    # a 413 answered before routing still carries the route's template
    assert re.search(r'http_requests_total\{endpoint="/api/v1/events",http_status="413",method="POST"\} \d', text)
    assert re.search(r'watcher_events_ingested_total\{result="accepted",type="file.save"\} \d', text)
    assert re.search(r'watcher_events_ingested_total\{result="rejected",type="file.save"\} \d', text)


def test_a_newer_agents_unknown_fields_are_stored_without_them_and_listed(tmp_path):
    # An agent upgraded before the backend sends a field this backend does not know: the event is kept
    # (never dead-lettered for good), the field is not, and the answer says which.
    with run_backend(tmp_path) as backend:
        newer = wire_event("process.run", exit_reason="oom", cgroup_memory_peak=123)
        plain = wire_event()
        r = backend.post_events([plain, newer])
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["accepted"] == 2 and body["rejected"] == []
        assert body["ignored"] == [
            {"index": 1, "event_id": newer["event_id"], "fields": ["cgroup_memory_peak", "exit_reason"]}
        ]
        with backend.client("read") as http:
            events = http.get("/api/v1/courses/os/sections/1/assignments/hw1/students/202400001/timeline").json()[
                "events"
            ]
            assert {e["event_id"] for e in events} >= {plain["event_id"], newer["event_id"]}
            assert not any("exit_reason" in e for e in events)
            assert "watcher_events_unknown_fields_total 1.0" in http.get("/metrics").text
        assert "exit_reason" in backend.logs() and "upgrade the backend first" in backend.logs()
