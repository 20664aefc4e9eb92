"""The netlink process-connector fallback, for real: chosen explicitly, chosen automatically when bcc
fails (fault injected with a stand-in `bcc` module), and a non-zero exit when neither can trace."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from system.procmon.pm_helpers import GCC, Procmon, wait_events, write

from support.backend import run_backend

# The connector carries pids only: argv and cwd come from /proc, so the program must still be
# there when the event is read (documented limit of the fallback); it lives 200 ms, then crashes.
SEGV = "#include <unistd.h>\nint main(void){ volatile int *p = 0; usleep(200000); return *p; }\n"
BROKEN_BCC = """
class BPF:
    def __init__(self, *args, **kwargs):
        raise Exception("fatal error: 'linux/sched.h' file not found (injected by the test)")
"""


@pytest.fixture
def backend(tmp_path, ebpf_ready):
    b = run_backend(tmp_path)
    yield b
    b.stop()


def _exercise(backend, ws, container, student: str):
    hw = ws / f"os-2-{student}" / "hw1"
    write(hw / "ok.c", "int main(void){ return 0; }\n")
    write(hw / "bad.c", "int main(void){ nope }\n")
    write(hw / "seg.c", SEGV)
    c = container("fallback")
    c.sh(f"{GCC} ok.c -o ok; {GCC} bad.c -o bad; {GCC} seg.c -o seg && ./seg", hw)
    events = wait_events(backend, "os", "2", student, "hw1", 4)
    compiles = sorted((e["path"], e["exit_code"]) for e in events if e["type"] == "process.compile")
    runs = [(e["target"], e["signal"], e["exit_code"]) for e in events if e["type"] == "process.run"]
    assert compiles == [("bad.c", 1), ("ok.c", 0), ("seg.c", 0)]
    assert runs == [("seg", 11, None)]


def test_proc_connector_mode(backend, tmp_path, container):
    ws = tmp_path / "ws"
    ws.mkdir()
    pm = Procmon(tmp_path, ws, backend.url, backend.tokens["ingest"], "--mode", "proc-connector").start()
    try:
        _exercise(backend, ws, container, "300001")
        assert pm.metric('procmon_mode{mode="proc-connector"}') == 1.0
        assert pm.metric('procmon_mode{mode="ebpf"}') == 0.0
        health = pm.health().json()
        assert health["status"] == "healthy" and health["checks"]["tracer alive (mode proc-connector)"]
        assert health["mode"] == "proc-connector" and health["checks"]["tracer attached"]
        assert "eBPF" not in pm.log()  # not even tried
    finally:
        pm.stop()


def test_auto_falls_back_with_one_line_saying_why(backend, tmp_path, container):
    ws = tmp_path / "ws"
    ws.mkdir()
    fake = tmp_path / "fake-bcc"
    write(fake / "bcc" / "__init__.py", BROKEN_BCC)
    pm = Procmon(tmp_path, ws, backend.url, backend.tokens["ingest"], env={"PYTHONPATH": str(fake)}).start()
    try:
        lines = [line for line in pm.log().splitlines() if "eBPF unavailable" in line]
        assert len(lines) == 1, pm.log()
        assert "linux/sched.h" in lines[0] and "falling back to the netlink process connector" in lines[0]
        assert pm.metric('procmon_mode{mode="proc-connector"}') == 1.0
        _exercise(backend, ws, container, "300002")
    finally:
        pm.stop()


def test_ebpf_mode_does_not_fall_back(backend, tmp_path):
    fake = tmp_path / "fake-bcc"
    write(fake / "bcc" / "__init__.py", BROKEN_BCC)
    ws = tmp_path / "ws"
    ws.mkdir()
    pm = Procmon(tmp_path, ws, backend.url, None, "--mode", "ebpf", env={"PYTHONPATH": str(fake)}).start(ready=False)
    assert pm.proc.wait(60) == 1
    assert "eBPF unavailable" in pm.log() and "procmon ready" not in pm.log()


@pytest.mark.skipif(not shutil.which("setpriv") or not shutil.which("unshare"), reason="needs util-linux")
def test_exit_non_zero_when_neither_works(tmp_path, ebpf_ready):
    """No capabilities (eBPF refused) and a network namespace without the process connector."""
    ws = tmp_path / "ws"
    ws.mkdir()
    pm = Procmon(tmp_path, ws, "http://127.0.0.1:9", None)
    cmd = ["unshare", "--net", "setpriv", "--bounding-set=-all", "--inh-caps=-all", "--", *pm.cmd]
    r = subprocess.run(cmd, env=pm.env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, r.stderr
    assert "missing capabilities" in r.stderr
    assert "process connector unavailable" in r.stderr
