"""A child that chdir's and execs a 1 ms program is gone before /proc is read: the path its chdir was
given (carried by the eBPF chdir event) says where it ran, not its parent's cwd."""

import struct

import pytest
from prometheus_client import CollectorRegistry

from watcher_agents.procmon.attribution import Attributor
from watcher_agents.procmon.context import ProcessContext
from watcher_agents.procmon.ebpf import decode_chdir
from watcher_agents.procmon.events import ExecEvent
from watcher_agents.procmon.metrics import ProcmonMetrics

GONE = 4_194_304 + 4242  # above any pid_max: /proc/<pid> never exists
PARENT_GONE = GONE + 1


def chdir_raw(pid, path, has_path=1):
    return struct.pack("<BB2xI256s", 3, has_path, pid, path.encode())


def test_decode_chdir():
    assert decode_chdir(chdir_raw(77, "/ws/os-1-2020/hw1")) == (77, "/ws/os-1-2020/hw1")
    assert decode_chdir(chdir_raw(77, "", has_path=0)) == (77, None)  # fchdir
    assert decode_chdir(struct.pack("<BxxxI", 3, 78)) == (78, None)  # the pid-only layout


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def ctx(clock):
    c = ProcessContext(ProcmonMetrics(CollectorRegistry()), clock=clock)
    yield c
    c.close()


def test_the_own_chdir_path_is_the_cwd_of_a_gone_process(ctx):
    ctx.on_chdir(PARENT_GONE, "/somewhere/else")  # the parent ran outside the workspace
    ctx.on_chdir(GONE, "/ws/os-1-2020/hw1/../hw1")
    ev = ExecEvent(pid=GONE, ktime_ns=1, filename="./quick", argv=["./quick"], ppid=PARENT_GONE)
    ctx.enrich(ev)
    assert ev.cwd == "/ws/os-1-2020/hw1"
    assert ctx.metrics.cwd_from_chdir._value.get() == 1
    result = Attributor("/ws").attribute(ev)
    assert (result.type, result.kind, result.target, result.assignment) == ("process.run", "binary", "quick", "hw1")


def test_a_relative_chdir_is_resolved_against_the_known_cwd(ctx):
    ctx.on_chdir(GONE, "/ws/os-1-2020")
    ctx.on_chdir(GONE, "hw2")
    assert ctx.cwd_of(GONE) == "/ws/os-1-2020/hw2"


def test_an_old_chdir_is_not_trusted(ctx, clock):
    ctx.on_chdir(GONE, "/ws/os-1-2020/hw1")
    clock.now += 60  # a minute later: maybe another process with that pid
    ev = ExecEvent(pid=GONE, ktime_ns=1, filename="./quick", argv=["./quick"])
    ctx.enrich(ev)
    assert ev.cwd is None
