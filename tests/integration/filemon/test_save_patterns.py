"""Every way an editor or a student saves, renames and deletes, with real inotify and the real backend."""

import os
import shutil
import subprocess

import pytest
from integration.filemon.harness import (
    by_path,
    metric,
    new_student,
    running_filemon,
    sha,
    student_dir,
    timeline,
    wait_until,
)

from support.backend import run_backend
from watcher_core import snapshots


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    with run_backend(tmp_path_factory.mktemp("backend")) as b:
        yield b


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    return tmp_path_factory.mktemp("workspace")


@pytest.fixture(scope="module")
def agent(backend, ws, tmp_path_factory):
    with running_filemon(ws, tmp_path_factory.mktemp("state"), backend, extra=["--max-file-size", "4k"]) as a:
        yield a


def saves_of(backend, student, path, assignment="hw1"):
    return by_path(timeline(backend, student, assignment), "file.save").get(path, [])


def wait_for_save(backend, student, path, data: bytes, assignment="hw1", timeout=20):
    digest = sha(data)
    return wait_until(
        lambda: [e for e in saves_of(backend, student, path, assignment) if e["sha256"] == digest],
        timeout,
        message=f"save of {path}",
    )


def test_in_place_write(backend, ws, agent):
    st = new_student()
    d = student_dir(ws, st) / "hw1"
    d.mkdir(parents=True)
    data = b'#include <stdio.h>\nint main(void){puts("hi");}\n'
    (d / "main.c").write_bytes(data)
    (ev,) = wait_for_save(backend, st, "main.c", data)
    assert ev["size"] == len(data) and ev["node"] == "test-node" and ev["source"] == "filemon"
    assert snapshots.read_snapshot(backend.snapshot_dir, ev["sha256"]) == data
    # in-place overwrite (truncate + write, what VS Code does)
    with open(d / "main.c", "r+b") as fh:
        fh.truncate(0)
        fh.write(b"int main(void){return 2;}\n")
    wait_for_save(backend, st, "main.c", b"int main(void){return 2;}\n")


def test_write_temp_then_rename(backend, ws, agent):
    st = new_student()
    d = student_dir(ws, st) / "hw1"
    d.mkdir(parents=True)
    (d / "prog.py").write_bytes(b"print('v1')\n")
    wait_for_save(backend, st, "prog.py", b"print('v1')\n")
    for i in range(2, 4):  # atomic saves: a temp file renamed over the original
        tmp = d / f".prog.py.tmp{i}"
        tmp.write_bytes(f"print('v{i}')\n".encode())
        os.replace(tmp, d / "prog.py")
        wait_for_save(backend, st, "prog.py", f"print('v{i}')\n".encode())
    events = timeline(backend, st)
    assert [e["type"] for e in events] == ["file.save"] * 3  # no delete, nothing for the temp files
    assert all(e["path"] == "prog.py" for e in events)


def test_vim_style_backup_rename_is_a_save_not_a_delete(backend, ws, agent):
    st = new_student()
    d = student_dir(ws, st) / "hw1"
    d.mkdir(parents=True)
    (d / "a.c").write_bytes(b"v1\n")
    wait_for_save(backend, st, "a.c", b"v1\n")
    os.rename(d / "a.c", d / "a.c~")  # vim: move the original to the backup name
    (d / "a.c").write_bytes(b"v2\n")  # write the new file
    os.unlink(d / "a.c~")  # drop the backup
    wait_for_save(backend, st, "a.c", b"v2\n")
    agent.pipeline.wait_idle(5)
    assert [e["type"] for e in timeline(backend, st)] == ["file.save", "file.save"]


def test_copy_and_move_in_from_outside(backend, ws, agent, tmp_path):
    st = new_student()
    d = student_dir(ws, st) / "hw2"
    d.mkdir(parents=True)
    outside = tmp_path / "download.c"
    outside.write_bytes(b"copied\n")
    shutil.copy(outside, d / "copied.c")
    moved = tmp_path / "moved.cpp"
    moved.write_bytes(b"moved in\n")
    os.utime(moved, (1_600_000_000, 1_600_000_000))  # mv keeps old times
    shutil.move(str(moved), d / "moved.cpp")
    wait_for_save(backend, st, "copied.c", b"copied\n", "hw2")
    (ev,) = wait_for_save(backend, st, "moved.cpp", b"moved in\n", "hw2")
    assert not ev["timestamp"].startswith("2020")  # recorded when it arrived, not its old mtime


def test_mkdir_p_race_is_never_missed(backend, ws, agent):
    st = new_student()
    base = student_dir(ws, st) / "hw3"
    base.mkdir(parents=True)
    expected = {}
    for i in range(15):
        # shell, like a student would: the file exists before filemon can watch the new dirs
        rel = f"p{i}/q/r/x{i}.c"
        subprocess.run(["sh", "-c", f"mkdir -p {base}/p{i}/q/r && echo 'int v = {i};' > {base}/{rel}"], check=True)
        expected[rel] = f"int v = {i};\n".encode()
    for rel, data in expected.items():
        wait_for_save(backend, st, rel, data, "hw3")


