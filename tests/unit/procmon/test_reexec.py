"""One process (pid) = one compile/run record, even when it execs again.

The rule lives in the shared pipeline, so the eBPF tracer and the process connector follow it alike:
the record is reported at the process's exit, describes the LAST program image we could classify
(its exit status is the process's), and keeps the FIRST exec's start time and event id. The
pipeline is fed events directly here (no kernel, no /proc, no outbox: the wire events it builds are
read from ``waiting()``).
"""

from datetime import timedelta

import pytest
from prometheus_client import CollectorRegistry

from watcher_agents.procmon.attribution import Attributor
from watcher_agents.procmon.events import ExecEvent, ExitEvent
from watcher_agents.procmon.metrics import ProcmonMetrics
from watcher_agents.procmon.pipeline import Pipeline
from watcher_agents.procmon.records import ktime_to_wall
from watcher_core import wire

ROOT = "/watcher/codes"
POD = "jcode-os-1-202012345-7d9f8b6c5d-x2x7z"
HW = "/home/coder/project/hw1"
PID, PPID = 4242, 4000
T0 = 10**12  # ktime of the first exec (ns)
MS = 1_000_000


class FakeTracer:
    """What the pipeline asks of a tracer, recorded (no kernel in a unit test)."""

    mode = "ebpf"
    captures_stderr = False

    def __init__(self):
        self.untracked: list[tuple[int, int]] = []

    def untrack(self, pid, start_ns):
        self.untracked.append((pid, start_ns))

    def ignore_stderr(self, pid):
        pass

    def set_cgroup_verdict(self, cgroup_id, verdict):
        pass

    def counters(self):
        return {}


@pytest.fixture
def pipe():
    p = Pipeline(node="node-1", attributor=Attributor(ROOT), outbox=None, metrics=ProcmonMetrics(CollectorRegistry()))
    p.attach(FakeTracer())
    yield p
    p.context.close()


def exec_(filename, argv, at_ms, pid=PID, ppid=PPID, cwd=HW):
    return ExecEvent(
        pid=pid, ktime_ns=T0 + at_ms * MS, filename=filename, argv=argv, ppid=ppid, cwd=cwd, hostname=POD, cgroup_id=77
    )


def exit_(at_ms, code=0, signal=None, started_ms=None, pid=PID):
    """An exit; ``started_ms`` is the exec the kernel says it belongs to (eBPF), None = not known."""
    return ExitEvent(
        pid=pid,
        ktime_ns=T0 + at_ms * MS,
        exit_code=None if signal else code,
        signal=signal,
        start_ns=None if started_ms is None else T0 + started_ms * MS,
    )


def at(ktime_ms):
    """Wall time of a ktime; compared within 0.1 ms (the clock offset is re-read at each conversion)."""
    return ktime_to_wall(T0 + ktime_ms * MS)


def same_time(a, b):
    return abs(a - b) < timedelta(microseconds=100)


def play(p, *events):
    for ev in events:
        (p.handle_exec if isinstance(ev, ExecEvent) else p.handle_exit)(ev)
    return p.waiting()


@pytest.mark.parametrize("ebpf", [True, False], ids=["ebpf-exit", "connector-exit"])
def test_script_that_execs_python_is_one_python_run(pipe, ebpf):
    """run.sh is `#!/bin/sh\\nexec python calc.py`: one run, the python one, started when run.sh did."""
    events = play(
        pipe,
        exec_("./run.sh", ["./run.sh"], 0),
        exec_("/usr/bin/python3", ["python3", "calc.py"], 3),
        exit_(50, code=0, started_ms=3 if ebpf else None),
    )
    assert len(events) == 1
    run = events[0]
    assert isinstance(run, wire.ProcessRun)
    assert (run.kind, run.target, run.path, run.exit_code, run.signal) == ("python", "calc.py", "calc.py", 0, None)
    assert run.argv == ["python3", "calc.py"]
    assert same_time(run.started_at, at(0))  # the first exec: when the student pressed enter
    assert run.ended_at - run.started_at >= timedelta(milliseconds=49)
    assert run.event_id == wire.make_event_id("node-1", pipe.boot, PID, T0)
    assert pipe.metrics.reexecs._value.get() == 1
    assert not pipe.pending and pipe.tracer.untracked == []


def test_pyenv_shim_through_unclassified_helpers_ends_as_the_real_python(pipe):
    """pyenv's `python3` shim (bash) execs `pyenv` (bash), which execs `pyenv-exec`, which execs the
    real interpreter: the bash helpers are no compile/run, the last image is the python run."""
    shim = "/root/.pyenv/shims/python3"
    events = play(
        pipe,
        exec_(shim, ["python3", "calc.py"], 0),
        exec_("/root/.pyenv/libexec/pyenv", ["pyenv", "exec", "python3", "calc.py"], 2),
        exec_("/root/.pyenv/libexec/pyenv-exec", ["pyenv-exec", "python3", "calc.py"], 4),
        exec_("/root/.pyenv/versions/3.11.9/bin/python3.11", ["python3.11", "calc.py"], 6),
        exit_(40, code=3, started_ms=6),
    )
    assert len(events) == 1
    assert (events[0].kind, events[0].target, events[0].exit_code) == ("python", "calc.py", 3)
    assert events[0].argv == ["python3.11", "calc.py"]
    assert same_time(events[0].started_at, at(0))


