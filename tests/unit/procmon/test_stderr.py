"""What compiles and runs write to stderr joins their record: the pipeline is fed the kernel's events
directly (no kernel here; tests/system/procmon/test_stderr_e2e.py runs the real program)."""

from __future__ import annotations

import struct

import pytest
from prometheus_client import CollectorRegistry

from watcher_agents.procmon.attribution import Attributor
from watcher_agents.procmon.ebpf import decode_stderr
from watcher_agents.procmon.events import ExecEvent, ExitEvent, StderrEvent
from watcher_agents.procmon.metrics import ProcmonMetrics
from watcher_agents.procmon.pipeline import Pipeline

ROOT = "/watcher/codes"
POD = "jcode-os-1-202012345-7d9f8b6c5d-x2x7z"
HW = "/home/coder/project/hw1"
GCC, CC1, LD, BASH = 4242, 4243, 4244, 4000
MS = 1_000_000


class KernelMaps:
    """What the pipeline asks of the eBPF tracer, recorded."""

    mode = "ebpf"

    def __init__(self, captures=True):
        self.captures_stderr = captures
        self.untracked, self.ignored = [], []

    def untrack(self, pid, start_ns):
        self.untracked.append(pid)

    def ignore_stderr(self, pid):
        self.ignored.append(pid)

    def set_cgroup_verdict(self, cgroup_id, verdict):
        pass

    def counters(self):
        return {}


def make(captures=True, **kw):
    p = Pipeline(node="n", attributor=Attributor(ROOT), outbox=None, metrics=ProcmonMetrics(CollectorRegistry()))
    for k, v in kw.items():
        setattr(p.stderr, k, v)
    p.attach(KernelMaps(captures))
    return p


@pytest.fixture
def pipe():
    p = make()
    yield p
    p.context.close()


def exec_(pid, filename, argv, ppid=BASH, at_ms=0):
    return ExecEvent(
        pid=pid, ktime_ns=10**12 + at_ms * MS, filename=filename, argv=argv, ppid=ppid, cwd=HW, hostname=POD
    )


def exit_(pid, code=1, started_ms=0):
    return ExitEvent(
        pid=pid, ktime_ns=10**12 + 500 * MS, exit_code=code, signal=None, start_ns=10**12 + started_ms * MS
    )


def write(pid, text, owner=None, truncated=False):
    data = text.encode() if isinstance(text, str) else text
    return StderrEvent(pid=pid, owner=GCC if owner is None else owner, data=data, truncated=truncated)


def play(p, *events):
    for ev in events:
        if isinstance(ev, ExecEvent):
            p.handle_exec(ev)
        elif isinstance(ev, ExitEvent):
            p.handle_exit(ev)
        else:
            p.handle_stderr(ev)
    return p.waiting()


def compile_with(p, *writes, code=1):
    return play(
        p,
        exec_(GCC, "/usr/bin/gcc", ["gcc", "main.c", "-o", "main"]),
        exec_(CC1, "/usr/lib/gcc/x86_64-linux-gnu/12/cc1", ["cc1", "main.c"], ppid=GCC, at_ms=1),
        *writes,
        exit_(CC1, started_ms=1),
        exit_(GCC, code=code),
    )


def test_the_compilers_children_write_into_the_compile(pipe):
    """cc1 writes the diagnostics, collect2/ld the link errors: the kernel names gcc their owner."""
    (ev,) = compile_with(
        pipe,
        write(CC1, "main.c: In function 'main':\n"),
        write(CC1, "main.c:3:5: error: 'x' undeclared (first use in this function)\n"),
        write(LD, "/usr/bin/ld: cannot find -lfoo\n"),
    )
    assert ev.type == "process.compile" and ev.exit_code == 1
    assert ev.stderr == (
        "main.c: In function 'main':\nmain.c:3:5: error: 'x' undeclared (first use in this function)\n"
        "/usr/bin/ld: cannot find -lfoo\n"
    )
    assert ev.stderr_truncated is False
    assert pipe.metrics.stderr_bytes._value.get() == len(ev.stderr)
    # cc1 is the compile's child: no exit wanted, but its writes are
    assert CC1 in pipe.tracer.untracked and CC1 not in pipe.tracer.ignored


