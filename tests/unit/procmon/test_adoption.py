"""Adoption: processes running when procmon starts, found in /proc and reported at their exit.

The pure parts (stat parsing, clock conversion, exit matching, event ids) and the pipeline's
``adopt`` over real live pids (this test process and its parent: /proc is read for real, the tracer
is a recorder)."""

from __future__ import annotations

import os
from datetime import UTC, datetime

import pytest
from prometheus_client import CollectorRegistry

from watcher_agents.procmon import procfs
from watcher_agents.procmon.adoption import Running
from watcher_agents.procmon.attribution import Attributor
from watcher_agents.procmon.events import ExecEvent, ExitEvent
from watcher_agents.procmon.metrics import ProcmonMetrics
from watcher_agents.procmon.pipeline import Pipeline
from watcher_agents.procmon.records import Pending, event_id, exit_matches
from watcher_core import wire

ROOT = "/watcher/codes"
HW = f"{ROOT}/os-1-202012345/hw1"
SEC = 1_000_000_000


# --- /proc/<pid>/stat --------------------------------------------------------------------------


def stat_line(comm: str, state="S", ppid=1, start=123456) -> bytes:
    # fields 3..22: state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime
    # cutime cstime priority nice num_threads itrealvalue starttime
    rest = [state, str(ppid)] + ["0"] * 17 + [str(start)] + ["99"] * 30
    return f"4242 ({comm}) {' '.join(rest)}".encode()


def test_parse_stat_reads_state_ppid_and_start_ticks():
    assert procfs.parse_stat(stat_line("server", "S", 77, 987654)) == procfs.ProcStat("server", "S", 77, 987654)


@pytest.mark.parametrize("comm", ["a b", "x) 1 2 (y", "))", "(("])
def test_parse_stat_comm_with_spaces_and_parentheses(comm):
    """comm is what the program named itself: the fields are found after its LAST ')'."""
    assert procfs.parse_stat(stat_line(comm, "Z", 5, 42)) == procfs.ProcStat(comm, "Z", 5, 42)


@pytest.mark.parametrize("raw", [b"", b"4242 (cut", b"4242 (x) S 1 2", b"4242 (x) S one " + b"0 " * 30])
def test_parse_stat_malformed_is_none(raw):
    assert procfs.parse_stat(raw) is None


def test_parse_stat_of_this_process():
    st = procfs.read_proc_stat(os.getpid())
    assert st is not None and st.ppid == os.getppid() and st.state == "R" and st.start_ticks > 0


def test_ticks_and_start_clocks():
    assert procfs.ticks_to_ns(250, 100) == int(2.5 * SEC)
    assert procfs.ns_to_ticks(int(2.5 * SEC), 100) == 250
    # booted 1000 s ago (boottime now = 1000 s); started at tick 40000 (400 s after boot): 600 s ago
    mono, wall = procfs.start_clocks(
        40000, 100, boot_now_ns=1000 * SEC, mono_now_ns=990 * SEC, wall_now_ns=1_800_000_000 * SEC
    )
    assert mono == 390 * SEC  # 10 s of suspend: monotonic is behind boottime
    assert wall == (1_800_000_000 - 600) * SEC


def test_start_clocks_of_this_process_is_near_its_real_start():
    st = procfs.read_proc_stat(os.getpid())
    import time

    _mono, wall = procfs.start_clocks(
        st.start_ticks, procfs.CLK_TCK, time.clock_gettime_ns(time.CLOCK_BOOTTIME), time.monotonic_ns(), time.time_ns()
    )
    age = time.time() - wall / SEC
    assert 0 <= age < 3600  # started before now, in this test session


def test_same_start_within_a_tick():
    assert procfs.same_start(1000, 1000) and procfs.same_start(1000, 1001) and procfs.same_start(1001, 1000)
    assert not procfs.same_start(1000, 1002) and not procfs.same_start(1000, 900)


def test_cgroup_path():
    assert procfs.parse_cgroup_path("0::/kubepods/pod1/abc\n") == "/kubepods/pod1/abc"
    assert procfs.parse_cgroup_path("12:cpu:/x\n0::/\n") == "/"
    assert procfs.parse_cgroup_path("12:cpu:/x\n") is None


