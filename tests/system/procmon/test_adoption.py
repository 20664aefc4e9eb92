"""Students' programs that were already running when procmon started (a server, a REPL, a program
waiting for input across a DaemonSet rollout): adopted from /proc at start and reported at their exit,
once, even across a second restart; other people's programs are not adopted."""

from __future__ import annotations

import shutil
import signal
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from system.procmon.pm_helpers import PYTHON, Procmon, wait_events, wait_healthy, write

from support.backend import run_backend

# Waits for a flag file, then exits with 3 (a program waiting for its input).
WAITER = """import os, sys, time
while not os.path.exists(sys.argv[1]):
    time.sleep(0.05)
sys.exit(3)
"""


@pytest.fixture
def backend(tmp_path, ebpf_ready):
    b = run_backend(tmp_path)
    yield b
    b.stop()


def adopted_pids(pm: Procmon) -> list[int]:
    return [
        int(line.split("adopted pid ", 1)[1].split()[0]) for line in pm.log().splitlines() if "adopted pid " in line
    ]


def wait_exec(proc, text: str, timeout: float = 30) -> None:
    """Until the spawned process runs the program (its command line contains ``text``)."""
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, f"{text}: exited with {proc.returncode}"
        try:
            if text in Path(f"/proc/{proc.pid}/cmdline").read_bytes().decode(errors="replace"):
                return
        except OSError:
            pass
        assert time.monotonic() < deadline, f"{text} not running after {timeout}s"
        time.sleep(0.05)


@pytest.mark.parametrize("mode", ["ebpf", "proc-connector"])
def test_programs_running_before_the_start_are_reported_at_their_exit(backend, tmp_path, container, mode):
    student = "202400061" if mode == "ebpf" else "202400062"
    ws = tmp_path / "ws"
    hw = ws / f"os-1-{student}" / "hw1"
    hw.mkdir(parents=True)
    shutil.copy("/bin/sleep", hw / "server")  # a student binary that runs until killed
    write(hw / "wait.py", WAITER)
    flag = tmp_path / "go"
    elsewhere = tmp_path / "elsewhere" / f"os-1-{student}" / "hw1"  # same layout, outside the workspace
    elsewhere.mkdir(parents=True)
    shutil.copy("/bin/sleep", elsewhere / "server")

    c = container("adopt")
    server = c.spawn("exec ./server 300", hw)
    waiter = c.spawn(f"exec {PYTHON} wait.py {flag}", hw)
    other = c.spawn("exec ./server 300", elsewhere)
    pm = Procmon(tmp_path, ws, backend.url, backend.tokens["ingest"], "--mode", mode)
    try:
        for proc, text in ((server, "./server"), (waiter, "wait.py"), (other, "./server")):
            wait_exec(proc, text)
        before_start = datetime.now(UTC)
        pm.start()
        wait_healthy(pm)
        adopted = adopted_pids(pm)
        assert server.pid in adopted and waiter.pid in adopted, pm.log()[-3000:]
        assert other.pid not in adopted
        assert pm.metric("procmon_adopted_total") >= 2
        assert pm.metric('procmon_cgroups{verdict="student"}') >= 1  # their cgroup was taught
        assert any("adopted" in line and "running student processes" in line for line in pm.log().splitlines())

        # a second procmon run (a rollout) adopts them again: still one event each at their exit
        assert pm.stop() == 0
        pm.start(ready=False)
        wait_healthy(pm)
        assert adopted_pids(pm).count(server.pid) == 2, pm.log()[-3000:]

        server.send_signal(signal.SIGTERM)
        assert server.wait(30) == -signal.SIGTERM
        (run,) = wait_events(backend, "os", "1", student, "hw1", 1, kind="binary")
        assert (run["target"], run["signal"], run["exit_code"]) == ("server", 15, None), run
        assert run["argv"] == ["./server", "300"] and run["pid"] == server.pid
        started = datetime.fromisoformat(run["started_at"].replace("Z", "+00:00"))
        assert started < before_start, (run["started_at"], before_start)

        flag.touch()
        assert waiter.wait(30) == 3
        (py,) = wait_events(backend, "os", "1", student, "hw1", 1, kind="python")
        assert (py["target"], py["exit_code"], py["signal"]) == ("wait.py", 3, None), py
        assert datetime.fromisoformat(py["started_at"].replace("Z", "+00:00")) < before_start

        other.send_signal(signal.SIGTERM)
        other.wait(30)
        time.sleep(1)  # anything late (a duplicate, the non-student) would be delivered by now
        pm.wait_metric("watcher_outbox_events", lambda v: v == 0)
        events = wait_events(backend, "os", "1", student, "hw1", 2)
        assert sorted(e["kind"] for e in events) == ["binary", "python"], events
    finally:
        for p in (server, waiter, other):
            if p.poll() is None:
                p.kill()
                p.wait(10)
        pm.stop()


def test_a_program_running_in_a_student_pod_before_the_start_is_adopted(backend, tmp_path, container):
    """The Kubernetes case: the pod's hostname says whose it is, paths are inside the pod."""
    files = tmp_path / "pod-files"
    (files / "hw3").mkdir(parents=True)
    shutil.copy("/bin/sleep", files / "hw3" / "server")
    ws = tmp_path / "ws"
    ws.mkdir()
    server = container("adopt-pod").pod_spawn(
        "exec ./server 300", "jcode-os-1-202400064-7d9f8b6c5d-x2x7z", files, "hw3"
    )
    pm = Procmon(tmp_path, ws, backend.url, backend.tokens["ingest"], "--mode", "ebpf")
    try:
        wait_exec(server, "./server")
        before_start = datetime.now(UTC)
        pm.start()
        wait_healthy(pm)
        assert server.pid in adopted_pids(pm), pm.log()[-3000:]
        server.send_signal(signal.SIGTERM)
        assert server.wait(30) == -signal.SIGTERM
        (run,) = wait_events(backend, "os", "1", "202400064", "hw3", 1)
        assert (run["type"], run["kind"], run["target"], run["cwd"]) == ("process.run", "binary", "server", ".")
        assert (run["signal"], run["exit_code"]) == (15, None)
        assert datetime.fromisoformat(run["started_at"].replace("Z", "+00:00")) < before_start
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(10)
        pm.stop()
