"""``watcher import legacy`` on an old-format database and snapshot folder made here (the old tables' columns
and the old filemon's folder layout from ../shared/reference/original-watcher.md), then read back through a
REAL backend: the platform's old API (integer ids, KST) and /api/v1 with the contents."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from support.backend import run_backend
from watcher_core import snapshots

OLD_SCHEMA = """
CREATE TABLE snapshot (id INTEGER PRIMARY KEY AUTOINCREMENT, class_div VARCHAR NOT NULL, hw_name VARCHAR NOT NULL,
    student_id INTEGER NOT NULL, filename VARCHAR NOT NULL, timestamp VARCHAR NOT NULL, file_size INTEGER NOT NULL);
CREATE TABLE buildlog (id INTEGER PRIMARY KEY AUTOINCREMENT, class_div VARCHAR NOT NULL, hw_name VARCHAR NOT NULL,
    student_id INTEGER NOT NULL, cwd VARCHAR NOT NULL, binary_path VARCHAR NOT NULL, cmdline VARCHAR NOT NULL,
    exit_code INTEGER NOT NULL, target_path VARCHAR NOT NULL, timestamp DATETIME NOT NULL);
CREATE TABLE runlog (id INTEGER PRIMARY KEY AUTOINCREMENT, class_div VARCHAR NOT NULL, hw_name VARCHAR NOT NULL,
    student_id INTEGER NOT NULL, cmdline VARCHAR NOT NULL, exit_code INTEGER NOT NULL, cwd VARCHAR NOT NULL,
    target_path VARCHAR NOT NULL, process_type VARCHAR NOT NULL, timestamp DATETIME NOT NULL);
