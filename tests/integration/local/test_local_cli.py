"""``watcher local``, ``watcher demo`` and ``watcher status`` as a user runs them: real subprocesses."""

from __future__ import annotations

import json
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx

from support.ports import free_port
from watcher_local.stack import load_or_create_tokens

WATCHER = [sys.executable, "-m", "watcher_core"]


def watcher(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(WATCHER + list(args), capture_output=True, text=True, timeout=timeout)


def test_local_help_names_every_setting():
    done = watcher("local", "--help")
    assert done.returncode == 0
    for flag in ("--workspace", "--data-dir", "--port", "--database-url", "--procmon", "--filemon-metrics-port"):
        assert flag in done.stdout
    assert done.stdout.startswith("usage: watcher local")


def test_demo_and_status_have_help():
    assert watcher("demo", "--help").stdout.startswith("usage: watcher demo")
    assert watcher("status", "--help").stdout.startswith("usage: watcher status")


def test_a_port_in_use_is_one_line_and_exit_2(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = watcher(
            "local", "--workspace", str(tmp_path / "ws"), "--data-dir", str(tmp_path / "data"), "--port", str(port)
        )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and f"--port {port} is already in use" in lines[0], done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "data").exists()  # nothing was started or created


def test_status_without_a_backend_says_so_in_one_line(tmp_path):
    done = watcher("status", "--backend-url", f"http://127.0.0.1:{free_port()}")
    assert done.returncode == 1
    assert len(done.stderr.strip().splitlines()) == 1 and "Is the backend running?" in done.stderr


def test_local_records_a_save_and_ctrl_c_stops_everything_cleanly(tmp_path):
    """Without procmon (no root needed): start, save a file, see it in status, Ctrl-C flushes, exit 0, tokens kept."""
    ws, data, port = tmp_path / "ws", tmp_path / "data", free_port()
    cmd = WATCHER + [
        "local",
        "--workspace",
        str(ws),
        "--data-dir",
        str(data),
        "--port",
        str(port),
        "--filemon-metrics-port",
        str(free_port()),
        "--procmon",
        "off",
    ]
    out = tmp_path / "local.out"
    with open(out, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while "press Ctrl-C to stop" not in out.read_text():
            assert proc.poll() is None, out.read_text()
            assert time.monotonic() < deadline, out.read_text()
            time.sleep(0.2)
        tokens = json.loads((data / "tokens.json").read_text())
        assert set(tokens) == {"ingest", "read", "admin"}
        assert (data / "tokens.json").stat().st_mode & 0o777 == 0o600
        hw = ws / "os-1-202400001" / "hw1"
        hw.mkdir(parents=True)
        (hw / "main.c").write_text("int main(void) { return 0; }\n")
        deadline = time.monotonic() + 30
        status = {}
        while status.get("events_by_type", {}).get("file.save") != 1:
            assert time.monotonic() < deadline, status
            time.sleep(0.3)
            done = watcher("status", "--backend-url", f"http://127.0.0.1:{port}", "--data-dir", str(data), "--json")
            status = json.loads(done.stdout) if done.returncode == 0 else {}
        table = watcher("status", "--backend-url", f"http://127.0.0.1:{port}", "--data-dir", str(data))
        assert "file.save" in table.stdout and "filemon" in table.stdout
        (hw / "late.c").write_text("int late;\n")  # still in filemon's debounce when Ctrl-C comes
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = out.read_text()
    assert "flushing agent outboxes" in text and text.rstrip().endswith("watcher local: stopped")
    assert "Traceback" not in text
    assert (data / "watcher.db").exists() and (data / "filemon" / "outbox.sqlite3").exists()
    # the clean stop flushed: the late save reached the database, and filemon's outbox is empty
    with sqlite3.connect(data / "watcher.db") as db:
        assert sorted(r[0] for r in db.execute("select path from event where type = 'file.save'")) == [
            "late.c",
            "main.c",
        ]
    with sqlite3.connect(data / "filemon" / "outbox.sqlite3") as outbox:
        assert outbox.execute("select count(*) from outbox").fetchone() == (0,)
    assert load_or_create_tokens(data) == tokens  # generated once; a restart reuses them


def test_demo_runs_and_prints_the_timelines_and_summary(tmp_path):
    done = watcher("demo", "--data-dir", str(tmp_path), "--port", str(free_port()), timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    for sid in ("202012345", "202054321"):
        assert f"Timeline of student {sid} in os-1 hw1" in out
    assert "Summary of os-1 hw1: 2 students, 8 saves" in out
    assert "saved hello.c (88 bytes" in out and "saved hello.c (89 bytes" in out and "deleted scratch.c" in out
    assert "API docs: http://127.0.0.1:" in out and "/docs" in out
    assert "Traceback" not in out + done.stderr
    if "demo: procmon  ready" in out:  # procmon needs root (eBPF or the process connector)
        assert out.count("gcc hello.c -> hello: exit 1") == 2 and out.count("gcc hello.c -> hello: exit 0") == 2
        assert out.count("python calc.py: exit 0") == 2 and out.count("binary hello: exit 0") == 2
        assert "4 compiles (50% succeeded), 4 runs" in out
    else:
        assert "procmon is not running" in out


def test_no_component_outlives_a_killed_watcher_local(tmp_path):
    """SIGKILL of `watcher local` (no chance to clean up): its components get SIGTERM from the kernel."""
    ws, data, port = tmp_path / "ws", tmp_path / "data", free_port()
    out = tmp_path / "local.out"
    with open(out, "wb") as fh:
        proc = subprocess.Popen(
            WATCHER
            + [
                "local",
                "--workspace",
                str(ws),
                "--data-dir",
                str(data),
                "--port",
                str(port),
                "--filemon-metrics-port",
                str(free_port()),
                "--procmon",
                "off",
            ],
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 60
    while "press Ctrl-C to stop" not in out.read_text():
        assert proc.poll() is None and time.monotonic() < deadline, out.read_text()
        time.sleep(0.2)
    children = [int(p) for p in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()]
    assert len(children) == 2  # backend and filemon
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 30
    while any(
        Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text() for pid in children
    ):
        assert time.monotonic() < deadline, "a component outlived watcher local"
        time.sleep(0.2)
    assert not port_answers(port)


def port_answers(port: int) -> bool:
    try:
        httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
        return True
    except httpx.HTTPError:
        return False
