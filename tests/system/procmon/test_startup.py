"""procmon's start: not ready before its tracer is attached, and the gap of a restart in its metrics."""

from __future__ import annotations

import signal
import time

import httpx
from system.procmon.pm_helpers import Procmon, wait_healthy


def test_healthz_is_503_until_the_tracer_is_attached(tmp_path, ebpf_ready):
    """bcc compiles for a second or more after the HTTP server is up: a compile in that window would be
    lost, so /healthz must not say healthy (readiness probe, LocalStack) before tracing works."""
    ws = tmp_path / "ws"
    ws.mkdir()
    pm = Procmon(tmp_path, ws, "http://127.0.0.1:9", None, "--mode", "ebpf").start(ready=False)
    answers = []  # (status, body, attached already in the log when the answer came)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert pm.proc.poll() is None, pm.log()
            try:
                r = httpx.get(f"http://127.0.0.1:{pm.port}/healthz", timeout=5)
            except httpx.TransportError:
                time.sleep(0.02)  # not listening yet
                continue
            answers.append((r.status_code, r.json(), "eBPF programs attached" in pm.log()))
            if r.status_code == 200:
                break
            time.sleep(0.05)
        # the metrics answer during the load too
        assert 'procmon_mode{mode="ebpf"} 1.0' in pm.metrics()
    finally:
        pm.stop()
    waiting = [body for status, body, _ in answers if status == 503]
    assert waiting, f"never saw /healthz before the tracer was attached: {answers[:3]}"
    assert all(body["failed"] == ["tracer attached"] and body["mode"] is None for body in waiting), waiting
    status, body, attached_in_log = answers[-1]
    assert status == 200 and attached_in_log, answers[-3:]
    assert body["status"] == "healthy" and body["mode"] == "ebpf"
    assert body["checks"] == {
        "sender alive": True,
        "tracer attached": True,
        "tracer alive (mode ebpf)": True,
        "pipeline alive": True,
    }


def test_a_restart_shows_how_long_procmon_was_down(tmp_path, ebpf_ready):
    ws = tmp_path / "ws"
    ws.mkdir()
    pm = Procmon(tmp_path, ws, "http://127.0.0.1:9", None, "--mode", "ebpf").start()
    try:
        # first start ever: no gap, no line
        assert pm.metric("procmon_downtime_seconds") == 0
        assert pm.metric("procmon_last_seen_before_start_timestamp_seconds") == 0
        heartbeat = pm.state / "heartbeat"
        first = float(heartbeat.read_text())
        deadline = time.monotonic() + 10
        while float(heartbeat.read_text()) == first:  # rewritten every second
            assert time.monotonic() < deadline, "heartbeat not rewritten"
            time.sleep(0.2)
        pm.proc.send_signal(signal.SIGKILL)  # a crash: no final heartbeat
        pm.proc.wait(10)
        last = float(heartbeat.read_text())
        killed_at = time.time()
        time.sleep(3)
        pm.start(ready=False)
        wait_healthy(pm)
        down = pm.metric("procmon_downtime_seconds")
        # from the last heartbeat to the new start: at least the 3 s it was dead, at most until now (its BPF
        # programs compile at start, which took over 50 s on a loaded machine: no fixed bound)
        assert 3 <= down <= time.time() - last + 1, pm.log()[-2000:]
        assert pm.metric("procmon_last_seen_before_start_timestamp_seconds") == last
        assert killed_at - 2 <= last <= killed_at
        lines = [line for line in pm.log().splitlines() if "procmon was down for" in line]
        assert len(lines) == 1 and "processes that ran in that window were not seen" in lines[0], lines

        # a clean stop writes a last heartbeat when the tracer detaches: the next gap starts there. (The
        # outbox flush comes after it and may take seconds on a loaded machine: bound it by the stop call.)
        stop_requested = time.time()
        assert pm.stop() == 0
        stopped_at = time.time()
        assert stop_requested - 0.01 <= float(heartbeat.read_text()) <= stopped_at
    finally:
        pm.stop()
