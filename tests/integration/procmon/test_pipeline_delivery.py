"""The procmon pipeline over the real outbox, sender and backend (events fed without the kernel).

The kernel side is covered in tests/system/procmon; here the point is delivery: an outage of the
backend loses nothing, and a resend after a restart is deduplicated by the deterministic event id.
"""

import time

from prometheus_client import CollectorRegistry

from support.backend import run_backend
from watcher_agents.delivery.outbox import Outbox, Serialized
from watcher_agents.delivery.sender import Sender
from watcher_agents.procmon.attribution import Attributor
from watcher_agents.procmon.context import ProcessContext
from watcher_agents.procmon.emission import BACKLOG, BATCH
from watcher_agents.procmon.events import ExecEvent, ExitEvent
from watcher_agents.procmon.metrics import ProcmonMetrics
from watcher_agents.procmon.pipeline import Pipeline

POD = "jcode-os-1-202012345-7d9f8b6c5d-x2x7z"


class NoKernel:
    """Stands in for the tracer's map updates (there is no kernel program in this test)."""

    mode = "ebpf"
    captures_stderr = False

    def __init__(self):
        self.untracked = []

    def untrack(self, pid, start_ns):
        self.untracked.append(pid)

    def ignore_stderr(self, pid):
        pass

    def set_cgroup_verdict(self, cgroup_id, verdict):
        pass

    def counters(self):
        return {}


class AsGiven(ProcessContext):
    """The events below carry their cwd and hostname already (their pids are made up: /proc knows
    nothing of them)."""

    def enrich(self, ev):
        pass


def make_pipeline(tmp_path, outbox, **kw):
    metrics = ProcmonMetrics(CollectorRegistry())
    p = Pipeline(
        node="node-1",
        attributor=Attributor(str(tmp_path / "ws")),
        outbox=outbox,
        metrics=metrics,
        context=AsGiven(metrics),
        **kw,
    )
    p.attach(NoKernel())
    return p, metrics


def feed_compiles(p, n, base_ns):
    for i in range(n):
        pid = 1000 + i
        p.on_exec(
            ExecEvent(
                pid=pid,
                ktime_ns=base_ns + i * 1000,
                filename="/usr/bin/gcc",
                argv=["gcc", f"p{i}.c", "util.c", "-o", f"p{i}"],
                cwd="/home/coder/project/hw1",
                hostname=POD,
                cgroup_id=77,
            )
        )
        p.on_exit(
            ExitEvent(
                pid=pid, ktime_ns=base_ns + i * 1000 + 500, exit_code=i % 2, signal=None, start_ns=base_ns + i * 1000
            )
        )
    p.handoff()


def timeline(backend, n, timeout=30):
    deadline = time.monotonic() + timeout
    events = []
    while time.monotonic() < deadline:
        with backend.client("read") as http:
            r = http.get(
                "/api/v1/courses/os/sections/1/assignments/hw1/students/202012345/timeline", params={"limit": 500}
            )
        events = r.json()["events"] if r.status_code == 200 else []
        if len(events) >= n:
            return events
        time.sleep(0.2)
    return events


def test_outage_loses_nothing_and_resends_are_deduplicated(tmp_path):
    backend = run_backend(tmp_path)
    try:
        backend.stop()  # the backend is down while the compiles happen
        outbox = Outbox(tmp_path / "state" / "outbox.sqlite3")
        sender = Sender(outbox, backend.url, backend.tokens["ingest"], CollectorRegistry(), batch_size=50)
        sender.start()
        p, metrics = make_pipeline(tmp_path, outbox)
        p.start()
        feed_compiles(p, 40, base_ns=10**12)
        assert p.wait_idle(10)
        assert outbox.depth() == 40
        time.sleep(1.0)
        assert outbox.depth() == 40  # still down: nothing sent, nothing dropped
        backend.start()
        events = timeline(backend, 40)
        assert len(events) == 40
        assert sorted(e["exit_code"] for e in events) == [0] * 20 + [1] * 20
        assert all(e["sources"] == [e["path"], "util.c"] and e["type"] == "process.compile" for e in events)
        assert sender.flush(10) and outbox.depth() == 0

        # procmon restarted and saw the same execs again (same boot, pid, start time): same ids.
        p2, _ = make_pipeline(tmp_path, outbox)
        assert p2.boot == p.boot
        p2.start()
        feed_compiles(p2, 40, base_ns=10**12)
        assert p2.wait_idle(10) and sender.flush(10)
        with backend.client("read") as http:
            status = http.get("/api/v1/status").json()
        assert len(timeline(backend, 40)) == 40, status
        p.stop()
        p2.stop()
        sender.stop()
        outbox.close()
    finally:
        backend.stop()


def test_unreported_processes_are_untracked_in_the_kernel(tmp_path):
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    p, metrics = make_pipeline(tmp_path, outbox)
    p.start()
    p.on_exec(
        ExecEvent(pid=5, ktime_ns=1, filename="/bin/ls", argv=["ls"], cwd="/home/coder/project/hw1", hostname=POD)
    )
    p.handoff()
    assert p.wait_idle(5)
    assert p.tracer.untracked == [5]
    assert metrics.filtered_counts["not_classified"] == 1
    p.stop()
    outbox.close()


def test_a_storm_the_housekeeping_thread_cannot_keep_up_with_is_written_by_the_tracer_thread(tmp_path):
    """No housekeeping thread at all: once BACKLOG events wait, the poll that made them writes them to
    the outbox itself, so memory holds at most BACKLOG events whatever the exec rate (and a long poll
    hands its records over every BATCH of them, so they do not pile up before it ends either)."""
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    p, metrics = make_pipeline(tmp_path, outbox)
    feed_compiles(p, BATCH, base_ns=10**12)
    assert len(p.waiting()) == BATCH and outbox.depth() == 0  # few: left to the housekeeping thread
    feed_compiles(p, BACKLOG, base_ns=2 * 10**12)
    waiting = len(p.waiting())
    assert waiting < BACKLOG and outbox.depth() >= BACKLOG and outbox.depth() + waiting == BATCH + BACKLOG
    assert metrics.queue_depth() < BATCH
    assert metrics.dropped.labels("outbox_unavailable")._value.get() == 0
    outbox.close()


def test_events_wait_as_json_while_the_outbox_refuses_then_are_dropped_and_counted(tmp_path):
    """A full outbox: no back-pressure (it would block the tracer for nothing); events wait in memory
    as JSON text up to MAX_UNSENT_BYTES, then each one more is dropped and counted; none is lost once
    the outbox takes them again."""
    outbox = Outbox(tmp_path / "outbox.sqlite3", max_events=1)
    p, metrics = make_pipeline(tmp_path, outbox, max_unsent_bytes=100 * 1024)
    p.start()
    feed_compiles(p, 1000, base_ns=10**12)
    deadline = time.monotonic() + 10
    while metrics.outbox_errors._value.get() == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    kept = len(p.waiting())
    dropped = metrics.dropped.labels("outbox_unavailable")._value.get()
    assert 0 < kept < 1000 and kept + dropped == 1000
    assert p.emitter.unsent_bytes <= 100 * 1024
    assert sum(len(Serialized.of(e).body) for e in p.waiting()) == p.emitter.unsent_bytes
    outbox.max_events = 10_000  # room again: the housekeeping thread's retry delivers what waited
    assert p.wait_idle(10) and outbox.depth() == kept
    p.stop()
    outbox.close()