# --- matching an exit, event ids -----------------------------------------------------------------


def pending(start_ns=5 * SEC, ticks=500, last_ns=None):
    ev = ExecEvent(pid=4242, ktime_ns=start_ns, filename=f"{HW}/server", argv=["./server"], cwd=HW)
    rec = Pending(ev, None, datetime(2026, 1, 1, tzinfo=UTC), adopted_ticks=ticks)
    if last_ns is not None:
        rec.last_ktime_ns = last_ns
    return rec


def exit_(start_ns=None):
    return ExitEvent(pid=4242, ktime_ns=9 * SEC, exit_code=None, signal=15, start_ns=start_ns)


def test_ebpf_exit_matches_the_start_procmon_put_in_the_kernel():
    rec = pending(start_ns=5 * SEC)
    assert exit_matches(rec, exit_(5 * SEC))
    assert not exit_matches(rec, exit_(5 * SEC + 1))  # another program with this pid
    rec.last_ktime_ns = 7 * SEC  # it exec'd again after the adoption
    assert exit_matches(rec, exit_(7 * SEC)) and not exit_matches(rec, exit_(5 * SEC))


def test_connector_exit_of_an_adopted_process_matches_on_start_ticks_within_a_tick():
    rec = pending(ticks=500)
    assert exit_matches(rec, exit_(), ticks_now=500)
    assert exit_matches(rec, exit_(), ticks_now=501)
    assert not exit_matches(rec, exit_(), ticks_now=650)  # the pid was reused: not our program's exit
    assert exit_matches(rec, exit_(), ticks_now=None)  # already reaped: the connector's word


def test_event_id_of_an_adopted_process_is_the_same_in_every_run():
    """Two procmon runs adopt the same process: their monotonic conversions may differ by rounding,
    the start ticks do not, so the id (and the backend's dedup) is the same."""
    a, b = pending(start_ns=5 * SEC, ticks=500), pending(start_ns=5 * SEC + 3, ticks=500)
    assert event_id("n", "boot", a) == event_id("n", "boot", b)
    assert event_id("n", "boot", a) != event_id("n", "boot", pending(ticks=501))
    seen = pending(start_ns=5 * SEC, ticks=None)  # its exec was seen: id from the exec ktime
    assert event_id("n", "boot", seen) == wire.make_event_id("n", "boot", 4242, 5 * SEC)


# --- the pipeline's adopt over real pids ---------------------------------------------------------


class RecordingTracer:
    mode = "ebpf"
    captures_stderr = False

    def __init__(self, refuse=()):
        self.tracked, self.untracked, self.verdicts = [], [], {}
        self.refuse = set(refuse)

    def track(self, pid, start_ns):
        if pid in self.refuse:
            return False
        self.tracked.append((pid, start_ns))
        return True

    def untrack(self, pid, start_ns):
        self.untracked.append((pid, start_ns))

    def ignore_stderr(self, pid):
        pass

    def set_cgroup_verdict(self, cgroup_id, verdict):
        self.verdicts[cgroup_id] = verdict

    def counters(self):
        return {}


@pytest.fixture
def pipe():
    p = Pipeline(node="node-1", attributor=Attributor(ROOT), outbox=None, metrics=ProcmonMetrics(CollectorRegistry()))
    p.attach(RecordingTracer())
    yield p
    p.context.close()


def running(pid, filename, argv, ppid, cwd=HW, tick_shift=0, cgroup_id=77):
    """A real live pid described as a student's process (attribution is a pure function of these)."""
    st = procfs.read_proc_stat(pid)
    mono = 10**12 + pid
    ev = ExecEvent(pid=pid, ktime_ns=mono, filename=filename, argv=argv, ppid=ppid, cwd=cwd, cgroup_id=cgroup_id)
    return Running(ev, st.start_ticks + tick_shift, datetime(2026, 1, 1, 12, tzinfo=UTC))


