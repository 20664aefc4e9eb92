"""The agents' outboxes sit on a small tmpfs that fills up during a burst, then space returns.

Both agents keep running, say so in their metrics and logs, and recover by themselves: every save made
after recovery and the final state of every file saved while the disk was full are recorded (exactly),
and procmon's compiles of the full period (held in memory and retried) arrive too.
"""

from __future__ import annotations

import errno
import subprocess
import time

import pytest
from system.e2e.session import metrics, reader, require_ebpf, start_stack, student_hw, wait_until
from system.faults.burst import Burst, wait_and_check


@pytest.fixture
def small_disk(tmp_path):
    require_ebpf()  # root: mount, and procmon's eBPF
    mnt = tmp_path / "outboxes"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(mnt) -> int:
    """Write a filler file until the tmpfs is full; return its size."""
    chunk = b"\0" * 65536
    written = 0
    with open(mnt / "filler", "wb", buffering=0) as fh:
        while True:
            try:
                written += fh.write(chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
                break
    for small in (4096, 512, 1):  # the last scraps too
        try:
            with open(mnt / "filler", "ab", buffering=0) as fh:
                while True:
                    written += fh.write(b"\0" * small)
        except OSError:
            pass
    return written


def test_outbox_disk_full_agents_keep_running_report_it_and_recover(tmp_path, small_disk):
    args = {agent: ["--state-dir", str(small_disk / agent)] for agent in ("filemon", "procmon")}
    stack = start_stack(tmp_path, agent_args=args)
    burst = Burst(student_hw(stack, "202400001"), "202400001", compile_every=3)
    try:
        with reader(stack) as http:
            burst.step()
            wait_until(lambda: http.get("/api/v1/status").json()["events_total"] >= 2, 30, "the first save")
            fill(small_disk)
            burst.start()
            wait_until(
                lambda: metrics(stack, "filemon").get('filemon_outbox_unavailable_total{reason="disk_full"}', 0) > 0,
                30,
                "filemon to report the full disk",
            )
            wait_until(
                lambda: metrics(stack, "procmon").get("procmon_outbox_put_failures_total", 0) > 0,
                30,
                "procmon to report the full disk",
            )
            time.sleep(3)  # more saves and compiles while full
            for agent in ("filemon", "procmon"):
                assert stack.components[agent].alive(), agent
            assert "disk full" in (stack.data_dir / "logs" / "filemon.log").read_text()
            assert "outbox refused" in (stack.data_dir / "logs" / "procmon.log").read_text()
            (small_disk / "filler").unlink()  # space returns
            wait_until(
                lambda: "outbox accepts events again" in (stack.data_dir / "logs" / "filemon.log").read_text(),
                30,
                "filemon to log its recovery",
            )
            time.sleep(3)  # saves after recovery
            burst.stop()
            accounts = wait_and_check(stack, http, [burst], timeout=120)
        assert accounts[0]["compiles_run"] >= 3, accounts
    finally:
        if not burst._stop.is_set():
            burst._stop.set()
        stack.stop()