def test_rename_is_delete_plus_save(backend, ws, agent):
    st = new_student()
    d = student_dir(ws, st) / "hw1"
    d.mkdir(parents=True)
    (d / "old.c").write_bytes(b"body\n")
    wait_for_save(backend, st, "old.c", b"body\n")
    os.rename(d / "old.c", d / "new.c")
    wait_for_save(backend, st, "new.c", b"body\n")
    wait_until(lambda: by_path(timeline(backend, st), "file.delete").get("old.c"), message="delete of old.c")


def test_delete_is_a_delete_event_not_an_empty_snapshot(backend, ws, agent):
    st = new_student()
    d = student_dir(ws, st) / "hw1"
    d.mkdir(parents=True)
    (d / "gone.h").write_bytes(b"#pragma once\n")
    wait_for_save(backend, st, "gone.h", b"#pragma once\n")
    os.unlink(d / "gone.h")
    wait_until(lambda: by_path(timeline(backend, st), "file.delete").get("gone.h"), message="delete event")
    events = timeline(backend, st)
    assert [e["type"] for e in sorted(events, key=lambda e: e["id"])] == ["file.save", "file.delete"]


def test_directory_delete_and_move_away_and_back(backend, ws, agent, tmp_path):
    st = new_student()
    d = student_dir(ws, st) / "hw4"
    (d / "src" / "lib").mkdir(parents=True)
    files = {"src/a.c": b"a\n", "src/lib/b.c": b"b\n", "src/lib/c.h": b"c\n", "top.py": b"t\n"}
    for rel, data in files.items():
        (d / rel).write_bytes(data)
    for rel, data in files.items():
        wait_for_save(backend, st, rel, data, "hw4")
    shutil.rmtree(d / "src" / "lib")
    wait_until(
        lambda: set(by_path(timeline(backend, st, "hw4"), "file.delete")) >= {"src/lib/b.c", "src/lib/c.h"},
        message="deletes for the removed directory",
    )
    shutil.move(str(d / "src"), tmp_path / "away")  # moved out of the workspace
    wait_until(lambda: "src/a.c" in by_path(timeline(backend, st, "hw4"), "file.delete"), message="moved-away delete")
    shutil.move(str(tmp_path / "away"), d / "back")  # and back in under another name
    wait_for_save(backend, st, "back/a.c", b"a\n", "hw4")
    (d / "back" / "later.c").write_bytes(b"watched after the move\n")
    wait_for_save(backend, st, "back/later.c", b"watched after the move\n", "hw4")
    assert "top.py" not in by_path(timeline(backend, st, "hw4"), "file.delete")


def test_ignored_untracked_and_outside_assignment_produce_nothing(backend, ws, agent):
    st = new_student()
    d = student_dir(ws, st) / "hw1"
    for sub in (".git", "venv/lib", "__pycache__", "node_modules/x"):
        (d / sub).mkdir(parents=True)
        (d / sub / "f.py").write_bytes(b"ignored\n")
    (d / "a.out").write_bytes(b"\x7fELF")
    (d / ".main.c.swp").write_bytes(b"swap")
    (student_dir(ws, st) / "notes.c").write_bytes(b"not in an assignment\n")
    with open(os.fsencode(d) + b"/bad\xffname.c", "wb") as fh:  # not UTF-8: cannot be reported, skipped
        fh.write(b"x")
    (d / "real.c").write_bytes(b"tracked\n")  # a marker: once it arrives, the rest had their chance
    wait_for_save(backend, st, "real.c", b"tracked\n")
    agent.pipeline.wait_idle(5)
    assert [e["path"] for e in timeline(backend, st)] == ["real.c"]
    assert not any(p.endswith((".git", "venv", "__pycache__")) for p in agent.watcher.dirs)


def test_too_large_file_is_recorded_without_content(backend, ws, agent):
    st = new_student()
    d = student_dir(ws, st) / "hw1"
    d.mkdir(parents=True)
    (d / "big.ipynb").write_bytes(b"{" + b" " * 5000 + b"}")
    ev = wait_until(lambda: by_path(timeline(backend, st), "file.too_large").get("big.ipynb"), message="too_large")
    assert ev[0]["size"] == 5002 and ev[0]["limit"] == 4096
    assert metric(agent, "filemon_files_skipped_total", {"reason": "too_large"}) >= 1


def test_metrics_and_health(backend, ws, agent):
    import httpx

    base = f"http://127.0.0.1:{agent.runtime.http.port}"
    health = httpx.get(base + "/healthz").json()
    assert health["status"] == "healthy" and health["checks"]["watch loop alive"]
    text = httpx.get(base + "/metrics").text
    for name in (
        'file_events_total{event_type="create"}',
        'file_events_total{event_type="modify"}',
        'file_events_total{event_type="delete"}',
        "watcher_outbox_events",
        "watcher_outbox_oldest_age_seconds",
        "watcher_send_failures_total",
        "filemon_rescans_total",
        "filemon_watches ",
        "filemon_snapshot_bytes_written_total",
        "filemon_files_skipped_total",
    ):
        assert name in text, name
    assert metric(agent, "filemon_watches") > 0
    assert metric(agent, "filemon_rescans_total", {"reason": "startup"}) == 1
