"""Both tracers implement the interface the pipeline is written against (tracer.Tracer): every member,
with the same parameters, so the pipeline can drive either without knowing which."""

from __future__ import annotations

import inspect

import pytest
from prometheus_client import CollectorRegistry

from watcher_agents.procmon.attribution import Attributor
from watcher_agents.procmon.ebpf import EbpfTracer
from watcher_agents.procmon.metrics import ProcmonMetrics
from watcher_agents.procmon.pipeline import Pipeline
from watcher_agents.procmon.procconn import ConnectorUnavailable, ProcConnectorTracer
from watcher_agents.procmon.tracer import Tracer, TracerUnavailable

TRACERS = [EbpfTracer, ProcConnectorTracer]
METHODS = [n for n, v in vars(Tracer).items() if inspect.isfunction(v) and not n.startswith("_")]
ATTRIBUTES = list(Tracer.__annotations__)


def made(cls):
    return cls(lambda ev: None, lambda ev: None)


def test_the_interface_names_what_the_pipeline_uses():
    assert set(METHODS) == {
        "load",
        "start",
        "stop",
        "alive",
        "counters",
        "set_cgroup_verdict",
        "track",
        "untrack",
        "ignore_stderr",
    }
    assert set(ATTRIBUTES) == {"mode", "on_exec", "on_exit", "on_chdir", "on_stderr", "after_poll", "captures_stderr"}


@pytest.mark.parametrize("cls", TRACERS, ids=lambda c: c.__name__)
def test_tracer_implements_the_interface(cls):
    tracer = made(cls)
    assert isinstance(tracer, Tracer)
    for name in ATTRIBUTES:
        assert hasattr(tracer, name), name
    assert tracer.mode in ("ebpf", "proc-connector")
    for name in METHODS:
        declared = list(inspect.signature(getattr(Tracer, name)).parameters)
        actual = list(inspect.signature(getattr(cls, name)).parameters)
        assert actual == declared, (cls.__name__, name)


def test_both_unavailable_errors_are_tracer_unavailable():
    assert issubclass(ConnectorUnavailable, TracerUnavailable)


@pytest.mark.parametrize("cls", TRACERS, ids=lambda c: c.__name__)
def test_the_pipeline_wires_itself_into_either_tracer(cls):
    metrics = ProcmonMetrics(CollectorRegistry())
    pipe = Pipeline(node="n", attributor=Attributor("/ws"), outbox=None, metrics=metrics)
    tracer = made(cls)
    pipe.attach(tracer)
    assert tracer.after_poll == pipe.handoff and tracer.on_chdir == pipe.context.on_chdir
    assert tracer.on_stderr == pipe.on_stderr
    assert metrics.mode == tracer.mode
    pipe.context.close()