"""
# (class_div, hw, db id, filename, KST timestamp, size): the old backend's rows
SNAPSHOTS = [
    ("os-1", "hw1", 123, "a.c", "20250730_151753", 5),
    ("os-1", "hw1", 123, "src@util.c", "20250730_152000", 3),
    ("os-1", "hw1", 123, "a.c", "20250730_153000", 0),  # a deletion (an empty file on disk)
    ("os-1", "hw1", 123, "b.c", "20250730_154000", 9),  # its file is missing from the folder
    ("os-1", "hw1", 777, "m.c", "20250730_150000", 1),  # two folders 0777 and 00777: ambiguous
    ("os-1", "hw1", 42, "z.c", "20250730_150000", 2),  # no folder at all: stays 42
    ("os", "hw1", 1, "a.c", "20250730_150000", 1),  # bad: class_div without a section
    ("os-1", "hw1", 123, "a.c", "yesterday", 1),  # bad: not a time
]
# the old filemon's folder: {class_div}/{hw}/{folder id}/{filename}/{UTC time}{ext}; the file's time is
# taken a moment after the database's (15:17:53 KST = 06:17:53 UTC, file 06:17:54)
FOLDER = {
    "os-1/hw1/000123/a.c/20250730_061754.c": b"hello",
    "os-1/hw1/000123/src@util.c/20250730_062000.c": b"abc",
    "os-1/hw1/000123/a.c/20250730_063000.c": b"",
    "os-1/hw1/000123/a.c/20250730_064500.c": b"final!",  # the POST failed: only on disk
    "os-1/hw1/0777/m.c/20250730_060000.c": b"x",
    "os-1/hw1/00777/m.c/20250730_060000.c": b"y",
    "os-1/hw1/000123/a.c/notes.txt": b"?",  # not an old snapshot name
}
BUILD = (
    "os-1",
    "hw1",
    123,
    "/home/coder/project/hw1",
    "/usr/bin/x86_64-linux-gnu-gcc-12",
    "gcc -o a /home/coder/project/hw1/a.c",
    1,
    "/home/coder/project/hw1/a.c",
    "2025-07-30 15:18:00.250000",
)
RUNS = [
    (
        "os-1",
        "hw1",
        123,
        "./a",
        0,
        "/home/coder/project/hw1",
        "/home/coder/project/hw1/a",
        "binary",
        "2025-07-30 15:19:00",
    ),
    (
        "os-1",
        "hw1",
        123,
        "<unknown>",
        1,
        "/home/coder/project/hw1",
        "ipykernel",
        "python",
        "2025-07-30 15:21:00.5",
    ),  # the notebook hook's row
]


def make_old(tmp: Path) -> tuple[Path, Path]:
    db_path, folder = tmp / "old.db", tmp / "old-snapshots"
    db = sqlite3.connect(db_path)
    db.executescript(OLD_SCHEMA)
    db.executemany(
        "INSERT INTO snapshot (class_div, hw_name, student_id, filename, timestamp, file_size) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        SNAPSHOTS,
    )
    db.execute(
        "INSERT INTO buildlog (class_div, hw_name, student_id, cwd, binary_path, cmdline, exit_code, "
        "target_path, timestamp) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        BUILD,
    )
    db.executemany(
        "INSERT INTO runlog (class_div, hw_name, student_id, cmdline, exit_code, cwd, target_path, "
        "process_type, timestamp) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        RUNS,
    )
    db.commit()
    db.close()
    for rel, data in FOLDER.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    return db_path, folder


def watcher_import(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "watcher_core", "import", "legacy", *args], capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("import")
    db_path, folder = make_old(tmp)
    url, store = f"sqlite:///{tmp / 'new' / 'watcher.db'}", tmp / "new" / "snapshots"
    args = ("--database", str(db_path), "--snapshots", str(folder), "--database-url", url, "--snapshot-dir", str(store))
    first, second = watcher_import(*args), watcher_import(*args)
    with run_backend(tmp, database_url=url, snapshot_dir=store) as backend:
        yield first, second, backend


def test_the_summary_says_what_was_imported_and_what_was_skipped_and_why(imported):
    first, _, _ = imported
    assert first.returncode == 0, first.stderr
    out = first.stderr
    assert "read 8 snapshot, 1 buildlog, 2 runlog rows" in out
    # 6 good snapshot rows + 3 saves found only on disk (000123's last a.c; 0777's and 00777's m.c, as the
    # database's 777 could not be given to either) + 1 compile + 2 runs
    assert (
        "stored 12 new events (9 file.save, 1 process.compile, 1 process.run, 1 notebook.cell); 0 were already stored"
    ) in out
    assert "saves with their content: 6; without: 3; 3 saves only in the folder" in out
    assert "1 integer student ids took their folder's leading zeros (123->000123)" in out
    assert "student id 777 of os-1 matches several folders (00777, 0777): kept as 777" in out
    assert "skipped 1 snapshot rows: class_div is not {course}-{section} (e.g. snapshot os/hw1/1)" in out
    assert "skipped 1 snapshot rows: timestamp is not YYYYMMDD_HHMMSS" in out
    assert "skipped 1 folder rows: file name is not YYYYMMDD_HHMMSS{ext} (e.g. os-1/hw1/000123/a.c/notes.txt)" in out
    assert "Traceback" not in out


def test_a_second_run_stores_nothing_twice(imported):
    _, second, backend = imported
    assert second.returncode == 0, second.stderr
    assert "stored 0 new events (none); 12 were already stored" in second.stderr
    with backend.client("read") as c:
        assert c.get("/api/os-1/hw1/000123/a.c").json() == ["20250730_151753", "20250730_153000", "20250730_154500"]


def test_the_platform_reads_the_old_data_with_its_integer_id(imported):
    _, _, backend = imported
    with backend.client("read") as c:
        assert c.get("/api/os-1/hw1/123").json() == ["a.c", "b.c", "src@util.c"]
        assert c.get("/api/os-1/hw1/123/src@util.c").json() == ["20250730_152000"]
        [build] = c.get("/api/os-1/hw1/123/logs/build").json()
        assert (build["exit_code"], build["cmdline"], build["timestamp"], build["file_size"]) == (
            1,
            "gcc -o a /home/coder/project/hw1/a.c",
            "2025-07-30T15:18:00.250000",
            5,
        )
        runs = c.get("/api/os-1/hw1/123/logs/run").json()
        assert [(r["timestamp"], r["exit_code"], r["process_type"]) for r in runs] == [
            ("2025-07-30T15:21:00.500000", 1, "python"),
            ("2025-07-30T15:19:00", 0, "binary"),
        ]
        assert c.get("/api/os-1/hw1/42").json() == ["z.c"]
        assert c.get("/api/os-1/hw1/777").json() == ["m.c"]  # the database's row, kept as 777
        assert c.get("/api/os-1/hw1/0777/m.c").json() == c.get("/api/os-1/hw1/00777/m.c").json() == ["20250730_150000"]


def test_every_old_save_keeps_its_content(imported):
    _, _, backend = imported
    with backend.client("read") as c:
        r = c.get("/api/v1/courses/os/sections/1/assignments/hw1/students/000123/timeline")
        assert r.status_code == 200, r.text
        saves = [e for e in r.json()["events"] if e["type"] == "file.save"]
        assert {e["source"] for e in r.json()["events"]} == {"import"}
        contents = {}
        for e in saves:
            contents[(e["path"], e["timestamp"][:19])] = (
                c.get(f"/api/v1/snapshots/{e['sha256']}").content if e["sha256"] else None
            )
    assert contents == {
        ("a.c", "2025-07-30T06:17:53"): b"hello",
        ("src/util.c", "2025-07-30T06:20:00"): b"abc",
        ("a.c", "2025-07-30T06:30:00"): b"",
        ("b.c", "2025-07-30T06:40:00"): None,  # the old folder had no file for it
        ("a.c", "2025-07-30T06:45:00"): b"final!",  # only on disk: the old backend never had it
    }
    # Written compressed into the store, like filemon's saves.
    assert {snapshots.stored_form(backend.snapshot_dir, e["sha256"]) for e in saves if e["sha256"]} == {"whole"}


def test_bad_options_and_a_database_that_is_not_the_old_one_say_what_to_do(tmp_path):
    r = watcher_import("--database", str(tmp_path / "missing.db"))
    assert r.returncode == 2 and "--database:" in r.stderr and "is not a file" in r.stderr
    other = tmp_path / "other.db"
    sqlite3.connect(other).executescript("CREATE TABLE t (x INTEGER);")
    r = watcher_import(
        "--database",
        str(other),
        "--database-url",
        f"sqlite:///{tmp_path / 'n.db'}",
        "--snapshot-dir",
        str(tmp_path / "s"),
    )
    assert r.returncode == 1 and "is this the old Watcher's database?" in r.stderr and "Traceback" not in r.stderr
