"""`watcher filemon` as a real process: clean shutdown, restart catch-up, SIGKILL in a storm, config errors."""

import os
import random
import re
import subprocess
import sys
import threading
import time

import pytest
from integration.filemon.harness import FilemonProcess, by_path, new_student, sha, student_dir, timeline, wait_until

from support.backend import run_backend


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    with run_backend(tmp_path_factory.mktemp("backend")) as b:
        yield b


def _metric(text: str, name: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _settled(proc: FilemonProcess) -> bool:
    text = proc.metrics_text()
    return (
        _metric(text, "filemon_pipeline_queue") == 0
        and _metric(text, "filemon_pending_files") == 0
        and _metric(text, "watcher_outbox_events") == 0
    )


def test_sigterm_flushes_pending_saves_and_exits_0(backend, tmp_path):
    ws = tmp_path / "ws"
    st = new_student()
    d = student_dir(ws, st) / "hw1"
    d.mkdir(parents=True)
    proc = FilemonProcess(ws, tmp_path / "state", backend, tmp_path / "filemon.log", extra=["--debounce", "2"])
    with proc:
        (d / "last.c").write_bytes(b"saved just before shutdown\n")
        time.sleep(0.3)  # seen by inotify, still inside its 2 s quiet period
        assert proc.terminate() == 0
    assert "received SIGTERM" in proc.logs()
    assert by_path(timeline(backend, st), "file.save").get("last.c"), proc.logs()


def test_restart_catch_up_reports_offline_edits_once(backend, tmp_path):
    ws = tmp_path / "ws"
    st = new_student()
    d = student_dir(ws, st) / "hw1"
    d.mkdir(parents=True)
    names = ["edit1.c", "edit2.py", "same.c", "touched.c", "deleted.c"]
    for n in names:
        (d / n).write_bytes(f"v1 {n}\n".encode())
    state = tmp_path / "state"
    log = tmp_path / "filemon.log"
    with FilemonProcess(ws, state, backend, log) as proc:
        wait_until(lambda: len(by_path(timeline(backend, st), "file.save")) == 5, message="initial saves")
        wait_until(lambda: _settled(proc), message="settled")
        assert proc.terminate() == 0
    # while filemon is down
    (d / "edit1.c").write_bytes(b"v2 edit1\n")
    (d / "edit2.py").write_bytes(b"v2 edit2\n")
    os.utime(d / "touched.c")  # new mtime, same content
    os.unlink(d / "deleted.c")
    (d / "added.c").write_bytes(b"new while down\n")
    with FilemonProcess(ws, state, backend, log) as proc:
        wait_until(
            lambda: _settled(proc) and by_path(timeline(backend, st), "file.delete").get("deleted.c"),
            message="catch-up",
        )
        text = proc.metrics_text()
        assert _metric(text, 'file_events_total{event_type="modify"}') == 2
        assert _metric(text, 'file_events_total{event_type="create"}') == 1
        assert _metric(text, 'file_events_total{event_type="delete"}') == 1
        assert proc.terminate() == 0
    saves = by_path(timeline(backend, st), "file.save")
    assert {n: len(v) for n, v in saves.items()} == {
        "edit1.c": 2,
        "edit2.py": 2,
        "same.c": 1,
        "touched.c": 1,
        "deleted.c": 1,
        "added.c": 1,
    }
    # and a third start with nothing changed reports nothing
    with FilemonProcess(ws, state, backend, log) as proc:
        wait_until(lambda: _settled(proc), message="settled")
        text = proc.metrics_text()
        assert _metric(text, "file_events_total") == 0
        assert proc.terminate() == 0


def test_sigkill_in_a_storm_then_restart_records_every_final_state_once(backend, tmp_path):
    ws = tmp_path / "ws"
    students = [new_student("storm") for _ in range(12)]
    files = []
    for st in students:
        d = student_dir(ws, st) / "hw1"
        (d / "src").mkdir(parents=True)
        for name in ("main.c", "util.c", "util.h", "src/a.py", "src/b.cpp"):
            files.append((st, name))
            (d / name).write_bytes(f"// {name} v0\n".encode())
    state = tmp_path / "state"
    log = tmp_path / "filemon.log"
    proc = FilemonProcess(ws, state, backend, log, extra=["--debounce", "0.1", "--max-wait", "0.5"]).start()
    try:
        wait_until(
            lambda: sum(len(by_path(timeline(backend, st), "file.save")) for st in students) == len(files),
            60,
            message="initial saves",
        )
        final: dict[tuple, bytes | None] = {}
        rng = random.Random(7)
        stop = threading.Event()
        counter = iter(range(1, 10**9))

        def storm():
            while not stop.is_set():
                st, name = rng.choice(files)
                data = f"// {name} v{next(counter)}\n".encode() * rng.randint(1, 50)
                path = student_dir(ws, st) / "hw1" / name
                with open(path, "wb") as fh:  # in place, like most editors
                    fh.write(data)
                final[(st, name)] = data
                time.sleep(0.002)

        writer = threading.Thread(target=storm)
        writer.start()
        time.sleep(2.0)
        proc.kill()  # SIGKILL in the middle of the storm
        assert proc.proc.returncode == -9
        time.sleep(1.5)  # the storm goes on without filemon
        stop.set()
        writer.join()
        for st, name in files[::7]:  # and some files are deleted
            os.unlink(student_dir(ws, st) / "hw1" / name)
            final[(st, name)] = None
        proc.start()

        def all_recorded():
            for st in students:
                events = timeline(backend, st)
                saves, deletes = by_path(events, "file.save"), by_path(events, "file.delete")
                for (s, name), data in final.items():
                    if s != st:
                        continue
                    if data is None:
                        if len(deletes.get(name, [])) != 1:
                            return False
                    elif not any(e["sha256"] == sha(data) for e in saves.get(name, [])):
                        return False
            return True

        wait_until(all_recorded, 90, interval=0.5, message="every final state")
        wait_until(lambda: _settled(proc), message="settled")
        assert proc.terminate() == 0
    finally:
        if proc.proc.poll() is None:
            proc.proc.kill()
    for st in students:
        events = timeline(backend, st)
        saves = by_path(events, "file.save")
        for (s, name), data in final.items():
            if s == st and data is not None:
                assert sum(e["sha256"] == sha(data) for e in saves[name]) == 1, (st, name)
        # no version of any file recorded twice (ids are deterministic; the backend dedupes resends)
        versions = [(e["path"], e["sha256"], e["timestamp"]) for e in events if e["type"] == "file.save"]
        assert len(versions) == len(set(versions)), st
        assert len({e["event_id"] for e in events}) == len(events)


def test_config_errors_are_one_line_and_exit_nonzero(tmp_path):
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "watcher_core",
            "filemon",
            "--workspace-root",
            str(tmp_path / "nope"),
            "--state-dir",
            str(tmp_path / "s"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "workspace root" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "watcher_core",
            "filemon",
            "--workspace-root",
            str(tmp_path),
            "--state-dir",
            str(tmp_path / "s"),
            "--debounce",
            "5",
            "--max-wait",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and re.search(r"--max-wait .* --debounce", r.stderr)
