"""A child that chdir's and execs a 1 ms program is gone before /proc is read: the path its chdir was
given (carried by the eBPF chdir event) says where it ran, not its parent's cwd."""

import struct

import pytest
from prometheus_client import CollectorRegistry

from watcher_agents.procmon.attribution import Attributor
from watcher_agents.procmon.ebpf import decode_chdir
from watcher_agents.procmon.events import ExecEvent
from watcher_agents.procmon.metrics import ProcmonMetrics
from watcher_agents.procmon.pipeline import Pipeline

GONE = 4_194_304 + 4242  # above any pid_max: /proc/<pid> never exists
PARENT_GONE = GONE + 1


def chdir_raw(pid, path, has_path=1):
    return struct.pack("<BB2xI256s", 3, has_path, pid, path.encode())


def test_decode_chdir():
    assert decode_chdir(chdir_raw(77, "/ws/os-1-2020/hw1")) == (77, "/ws/os-1-2020/hw1")
    assert decode_chdir(chdir_raw(77, "", has_path=0)) == (77, None)  # fchdir
    assert decode_chdir(struct.pack("<BxxxI", 3, 78)) == (78, None)  # the pid-only layout


@pytest.fixture
def pipe():
    p = Pipeline(node="n", attributor=Attributor("/ws"), outbox=None, metrics=ProcmonMetrics(CollectorRegistry()))
    yield p
    p.hostnames.close()


def test_the_own_chdir_path_is_the_cwd_of_a_gone_process(pipe):
    pipe.recent[PARENT_GONE] = ("/somewhere/else", None)  # the parent ran outside the workspace
    pipe.on_chdir(GONE, "/ws/os-1-2020/hw1/../hw1")
    ev = ExecEvent(pid=GONE, ktime_ns=1, filename="./quick", argv=["./quick"], ppid=PARENT_GONE)
    pipe.enrich(ev)
    assert ev.cwd == "/ws/os-1-2020/hw1"
    assert pipe.metrics.cwd_from_chdir._value.get() == 1
    result = pipe.attributor.attribute(ev)
    assert (result.type, result.kind, result.target, result.assignment) == ("process.run", "binary", "quick", "hw1")


def test_a_relative_chdir_is_resolved_against_the_known_cwd(pipe):
    pipe.on_chdir(GONE, "/ws/os-1-2020")
    pipe.on_chdir(GONE, "hw2")
    assert pipe.own_cwd[GONE][0] == "/ws/os-1-2020/hw2"


def test_an_old_chdir_is_not_trusted(pipe, monkeypatch):
    pipe.on_chdir(GONE, "/ws/os-1-2020/hw1")
    pipe.own_cwd[GONE] = (pipe.own_cwd[GONE][0], pipe.own_cwd[GONE][1] - 60)  # a minute ago: maybe another process
    ev = ExecEvent(pid=GONE, ktime_ns=1, filename="./quick", argv=["./quick"])
    pipe.enrich(ev)
    assert ev.cwd is None
