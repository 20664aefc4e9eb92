"""Debounce timings with real inotify, and faults: lost events (overflow), inotify limits, backend outage."""

import errno
import logging
import os
import time
from datetime import datetime

import pytest
from inotify_simple import Event, flags
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
from watcher_agents.filemon import watcher as watcher_mod


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    with run_backend(tmp_path_factory.mktemp("backend")) as b:
        yield b


def saves(backend, st, path, assignment="hw1"):
    return sorted(by_path(timeline(backend, st, assignment), "file.save").get(path, []), key=lambda e: e["id"])


def test_steady_writes_are_debounced_to_about_two_snapshots(backend, tmp_path):
    ws = tmp_path / "ws"
    st = new_student()
    d = student_dir(ws, st) / "hw1"
    d.mkdir(parents=True)
    with running_filemon(ws, tmp_path / "state", backend) as agent:
        start = time.time()
        for i in range(50):  # every 100 ms for 5 s
            (d / "log.py").write_bytes(f"print({i})\n".encode())
            time.sleep(0.1)
        final = b"print(49)\n"
        wait_until(
            lambda: any(e["sha256"] == sha(final) for e in saves(backend, st, "log.py")),
            20,
            message="the final content",
        )
        agent.pipeline.wait_idle(5)
        got = saves(backend, st, "log.py")
    # about one per max-wait (3 s) plus the final one; the old debouncer gave one per write
    assert 2 <= len(got) <= 4, [e["size"] for e in got]
    first = datetime.fromisoformat(got[0]["received_at"]).timestamp() - start
    assert first >= 2.5, f"first snapshot after {first:.2f}s: the max wait (3 s) was not respected"


def test_a_single_save_waits_for_the_quiet_period(backend, tmp_path):
    ws = tmp_path / "ws"
    st = new_student()
    d = student_dir(ws, st) / "hw1"
    d.mkdir(parents=True)
    with running_filemon(ws, tmp_path / "state", backend, extra=["--debounce", "1.0"]):
        t0 = time.time()
        (d / "q.c").write_bytes(b"q\n")
        (ev,) = wait_until(lambda: saves(backend, st, "q.c"), 20, message="save")
    assert datetime.fromisoformat(ev["received_at"]).timestamp() - t0 >= 0.9


def test_overflow_rescan_recovers_lost_events(backend, tmp_path, caplog):
    ws = tmp_path / "ws"
    st = new_student()
    d = student_dir(ws, st) / "hw1"
    d.mkdir(parents=True)
    (d / "kept.c").write_bytes(b"kept\n")
    (d / "doomed.c").write_bytes(b"doomed\n")
    with running_filemon(ws, tmp_path / "state", backend) as agent:
        wait_until(lambda: saves(backend, st, "kept.c") and saves(backend, st, "doomed.c"), message="startup saves")
        # Fault: the kernel drops events (a full inotify queue). Read and discard everything for a while.
        ino = agent.watcher.inotify
        real_read = ino.read
        ino.read = lambda timeout=None, read_delay=None: (real_read(timeout=0), [])[1]
        try:
            (d / "kept.c").write_bytes(b"kept, edited\n")
            (d / "new.c").write_bytes(b"new\n")
            os.unlink(d / "doomed.c")
            (d / "sub").mkdir()
            (d / "sub" / "deep.c").write_bytes(b"deep\n")
            time.sleep(1.0)
            assert len(saves(backend, st, "kept.c")) == 1  # the edit was really lost
        finally:
            ino.read = real_read
        with caplog.at_level(logging.WARNING, logger="watcher_agents.filemon.watcher"):
            agent.watcher.inject(Event(wd=-1, mask=flags.Q_OVERFLOW, cookie=0, name=""))
            wait_until(
                lambda: any(e["sha256"] == sha(b"kept, edited\n") for e in saves(backend, st, "kept.c")),
                message="rescan found the edit",
            )
        wait_until(
            lambda: (
                saves(backend, st, "new.c")
                and by_path(timeline(backend, st), "file.delete").get("doomed.c")
                and saves(backend, st, "sub/deep.c")
            ),
            message="rescan found the new file and the delete",
        )
        assert metric(agent, "filemon_rescans_total", {"reason": "overflow"}) == 1
        assert any("overflow" in r.getMessage() for r in caplog.records)
        # the new directory is watched after the rescan
        (d / "sub" / "after.c").write_bytes(b"after\n")
        wait_until(lambda: saves(backend, st, "sub/after.c"), message="watch on the rescanned directory")
        agent.pipeline.wait_idle(5)
    assert len(saves(backend, st, "kept.c")) == 2  # unchanged files were not reported again


