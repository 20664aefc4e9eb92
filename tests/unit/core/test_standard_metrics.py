"""Every component's registry has the process collector and watcher_build_info{component,version}, and no
component exposes *_created series (watcher_core.standard_metrics)."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter, generate_latest

from support.metric_names import exported_metric_names
from watcher_core import __version__
from watcher_core.standard_metrics import BUILD_INFO, COMPONENTS, register_standard_metrics

PROCESS = {"process_cpu_seconds_total", "process_resident_memory_bytes", "process_start_time_seconds"}


def test_every_component_exports_the_process_collector_and_its_build_info(tmp_path):
    exported = exported_metric_names(tmp_path)
    assert set(COMPONENTS) <= set(exported)
    for component in COMPONENTS:
        missing = (PROCESS | {BUILD_INFO}) - exported[component]
        assert not missing, f"{component} lacks {missing}"


@pytest.mark.parametrize("component", COMPONENTS)
def test_build_info_names_the_component_and_the_version(component):
    registry = CollectorRegistry()
    register_standard_metrics(registry, component)
    assert registry.get_sample_value(BUILD_INFO, {"component": component, "version": __version__}) == 1
    assert registry.get_sample_value("process_start_time_seconds") > 0


def test_no_created_series():
    registry = CollectorRegistry()
    register_standard_metrics(registry, "filemon")
    Counter("demo_things_total", "demo", ["kind"], registry=registry).labels("a").inc()
    text = generate_latest(registry).decode()
    assert "demo_things_total" in text and "_created" not in text


def test_an_unknown_component_is_refused():
    with pytest.raises(ValueError, match="unknown component"):
        register_standard_metrics(CollectorRegistry(), "filemonn")