def test_a_python_traceback_joins_the_run(pipe):
    tb = 'Traceback (most recent call last):\n  File "/home/coder/project/hw1/calc.py", line 2\nNameError: x\n'
    (ev,) = play(pipe, exec_(7, "/usr/bin/python3", ["python3", "calc.py"]), write(7, tb, owner=7), exit_(7))
    assert (ev.kind, ev.stderr, ev.stderr_truncated) == ("python", tb, False)


def test_a_compile_or_run_that_writes_nothing_has_an_empty_stderr(pipe):
    (ev,) = play(pipe, exec_(7, f"{HW}/a.out", ["./a.out"]), exit_(7, code=0))
    assert (ev.stderr, ev.stderr_truncated) == ("", False)


def test_processes_not_reported_lose_their_capture_in_the_kernel(pipe):
    play(pipe, exec_(9, "/bin/ls", ["ls"]), exec_(10, "/usr/bin/make", ["make"]))
    assert pipe.tracer.ignored == [9, 10]


def test_a_write_whose_owner_is_not_reported_goes_to_the_writer_or_its_compile(pipe):
    """A child forked before user space had untracked its parent (a shell) keeps that parent as owner in
    the kernel: the write joins the writer's own record, or the compile it runs under."""
    (ev,) = compile_with(pipe, write(GCC, "gcc: warning: x\n", owner=BASH), write(CC1, "cc1 says\n", owner=BASH))
    assert ev.stderr == "gcc: warning: x\ncc1 says\n"


def test_writes_of_nobody_reported_are_dropped(pipe):
    assert play(pipe, write(555, "noise\n", owner=556)) == []
    assert pipe.metrics.stderr_bytes._value.get() == 0


def test_more_than_16_kib_is_cut_and_flagged(pipe):
    (ev,) = compile_with(pipe, *(write(CC1, "e" * 4096) for _ in range(5)))
    assert len(ev.stderr) == 16384 and ev.stderr_truncated is True
    assert pipe.metrics.stderr_truncated._value.get() == 1


def test_the_kernels_truncation_flag_is_kept(pipe):
    (ev,) = compile_with(pipe, write(CC1, "x" * 100), write(CC1, b"", truncated=True))
    assert (ev.stderr, ev.stderr_truncated) == ("x" * 100, True)


def test_nul_and_bytes_that_are_no_utf8(pipe):
    (ev,) = compile_with(pipe, write(CC1, b"a\x00b \xff\xfe c\n"))
    assert ev.stderr == "ab \ufffd\ufffd c\n"


def test_held_bytes_are_bounded_over_all_running_records():
    p = make(max_held=1000)
    play(p, exec_(1, "/usr/bin/gcc", ["gcc", "a.c"]), exec_(2, "/usr/bin/gcc", ["gcc", "b.c"], ppid=BASH + 1))
    play(p, write(1, "a" * 800, owner=1), write(2, "b" * 800, owner=2))
    assert p.stderr.held == 1000
    events = play(p, exit_(1), exit_(2))
    assert [(len(e.stderr), e.stderr_truncated) for e in events] == [(800, False), (200, True)]
    assert p.stderr.held == 0


def test_without_capture_stderr_is_null():
    """Capture turned off, or the process connector (which sees no writes): null, not empty."""
    p = make(captures=False)
    (ev,) = play(p, exec_(7, "/usr/bin/python3", ["python3", "calc.py"]), write(7, "x", owner=7), exit_(7))
    assert (ev.stderr, ev.stderr_truncated) == (None, False)


def test_decode_stderr():
    raw = struct.pack("<BBHII4x", 4, 1, 5, 77, 70) + b"hello" + b"junk"
    assert decode_stderr(raw) == StderrEvent(pid=77, owner=70, data=b"hello", truncated=True)