def test_watch_limit_enospc_one_line_metrics_and_polling(backend, tmp_path, caplog):
    ws = tmp_path / "ws"
    ok, starved = new_student(), new_student()
    for s in (ok, starved):
        (student_dir(ws, s) / "hw1").mkdir(parents=True)
    starved_name = "-".join(starved)
    blocked = {"on": True}

    def install_fault(agent):
        real = agent.watcher.add_watch

        def add_watch(path):  # fault: the watch budget is used up for this student's directories
            if blocked["on"] and starved_name in path:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real(path)

        agent.watcher.add_watch = add_watch

    with caplog.at_level(logging.ERROR, logger="watcher_agents.filemon.watcher"):
        with running_filemon(
            ws, tmp_path / "state", backend, extra=["--poll-interval", "0.5"], before_start=install_fault
        ) as agent:
            lines = [r.getMessage() for r in caplog.records if "max_user_watches" in r.getMessage()]
            assert len(lines) == 1, lines
            assert "fs.inotify.max_user_watches" in lines[0] and "needs" in lines[0]
            assert metric(agent, "filemon_watches_missing") == 2  # student dir + hw1
            # still serving: the watched student live, the starved one by polling
            (student_dir(ws, ok) / "hw1" / "a.c").write_bytes(b"watched\n")
            (student_dir(ws, starved) / "hw1" / "b.c").write_bytes(b"polled\n")
            wait_until(lambda: saves(backend, ok, "a.c"), message="watched save")
            wait_until(lambda: saves(backend, starved, "b.c"), message="polled save")
            # the limit is raised: the next poll watches the directories
            blocked["on"] = False
            wait_until(lambda: metric(agent, "filemon_watches_missing") == 0, message="watches recovered")
            (student_dir(ws, starved) / "hw1" / "c.c").write_bytes(b"live again\n")
            wait_until(lambda: saves(backend, starved, "c.c"), message="save after recovery")
    assert len([r for r in caplog.records if "max_user_watches" in r.getMessage()]) == 1


def test_no_inotify_instance_emfile_falls_back_to_polling(backend, tmp_path, caplog, monkeypatch):
    ws = tmp_path / "ws"
    st = new_student()
    (student_dir(ws, st) / "hw1").mkdir(parents=True)

    def no_instance():  # fault: max_user_instances used up by kubelet/containerd
        raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))

    monkeypatch.setattr(watcher_mod, "INotify", no_instance)
    with caplog.at_level(logging.ERROR, logger="watcher_agents.filemon.watcher"):
        with running_filemon(ws, tmp_path / "state", backend, extra=["--poll-interval", "0.5"]) as agent:
            lines = [r.getMessage() for r in caplog.records if "max_user_instances" in r.getMessage()]
            assert len(lines) == 1 and "fs.inotify.max_user_instances" in lines[0]
            assert metric(agent, "filemon_watches_missing") >= 2
            (student_dir(ws, st) / "hw1" / "p.c").write_bytes(b"polled\n")
            wait_until(lambda: saves(backend, st, "p.c"), message="save found by polling")
            assert metric(agent, "filemon_rescans_total", {"reason": "poll"}) >= 1
            import httpx

            assert httpx.get(f"http://127.0.0.1:{agent.runtime.http.port}/healthz").status_code == 200


def test_backend_outage_loses_nothing(tmp_path):
    ws = tmp_path / "ws"
    st = new_student()
    d = student_dir(ws, st) / "hw1"
    d.mkdir(parents=True)
    with run_backend(tmp_path / "b") as backend:
        with running_filemon(ws, tmp_path / "state", backend) as agent:
            (d / "before.c").write_bytes(b"before\n")
            wait_until(lambda: saves(backend, st, "before.c"), message="save before the outage")
            backend.stop()
            expected = {}
            for i in range(30):
                data = f"int v{i};\n".encode()
                (d / f"f{i}.c").write_bytes(data)
                expected[f"f{i}.c"] = data
            os.unlink(d / "before.c")
            wait_until(lambda: agent.runtime.outbox.depth() >= 31, message="events queued during the outage")
            wait_until(
                lambda: metric(agent, "watcher_send_failures_total", {"reason": "connection"}) >= 1,
                message="failures counted",
            )
            backend.start()
            wait_until(lambda: agent.runtime.outbox.depth() == 0, 60, message="outbox drained")
        got = by_path(timeline(backend, st), "file.save")
        for rel, data in expected.items():
            assert [e["sha256"] for e in got[rel]] == [sha(data)], rel
        assert len(by_path(timeline(backend, st), "file.delete")["before.c"]) == 1


def test_healthz_is_unhealthy_when_the_watch_loop_or_the_sender_stops(backend, tmp_path):
    import httpx

    ws = tmp_path / "ws"
    ws.mkdir()
    with running_filemon(ws, tmp_path / "state", backend) as agent:
        url = f"http://127.0.0.1:{agent.runtime.http.port}/healthz"
        assert httpx.get(url).status_code == 200
        agent.watcher.stop()  # the watch loop ends
        r = httpx.get(url)
        assert r.status_code == 503 and r.json()["failed"] == ["watch loop alive"]
        agent.runtime.sender.stop()
        r = httpx.get(url)
        assert r.status_code == 503 and set(r.json()["failed"]) == {"watch loop alive", "sender alive"}