def test_adopts_a_student_run_reports_it_at_its_exit_and_teaches_its_cgroup(pipe):
    me = os.getpid()
    r = running(me, f"{HW}/server", ["./server", "8080"], os.getppid())
    assert pipe.adopt([r]) == 1
    assert pipe.tracer.tracked == [(me, r.exec.ktime_ns)] and pipe.tracer.verdicts == {77: 1}
    assert pipe.metrics.adopted._value.get() == 1
    pipe.handle_exit(
        ExitEvent(pid=me, ktime_ns=r.exec.ktime_ns + 5 * SEC, exit_code=None, signal=15, start_ns=r.exec.ktime_ns)
    )
    (run,) = pipe.waiting()
    assert (run.kind, run.target, run.signal, run.exit_code, run.pid) == ("binary", "server", 15, None, me)
    assert run.started_at == r.started_at
    assert run.event_id == wire.make_event_id("node-1", pipe.boot, me, "start-ticks", r.start_ticks)


def test_not_adopted_other_people_gone_or_reused_already_tracked_or_pending(pipe):
    me, parent = os.getpid(), os.getppid()
    outside = running(me, "/tmp/x/server", ["./server"], parent, cwd="/tmp/x")
    assert pipe.adopt([outside]) == 0 and pipe.tracer.tracked == []
    assert pipe.tracer.verdicts == {}  # not a student's cgroup: nothing taught
    reused = running(me, f"{HW}/server", ["./server"], parent, tick_shift=-50)  # pid reused since the scan
    assert pipe.adopt([reused]) == 0 and pipe.tracer.untracked == [(me, reused.exec.ktime_ns)]
    pipe.tracer.refuse.add(me)  # the kernel tracks an exec of it already
    assert pipe.adopt([running(me, f"{HW}/server", ["./server"], parent)]) == 0
    pipe.tracer.refuse.clear()
    assert pipe.adopt([running(me, f"{HW}/server", ["./server"], parent)]) == 1
    assert pipe.adopt([running(me, f"{HW}/server", ["./server"], parent)]) == 0  # pending already
    assert pipe.metrics.adopted._value.get() == 1


def test_a_compiler_is_adopted_its_children_are_not(pipe):
    """gcc (the parent here) is the compile; what it runs (cc1, as, ld, or anything else) is not
    reported, as with execs seen live."""
    me, parent = os.getpid(), os.getppid()
    gcc = running(parent, "/usr/bin/gcc", ["gcc", "main.c", "-o", "main"], 1)
    child = running(me, f"{HW}/main", ["./main"], parent)  # even a student binary
    assert pipe.adopt([gcc, child]) == 1
    assert list(pipe.pending) == [parent] and pipe.pending[parent].what.type == wire.PROCESS_COMPILE
    # and a later exec by a child of the adopted gcc is a compiler child too
    pipe.handle_exec(
        ExecEvent(
            pid=99999,
            ktime_ns=10**13,
            filename="/usr/bin/gcc",
            argv=["gcc", "-x", "c", "a.c"],
            ppid=parent,
            cwd=HW,
            cgroup_id=77,
        )
    )
    assert 99999 not in pipe.pending


def test_an_adopted_process_that_execs_again_stays_one_record_with_its_adopted_id(pipe):
    me, parent = os.getpid(), os.getppid()
    r = running(me, "/bin/bash", ["bash", "run.sh"], parent)  # a student's shell script: not a run
    r2 = running(me, "/usr/bin/python3", ["python3", "calc.py"], parent)
    assert pipe.adopt([r]) == 0  # not classified: not adopted
    assert pipe.adopt([r2]) == 1
    pipe.handle_exec(
        ExecEvent(
            pid=me,
            ktime_ns=r2.exec.ktime_ns + SEC,
            filename=f"{HW}/calc",
            argv=["./calc"],
            ppid=parent,
            cwd=HW,
            cgroup_id=77,
        )
    )
    pipe.handle_exit(
        ExitEvent(
            pid=me, ktime_ns=r2.exec.ktime_ns + 2 * SEC, exit_code=0, signal=None, start_ns=r2.exec.ktime_ns + SEC
        )
    )
    (run,) = pipe.waiting()
    assert (run.kind, run.target, run.exit_code) == ("binary", "calc", 0)
    assert run.event_id == wire.make_event_id("node-1", pipe.boot, me, "start-ticks", r2.start_ticks)
    assert run.started_at == r2.started_at
