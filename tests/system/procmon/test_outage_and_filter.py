"""Backend outage with nothing lost, and the in-kernel cgroup filter."""

from __future__ import annotations

import pytest
from system.procmon.pm_helpers import GCC, Procmon, wait_events, write

from support.backend import run_backend


def test_backend_outage_loses_nothing(tmp_path, container, ebpf_ready):
    backend = run_backend(tmp_path)
    backend.stop()  # down before procmon even starts
    ws = tmp_path / "ws"
    hw = ws / "os-3-400001" / "hw7"
    for i in range(12):
        write(hw / f"p{i}.c", f"int main(void){{ return {i % 3}; }}\n")
    pm = Procmon(tmp_path, ws, backend.url, backend.tokens["ingest"]).start()
    try:
        c = container("outage")
        c.sh("; ".join(f"{GCC} p{i}.c -o p{i} && ./p{i}" for i in range(12)), hw)
        pm.wait_metric("watcher_outbox_events", lambda v: v == 24)
        assert pm.metric('procmon_events_filtered_total{reason="no_assignment"}') == 0
        pm.wait_metric('watcher_send_failures_total{reason="connection"}', lambda v: v >= 1)
        backend.start()  # back, on the same port and database
        events = wait_events(backend, "os", "3", "400001", "hw7", 24)
        runs = {e["target"]: e["exit_code"] for e in events if e["type"] == "process.run"}
        assert runs == {f"p{i}": i % 3 for i in range(12)}
        pm.wait_metric("watcher_outbox_events", lambda v: v == 0)
    finally:
        pm.stop()
        backend.stop()


def test_kernel_filter_drops_other_cgroups_and_keeps_students(tmp_path, container, ebpf_ready):
    backend = run_backend(tmp_path)
    ws = tmp_path / "ws"
    hw = ws / "os-3-400002" / "hw1"
    write(hw / "a.c", "int main(void){ return 0; }\n")
    pm = Procmon(tmp_path, ws, backend.url, backend.tokens["ingest"], "--cgroup-learn-seconds", "0.5").start()
    try:
        other = container("other")
        if other.path is None:
            pytest.skip("no cgroup v2 hierarchy mounted (the filter works per cgroup v2 id)")
        # Learning: a busy non-student cgroup (cwd /tmp, host hostname) for a while ...
        other.sh("i=0; while [ $i -lt 30 ]; do /bin/true; i=$((i+1)); sleep 0.05; done", "/tmp")
        pm.wait_metric('procmon_cgroups{verdict="ignored"}', lambda v: v >= 1)
        before = pm.metric('procmon_events_filtered_total{reason="cgroup_not_student"}')
        other.sh("i=0; while [ $i -lt 200 ]; do /bin/true; i=$((i+1)); done", "/tmp")
        # ... then its execs are dropped in the kernel, never reaching user space.
        pm.wait_metric('procmon_events_filtered_total{reason="cgroup_not_student"}', lambda v: v >= before + 200)
        # A student's cgroup still reports.
        container("student").sh(f"{GCC} a.c -o a && ./a", hw)
        events = wait_events(backend, "os", "3", "400002", "hw1", 2)
        assert {e["type"] for e in events} == {"process.compile", "process.run"}
        assert pm.metric('procmon_cgroups{verdict="student"}') >= 1
    finally:
        pm.stop()
        backend.stop()