def test_student_binary_that_execs_something_unclassified_stays_the_binary_run(pipe):
    """./a.out execs /bin/true: /bin/true is nothing we classify, so the record keeps the student's
    binary; the exit status is the process's (the kernel says it belongs to the latest exec)."""
    events = play(
        pipe, exec_("./a.out", ["./a.out"], 0), exec_("/bin/true", ["true"], 1), exit_(2, code=0, started_ms=1)
    )
    assert [(e.kind, e.target, e.exit_code) for e in events] == [("binary", "a.out", 0)]
    assert pipe.tracer.untracked == []  # its exit is still wanted from the kernel


def test_compile_driver_exec_d_through_a_wrapper_is_a_compile(pipe):
    """`sh -c 'exec gcc ...'` and `ccache gcc ...` (ccache execs the compiler when it cannot cache)."""
    events = play(
        pipe,
        exec_("/bin/sh", ["sh", "-c", "exec gcc a.c -o a"], 0),
        exec_("/usr/bin/gcc", ["gcc", "a.c", "-o", "a"], 1),
        exec_("/usr/bin/ccache", ["ccache", "gcc", "b.c", "-o", "b"], 0, pid=PID + 1),
        exec_("/usr/bin/gcc", ["gcc", "b.c", "-o", "b"], 2, pid=PID + 1),
        # gcc's own children are still the compiler's, not compiles of their own
        exec_("/usr/lib/gcc/x86_64-linux-gnu/12/cc1", ["cc1", "a.c"], 5, pid=PID + 2, ppid=PID),
        exit_(6, code=0, started_ms=5, pid=PID + 2),
        exit_(30, code=1, started_ms=1),
        exit_(31, code=0, started_ms=2, pid=PID + 1),
    )
    assert [(type(e).__name__, e.compiler, e.sources, e.output, e.exit_code) for e in events] == [
        ("ProcessCompile", "gcc", ["a.c"], "a", 1),
        ("ProcessCompile", "gcc", ["b.c"], "b", 0),
    ]
    # the shell image was never a record (nothing to report): the compile starts at gcc's exec, 1 ms later
    assert same_time(events[0].started_at, at(1))


def test_binary_wrapper_that_execs_the_compiler_becomes_the_compile(pipe):
    """A student's ./build.sh (a workspace binary: a run) that ends in `exec gcc`: one compile."""
    events = play(
        pipe,
        exec_("./build.sh", ["./build.sh"], 0),
        exec_("/usr/bin/gcc", ["gcc", "main.c", "-o", "main"], 2),
        exit_(20, code=0, started_ms=2),
    )
    assert [(type(e).__name__, e.path, e.exit_code) for e in events] == [("ProcessCompile", "main.c", 0)]


def test_a_stale_exit_of_the_first_image_does_not_end_the_process(pipe):
    """(eBPF) an exit whose start time is not the latest exec's belongs to an earlier program."""
    events = play(
        pipe,
        exec_("./run.sh", ["./run.sh"], 0),
        exec_("/usr/bin/python3", ["python3", "calc.py"], 3),
        exit_(4, code=9, started_ms=0),
    )
    assert events == [] and PID in pipe.pending
    events = play(pipe, exit_(10, code=0, started_ms=3))
    assert [(e.kind, e.exit_code) for e in events] == [("python", 0)]


def test_a_reused_pid_is_a_new_process(pipe):
    """The exit of the first process was lost and its pid came back with another parent: two runs,
    the first with an unknown status (never merged into one)."""
    events = play(
        pipe,
        exec_("./a.out", ["./a.out"], 0, ppid=PPID),
        exec_("/usr/bin/python3", ["python3", "calc.py"], 500, ppid=PPID + 7),
        exit_(510, code=0, started_ms=500),
    )
    assert [(e.kind, e.exit_code) for e in events] == [("binary", None), ("python", 0)]
    assert events[0].event_id != events[1].event_id


def test_unclassified_first_image_then_classified(pipe):
    """`sh -c 'exec ./a.out'`: the shell was never reported (untracked), the binary is the run."""
    events = play(
        pipe,
        exec_("/bin/sh", ["sh", "-c", "exec ./a.out"], 0),
        exec_("./a.out", ["./a.out"], 1),
        exit_(3, code=0, started_ms=1),
    )
    assert [(e.kind, e.target, e.exit_code) for e in events] == [("binary", "a.out", 0)]
    assert same_time(events[0].started_at, at(1))
    assert pipe.tracer.untracked == [(PID, T0)]
