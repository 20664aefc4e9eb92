"""The old platform API against a REAL backend (uvicorn subprocess on loopback, SQLite, tokens on).

One server for the module (the ``backend`` fixture in conftest.py; tests/system/legacy runs these same
tests on PostgreSQL); each test uses its own class_div so tests do not see each other's data.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta, timezone

import httpx
import pytest

from watcher_core import wire


@pytest.fixture(scope="module")
def reader(backend):
    with backend.client("read") as c:
        yield c


@pytest.fixture(scope="module")
def writer(backend):
    with backend.client("ingest") as c:
        yield c


# The tests write Korea wall times (what every read shows); the old agents' clocks are UTC, which is what the
# backend reads a naive time as by default (WATCHER_LEGACY_*_TZ), so the helpers post the UTC clock reading.
KST = timezone(timedelta(hours=9))


def utc_clock(kst: str) -> str:
    """A KST wall time as the old agents' UTC clock shows it: ``20250730_090000`` -> ``20250730_000000``,
    ``2025-07-30T09:30:00`` -> ``2025-07-30T00:30:00``; times with an offset are sent as they are."""
    if "_" in kst:
        stem, dot, ext = kst.partition(".")
        t = datetime.strptime(stem, "%Y%m%d_%H%M%S").replace(tzinfo=KST).astimezone(UTC)
        return t.strftime("%Y%m%d_%H%M%S") + dot + ext
    t = datetime.fromisoformat(kst.replace("Z", "+00:00"))
    if t.tzinfo is not None:
        return kst
    return t.replace(tzinfo=KST).astimezone(UTC).replace(tzinfo=None).isoformat()


def snap(writer, base, filename, ts, size):
    r = writer.post(f"{base}/{filename}/{utc_clock(ts)}", json={"bytes": size})
    assert r.status_code == 200, r.text
    assert r.json() == {"message": "Snapshot registered successfully"}


def build(writer, base, ts, exit_code=0, target="/home/coder/project/hw1/a.c", cwd="/home/coder/project/hw1", **extra):
    body = {
        "binary_path": "/usr/bin/gcc",
        "cmdline": f"gcc -o a {target}",
        "exit_code": exit_code,
        "cwd": cwd,
        "target_path": target,
        "timestamp": utc_clock(ts),
    } | extra
    r = writer.post(f"{base}/logs/build", json=body)
    assert r.status_code == 200, r.text
    assert r.json() == {"message": "Build log registered successfully"}
    return body


def run(writer, base, ts, exit_code=0, target="/home/coder/project/hw1/main.py", process_type="python"):
    body = {
        "cmdline": f"python3 {target}",
        "exit_code": exit_code,
        "cwd": "/home/coder/project/hw1",
        "target_path": target,
        "process_type": process_type,
        "timestamp": utc_clock(ts),
    }
    r = writer.post(f"{base}/logs/run", json=body)
    assert r.status_code == 200, r.text
    assert r.json() == {"message": "Run log registered successfully"}
    return body


# ------------------------------------------------------------------------------------------ snapshots


def test_snapshot_write_is_read_at_once_sorted_with_kst_times(reader, writer):
    base = "/api/os-1/hw1/000123"
    assert reader.get(base).json() == []  # an empty answer is not cached (the old API cached it)
    snap(writer, base, "b.c", "20250730_151753", 10)  # KST in the URL, as the platform sends it
    assert reader.get(base).json() == ["b.c"]
    snap(writer, base, "src@util.c", "20250730_140000", 7)
    snap(writer, base, "a.c", "20250730_160000", 3)
    snap(writer, base, "b.c", "20250730_140000.c", 4)  # older, posted later; '.c' suffix tolerated
    assert reader.get(base).json() == ["a.c", "b.c", "src@util.c"]
    assert reader.get(f"{base}/b.c").json() == ["20250730_140000", "20250730_151753"]
    assert reader.get(f"{base}/src@util.c").json() == ["20250730_140000"]
    assert reader.get(f"{base}/nothing.c").json() == []


def test_the_old_writers_utc_clocks_read_back_in_korea_time(backend, reader, writer):
    # The old filemon posts its UTC container clock, the old procmon and the hook naive UTC isoformat();
    # the old backend read both as UTC and answered KST. So do we, by default.
    base = "/api/os-12/hw1/4242"
    assert writer.post(f"{base}/t.c/20250101_030000", json={"bytes": 5}).status_code == 200
    assert reader.get(f"{base}/t.c").json() == ["20250101_120000"]
    assert reader.get("/api/assignment/os-12/hw1").json()["top_7"] == [
        {"student_num": "4242", "timestamp": "20250101_120000", "code_size": 5}
    ]
    body = {
        "cmdline": "<unknown>",
        "exit_code": 0,
        "cwd": "/home/coder/project/hw1",
        "target_path": "ipykernel",
        "process_type": "python",
        "timestamp": "2025-01-01T03:00:05.123456",
    }  # the notebook hook's row
    assert writer.post(f"{base}/logs/run", json=body).status_code == 200
    assert reader.get(f"{base}/logs/run").json()[0]["timestamp"] == "2025-01-01T12:00:05.123456"
    # stored as the right instants: 03:00 UTC
    r = reader.get("/api/v1/courses/os/sections/12/assignments/hw1/students/4242/timeline")
    assert r.status_code == 200, r.text
    save, cell = r.json()["events"]
    assert datetime.fromisoformat(save["timestamp"].replace("Z", "+00:00")) == datetime(2025, 1, 1, 3, 0, tzinfo=UTC)
    assert datetime.fromisoformat(cell["timestamp"].replace("Z", "+00:00")) == datetime(
        2025, 1, 1, 3, 0, 5, 123456, tzinfo=UTC
    )


def test_the_old_hooks_rows_are_notebook_cells_and_read_back_as_it_sent_them(reader, writer):
    base = "/api/os-15/hw1/5150"
    for code, when in ((0, "2025-01-01T03:00:05"), (1, "2025-01-01T03:00:09")):
        body = {
            "cmdline": "<unknown>",
            "exit_code": code,
            "cwd": "/home/coder/project/hw1/lab",
            "target_path": "ipykernel",
            "process_type": "python",
            "timestamp": when,
        }
        assert writer.post(f"{base}/logs/run", json=body).status_code == 200
    assert reader.get(f"{base}/logs/run").json() == [
        {
            "cmdline": "<unknown>",
            "exit_code": code,
            "cwd": "/home/coder/project/hw1/lab",
            "target_path": "ipykernel",
            "process_type": "python",
            "timestamp": when,
            "file_size": 0,
        }
        for code, when in ((1, "2025-01-01T12:00:09"), (0, "2025-01-01T12:00:05"))
    ]
    events = reader.get("/api/v1/courses/os/sections/15/assignments/hw1/students/5150/timeline").json()["events"]
    assert [(e["type"], e["cwd"], e["succeeded"], e["error"]) for e in events] == [
        ("notebook.cell", "lab", True, None),
        ("notebook.cell", "lab", False, "Exception"),
    ]
    # the old runlog counted the hook's rows: so does run_avg
    assert reader.get("/api/run_avg/os-15/hw1").json() == {"avg_count": 2}


def test_student_ids_keep_leading_zeros(reader, writer):
    snap(writer, "/api/os-2/hw1/000777", "a.c", "20250730_000000", 1)
    snap(writer, "/api/os-2/hw1/777", "b.c", "20250730_000000", 2)
    assert reader.get("/api/os-2/hw1/000777").json() == ["a.c"]
    assert reader.get("/api/os-2/hw1/777").json() == ["b.c"]
    top = reader.get("/api/assignment/os-2/hw1").json()["top_7"]
    assert sorted(t["student_num"] for t in top) == ["000777", "777"]


def test_the_platforms_integer_id_finds_the_zero_padded_folder(reader, writer):
    # the platform's studentNum is an Int: for the folder 000321 it asks for 321
    base = "/api/os-13/hw1/000321"
    snap(writer, base, "a.c", "20250730_000000", 5)
    build(writer, base, "2025-07-30T00:00:01", target="/home/coder/project/hw1/a.c")
    run(writer, base, "2025-07-30T00:00:02")
    for tail in ("", "/a.c", "/logs/build", "/logs/run"):
        assert reader.get(f"/api/os-13/hw1/321{tail}").json() == reader.get(f"{base}{tail}").json() != []
    assert reader.get("/api/snapshot_avg/os-13/hw1/321/a.c").json()["snapshot_avg"] == 1
    assert reader.get("/api/assignments/snapshot_avg/os-13/hw1/321").json()["total"] is not None
    assert reader.get("/api/graph_data/os-13/hw1/321/5").json()["trends"] != []
    assert reader.get("/api/os-13/hw1/4321").json() == []  # only numeric equality, not a suffix


def test_two_zero_padded_ids_for_one_number_are_a_409_naming_both(reader, writer):
    snap(writer, "/api/os-14/hw1/0777", "a.c", "20250730_000000", 1)
    snap(writer, "/api/os-14/hw1/00777", "b.c", "20250730_000000", 2)
    r = reader.get("/api/os-14/hw1/777")
    assert r.status_code == 409, r.text
    [err] = r.json()["detail"]
    assert err["loc"] == ["path", "student_id"] and "0777" in err["msg"] and "00777" in err["msg"]
    assert reader.get("/api/os-14/hw1/0777").json() == ["a.c"]  # an exact id is never ambiguous


def test_hyphenated_course_lands_in_v1_under_the_right_course_and_section(backend, reader, writer):
    base = "/api/data-structure-3/hw2/2020123"
    snap(writer, base, "src@main.c", "20250730_090000", 42)  # 09:00 KST = 00:00 UTC
    r = reader.get("/api/v1/courses/data-structure/sections/3/assignments/hw2/students/2020123/timeline")
    assert r.status_code == 200, r.text
    [ev] = r.json()["events"]
    assert (ev["type"], ev["path"], ev["size"], ev["source"], ev["sha256"]) == (
        "file.save",
        "src/main.c",
        42,
        "legacy",
        None,
    )
    assert ev["timestamp"].startswith("2025-07-30T00:00:00")


def test_v1_events_show_in_the_legacy_api(backend, reader):
    t = datetime(2025, 7, 30, 1, 0, tzinfo=UTC)
    common = dict(node="n1", course="os", section="5", student_id="0042", assignment="hw3", timestamp=t)
    events = [
        wire.FileSave(
            event_id="ev-v1-save-0001",
            source="filemon",
            path="lib/x.c",
            sha256=hashlib.sha256(b"x").hexdigest(),
            size=100,
            **common,
        ),
        wire.ProcessCompile(
            event_id="ev-v1-comp-0001",
            source="procmon",
            path="lib/x.c",
            argv=["gcc", "lib/x.c"],
            cwd=".",
            exit_code=0,
            started_at=t,
            compiler="gcc",
            sources=["lib/x.c"],
            **(common | {"timestamp": t.replace(minute=5)}),
        ),
    ]
    assert backend.post_events(events).json()["accepted"] == 2
    assert reader.get("/api/os-5/hw3/0042").json() == ["lib@x.c"]
    assert reader.get("/api/os-5/hw3/0042/lib@x.c").json() == ["20250730_100000"]
    [log] = reader.get("/api/os-5/hw3/0042/logs/build").json()
    assert log == {
        "binary_path": "gcc",
        "cmdline": "gcc lib/x.c",
        "exit_code": 0,
        "cwd": "/home/coder/project/hw3",
        "target_path": "/home/coder/project/hw3/lib/x.c",
        "timestamp": "2025-07-30T10:05:00",
        "file_size": 100,
    }


def test_a_lost_exit_reads_as_256_never_null_or_success(backend, reader):
    # procmon saw the start but not the end: the platform's non-null Int must not read it as success (0)
    t = datetime(2025, 7, 30, 2, 0, tzinfo=UTC)
    common = dict(
        node="n1",
        course="os",
        section="6",
        student_id="0042",
        assignment="hw3",
        timestamp=t,
        source="procmon",
        path="a",
        argv=["./a"],
        cwd=".",
        started_at=t,
    )
    events = [
        wire.ProcessRun(event_id="ev-v1-lost-exit-01", kind="binary", target="a", **common),
        wire.ProcessRun(
            event_id="ev-v1-segv-0001",
            kind="binary",
            target="a",
            signal=11,
            **(common | {"timestamp": t.replace(minute=1)}),
        ),
    ]
    assert backend.post_events(events).json()["accepted"] == 2
    assert [r["exit_code"] for r in reader.get("/api/os-6/hw3/0042/logs/run").json()] == [-11, 256]


def test_bad_input_is_422_naming_the_field(reader, writer):
    base = "/api/os-3/hw1/2020"
    cases = [
        (f"{base}/a.c/20250730-061753", {"bytes": 1}, "timestamp"),
        (f"{base}/a.c/20251399_000000", {"bytes": 1}, "timestamp"),
        (f"{base}/a.c/20250730_061753", {"bytes": -1}, "bytes"),
        (f"{base}/a.c/20250730_061753", {"bytes": "many"}, "bytes"),
        (f"{base}/a.c/20250730_061753", {"bytes": 1, "sha": "x"}, "sha"),
        (f"{base}/a@..@b.c/20250730_061753", {"bytes": 1}, "filename"),
        ("/api/os/hw1/2020/a.c/20250730_061753", {"bytes": 1}, "class_div"),
        ("/api/os-3/hw1/20-20/a.c/20250730_061753", {"bytes": 1}, "student_id"),
        (
            f"{base}/logs/build",
            {
                "binary_path": "gcc",
                "cmdline": "gcc",
                "exit_code": 0,
                "cwd": "/",
                "target_path": "/a.c",
                "timestamp": "yesterday",
            },
            "timestamp",
        ),
        (
            f"{base}/logs/build",
            {
                "binary_path": "gcc",
                "cmdline": "gcc",
                "exit_code": 300,
                "cwd": "/",
                "target_path": "/a.c",
                "timestamp": "2025-07-30T00:00:00",
            },
            "exit_code",
        ),
        (
            f"{base}/logs/run",
            {"cmdline": "x", "exit_code": 0, "cwd": "/", "target_path": "/a", "timestamp": "2025-07-30T00:00:00"},
            "process_type",
        ),
        (
            f"{base}/logs/run",
            {
                "cmdline": "x",
                "exit_code": 0,
                "cwd": "/",
                "target_path": "/a",
                "process_type": "python",
                "timestamp": "0001-01-01T00:00:00",
            },
            "timestamp",
        ),
        (
            f"{base}/logs/run",
            {
                "cmdline": "x\u0000",
                "exit_code": 0,
                "cwd": "/",
                "target_path": "/a",
                "process_type": "python",
                "timestamp": "2025-07-30T00:00:00",
            },
            "cmdline",
        ),
        (f"{base}/a.c/19600101_000000", {"bytes": 1}, "timestamp"),
    ]
    for url, body, field in cases:
        r = writer.post(url, json=body)
        assert r.status_code == 422, (url, body, r.status_code, r.text)
        assert any(field in [str(p) for p in d["loc"]] for d in r.json()["detail"]), (field, r.text)
    # nothing was stored by any of them
    assert reader.get(base).json() == []
    assert reader.get(f"{base}/logs/build").json() == []
    # reads too
    assert reader.get("/api/total_graph_data/os-3/hw1/notatime/20250101_000000").status_code == 422
    r = reader.get("/api/total_graph_data/os-3/hw1/20250102_000000/20250101_000000")
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["path", "end"]
    assert reader.get("/api/graph_data/os-3/hw1/2020/abc").status_code == 422


def test_graph_interval_must_be_positive_with_the_old_message(reader):
    for bad in ("0", "-5"):
        r = reader.get(f"/api/graph_data/os-3/hw1/2020/{bad}")
        assert r.status_code == 400
        assert r.json() == {"detail": "Interval must be a positive integer."}


def test_exact_duplicate_posts_are_stored_once(backend, reader, writer):
    base = "/api/os-4/hw1/31"
    for _ in range(3):
        snap(writer, base, "a.c", "20250730_090000", 10)
        build(writer, base, "2025-07-30T09:10:00")
        run(writer, base, "2025-07-30T09:11:00")
    assert reader.get(f"{base}/a.c").json() == ["20250730_090000"]
    assert reader.get("/api/snapshot_avg/os-4/hw1/31/a.c").json() == {"snapshot_avg": 1, "snapshot_size_avg": 10.0}
    assert len(reader.get(f"{base}/logs/build").json()) == 1
    assert len(reader.get(f"{base}/logs/run").json()) == 1
    # a different fact is a different event
    snap(writer, base, "a.c", "20250730_090000", 11)
    assert reader.get("/api/snapshot_avg/os-4/hw1/31/a.c").json() == {"snapshot_avg": 2, "snapshot_size_avg": 10.5}


def test_auth_401_without_token_and_403_with_the_wrong_scope(backend):
    url = backend.url
    post = lambda headers: httpx.post(f"{url}/api/os-9/hw1/1/a.c/20250730_000000", json={"bytes": 1}, headers=headers)  # noqa: E731
    get = lambda path, headers: httpx.get(f"{url}{path}", headers=headers)  # noqa: E731
    assert post({}).status_code == 401
    assert post({"Authorization": "Bearer not-a-token-at-all-xxxx"}).status_code == 401
    assert post(backend.headers("read")).status_code == 403
    for path in (
        "/api/os-9/hw1/1",
        "/api/os-9/hw1/1/a.c",
        "/api/os-9/hw1/1/logs/build",
        "/api/os-9/hw1/1/logs/run",
        "/api/snapshot_avg/os-9/hw1/1/a.c",
        "/api/assignments/snapshot_avg/os-9/hw1/1",
        "/api/graph_data/os-9/hw1/1/5",
        "/api/assignment/os-9/hw1",
        "/api/total_graph_data/os-9/hw1/20250101_000000/20250102_000000",
        "/api/build_avg/os-9/hw1",
        "/api/run_avg/os-9/hw1",
    ):
        assert get(path, {}).status_code == 401, path
        assert get(path, backend.headers("ingest")).status_code == 403, path
        assert get(path, backend.headers("read")).status_code == 200, path
        assert get(path, backend.headers("admin")).status_code == 200, path
    build_body = {
        "binary_path": "gcc",
        "cmdline": "gcc",
        "exit_code": 0,
        "cwd": "/",
        "target_path": "/a.c",
        "timestamp": "2025-07-30T00:00:00",
    }
    assert httpx.post(f"{url}/api/os-9/hw1/1/logs/build", json=build_body).status_code == 401
    assert (
        httpx.post(f"{url}/api/os-9/hw1/1/logs/build", json=build_body, headers=backend.headers("read")).status_code
        == 403
    )


def test_a_file_named_logs_does_not_collide_with_the_log_routes(reader, writer):
    base = "/api/os-6/hw1/55"
    snap(writer, base, "logs", "20250730_090000", 5)  # a file literally named 'logs'
    snap(writer, base, "logs", "20250730_100000", 6)
    build(writer, base, "2025-07-30T12:00:00")
    # the snapshot route for that file takes real timestamps; 'build'/'run' are the log routes
    assert reader.get(base).json() == ["logs"]
    assert reader.get(f"{base}/logs").json() == ["20250730_090000", "20250730_100000"]
    builds = reader.get(f"{base}/logs/build").json()
    assert len(builds) == 1 and builds[0]["cmdline"].startswith("gcc")
    assert reader.get(f"{base}/logs/run").json() == []
    # a snapshot body sent to .../logs/build is not silently taken for a log, and says why
    r = writer.post(f"{base}/logs/build", json={"bytes": 5})
    assert r.status_code == 422 and "build-log route" in r.text
    assert len(reader.get(f"{base}/logs/build").json()) == 1
    # static prefixes win over a class_div (which always has a '-'): student 'logs', file 'build'
    snap(writer, "/api/os-6/hw1/logs", "build", "20250730_090000", 9)
    assert reader.get("/api/snapshot_avg/os-6/hw1/logs/build").json() == {"snapshot_avg": 1, "snapshot_size_avg": 9.0}
    assert reader.get("/api/os-6/hw1/logs/build").json() == ["20250730_090000"]  # student logs, file build
    # /api/v1 is never taken for a legacy class_div
    assert reader.get("/api/v1/status").status_code == 200


def test_logs_newest_first_with_kst_times_and_real_file_sizes(reader, writer):
    base = "/api/os-7/hw1/2021"
    snap(writer, base, "a.c", "20250730_090000", 100)  # 09:00 KST
    snap(writer, base, "a.c", "20250730_100000", 250)  # 10:00 KST
    snap(writer, base, "main.py", "20250730_090000", 30)
    build(writer, base, "2025-07-30T09:30:00", exit_code=1)  # naive = KST: a.c was 100
    build(writer, base, "2025-07-30T01:30:00Z", exit_code=0)  # = 10:30 KST: a.c was 250
    build(writer, base, "2025-07-30T08:00:00+09:00", exit_code=0)  # before any snapshot: 0
    run(writer, base, "2025-07-30T09:45:00", exit_code=-11)  # killed by SIGSEGV
    run(writer, base, "2025-07-30T09:50:00", target="/home/coder/project/hw1/a.out", process_type="binary")
    builds = reader.get(f"{base}/logs/build").json()
    assert [(b["timestamp"], b["exit_code"], b["file_size"]) for b in builds] == [
        ("2025-07-30T10:30:00", 0, 250),
        ("2025-07-30T09:30:00", 1, 100),
        ("2025-07-30T08:00:00", 0, 0),
    ]
    # the old procmon's full compiler path is kept, as the old API kept it
    assert builds[0] == {
        "binary_path": "/usr/bin/gcc",
        "cmdline": "gcc -o a /home/coder/project/hw1/a.c",
        "exit_code": 0,
        "cwd": "/home/coder/project/hw1",
        "target_path": "/home/coder/project/hw1/a.c",
        "timestamp": "2025-07-30T10:30:00",
        "file_size": 250,
    }
    runs = reader.get(f"{base}/logs/run").json()
    assert [(r["timestamp"], r["exit_code"], r["process_type"], r["target_path"], r["file_size"]) for r in runs] == [
        ("2025-07-30T09:50:00", 0, "binary", "/home/coder/project/hw1/a.out", 0),
        ("2025-07-30T09:45:00", -11, "python", "/home/coder/project/hw1/main.py", 30),
    ]


def test_paths_outside_the_assignment_fall_back(reader, writer):
    base = "/api/os-7/hw2/2022"
    build(writer, base, "2025-07-30T09:30:00", target="/tmp/x.c", cwd="/tmp")
    build(
        writer, base, "2025-07-30T09:31:00", target="/home/coder/project/hw2/sub/y.c", cwd="/home/coder/project/hw2/sub"
    )
    newest, oldest = reader.get(f"{base}/logs/build").json()
    assert (newest["cwd"], newest["target_path"]) == ("/home/coder/project/hw2/sub", "/home/coder/project/hw2/sub/y.c")
    assert (oldest["cwd"], oldest["target_path"]) == ("/home/coder/project/hw2", "")


def test_student_monitoring_and_per_file_average(reader, writer):
    base = "/api/os-8/hw1/7"
    snap(writer, base, "a.c", "20250730_090000", 10)
    snap(writer, base, "a.c", "20250730_093000", 20)
    snap(writer, base, "b.c", "20250730_100000", 40)
    assert reader.get("/api/snapshot_avg/os-8/hw1/7/a.c").json() == {"snapshot_avg": 2, "snapshot_size_avg": 15.0}
    assert reader.get("/api/snapshot_avg/os-8/hw1/7/zzz.c").json() == {"snapshot_avg": None, "snapshot_size_avg": None}
    assert reader.get("/api/assignments/snapshot_avg/os-8/hw1/7").json() == {
        "snapshot_avg": 3,
        "snapshot_size_avg": 23.33,
        "first": "2025-07-30T09:00:00",
        "last": "2025-07-30T10:00:00",
        "total": 3600.0,
        "interval": 1800.0,
    }
    assert reader.get("/api/assignments/snapshot_avg/os-8/hw1/8").json() == {
        "snapshot_avg": None,
        "snapshot_size_avg": None,
        "first": None,
        "last": None,
        "total": None,
        "interval": None,
    }


def test_graph_data_buckets_hand_computed(reader, writer):
    base = "/api/os-10/hw1/1"
    # minutes after 09:00 KST (= 00:00 UTC): a=100 @0, b=50 @4, a=120 @9 | (10-20 empty) | b=0 @25 | c=10 @31, a=200 @39
    for name, minute, size in [
        ("a.c", 0, 100),
        ("b.c", 4, 50),
        ("a.c", 9, 120),
        ("b.c", 25, 0),
        ("c.c", 31, 10),
        ("a.c", 39, 200),
    ]:
        snap(writer, base, name, f"20250730_09{minute:02d}00", size)
    assert reader.get("/api/graph_data/os-10/hw1/1/10").json() == {
        "trends": [
            {"timestamp": "20250730_0900", "total_size": 170, "size_change": 170},
            {"timestamp": "20250730_0920", "total_size": 120, "size_change": -50},
            {"timestamp": "20250730_0930", "total_size": 210, "size_change": 90},
        ]
    }
    assert reader.get("/api/graph_data/os-10/hw1/1/60").json() == {
        "trends": [{"timestamp": "20250730_0900", "total_size": 210, "size_change": 210}]
    }
    assert reader.get("/api/graph_data/os-10/hw1/2/10").json() == {"trends": []}


def test_assignment_stats_total_graph_and_averages(reader, writer):
    cd = "algo-lab-1"  # hyphenated course
    for sid, name, ts, size in [
        ("001", "a.c", "20250730_090000", 100),
        ("001", "a.c", "20250730_091000", 300),
        ("002", "m.py", "20250730_090500", 50),
        ("003", "x.c", "20250730_090100", 10),
        ("003", "y.c", "20250730_090200", 20),
        ("003", "x.c", "20250730_092000", 30),
    ]:
        snap(writer, f"/api/{cd}/hw1/{sid}", name, ts, size)
    st = reader.get(f"/api/assignment/{cd}/hw1").json()
    # sizes 10 20 30 50 100 300: p90 at position 4.5 -> 200; p50 at 2.5 -> 40
    assert st == {
        "percentile_90": 200.0,
        "percentile_50": 40.0,
        "avg_bytes": 90.0,
        "avg_num": 2.0,
        "top_7": [
            {"student_num": "003", "timestamp": "20250730_092000", "code_size": 30},
            {"student_num": "001", "timestamp": "20250730_091000", "code_size": 300},
            {"student_num": "002", "timestamp": "20250730_090500", "code_size": 50},
        ],
    }
    # window 09:01..09:20 KST inclusive: 001 has one snapshot (0); 002 one (0); 003: x 10 -> 30 = 20, y once = 0
    r = reader.get(f"/api/total_graph_data/{cd}/hw1/20250730_090100/20250730_092000")
    assert r.json() == {
        "results": [
            {"student_num": "001", "size_change": 0},
            {"student_num": "002", "size_change": 0},
            {"student_num": "003", "size_change": 20},
        ]
    }
    # the same window as ISO 8601 bounds (KST without offset, or with an offset)
    r2 = reader.get(f"/api/total_graph_data/{cd}/hw1/2025-07-30T09:01:00/2025-07-30T00:20:00Z")
    assert r2.json() == r.json()
    r3 = reader.get(f"/api/total_graph_data/{cd}/hw1/20250730_090000/20250730_092000")
    assert r3.json()["results"][0] == {"student_num": "001", "size_change": 200}
    assert reader.get(f"/api/assignment/{cd}/hw9").json() == {
        "percentile_90": 0.0,
        "percentile_50": 0.0,
        "avg_bytes": 0.0,
        "avg_num": 0.0,
        "top_7": [],
    }

    # build_avg / run_avg: 3 builds by 2 students -> 1.5; 1 run by 1 student -> 1.0; none -> 0.0
    build(writer, f"/api/{cd}/hw1/001", "2025-07-30T09:30:00")
    build(writer, f"/api/{cd}/hw1/001", "2025-07-30T09:31:00", exit_code=1)
    build(writer, f"/api/{cd}/hw1/002", "2025-07-30T09:32:00")
    run(writer, f"/api/{cd}/hw1/003", "2025-07-30T09:33:00")
    assert reader.get(f"/api/build_avg/{cd}/hw1").json() == {"avg_count": 1.5}
    assert reader.get(f"/api/run_avg/{cd}/hw1").json() == {"avg_count": 1.0}
    assert reader.get(f"/api/build_avg/{cd}/hw9").json() == {"avg_count": 0.0}


def test_legacy_writes_are_counted_with_bounded_labels(backend, writer):
    def metric(name_and_labels: str) -> float:
        text = httpx.get(backend.url + "/metrics").text
        for line in text.splitlines():
            if line.startswith(name_and_labels + " "):
                return float(line.split()[-1])
        return 0.0

    accepted = 'watcher_events_ingested_total{result="accepted",type="process.run"}'
    duplicate = 'watcher_events_ingested_total{result="duplicate",type="process.run"}'
    before_a, before_d = metric(accepted), metric(duplicate)
    run(writer, "/api/os-11/hw1/1", "2025-07-30T09:00:00")
    run(writer, "/api/os-11/hw1/1", "2025-07-30T09:00:00")
    assert (metric(accepted) - before_a, metric(duplicate) - before_d) == (1.0, 1.0)
    text = httpx.get(backend.url + "/metrics").text
    assert 'endpoint="/api/{class_div}/{hw_name}/{student_id}/logs/run"' in text
    assert "/api/os-11/" not in text  # the raw path never becomes a label (the old API's cardinality bug)
