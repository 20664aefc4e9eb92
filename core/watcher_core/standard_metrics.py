"""The metrics every component serves the same way: the process collector, ``watcher_build_info`` and no
``*_created`` series. Each component (backend, filemon, procmon, operator) calls
``register_standard_metrics`` on its own registry once.

prometheus_client is imported here, not at the top: core itself does not depend on it, every component
that calls this does.
"""

from __future__ import annotations

from typing import Any

from watcher_core import __version__

BUILD_INFO = "watcher_build_info"
COMPONENTS = ("backend", "filemon", "procmon", "operator")


def register_standard_metrics(registry: Any, component: str) -> None:
    """Add the process collector (``process_*``: CPU, memory, open files, start time) and
    ``watcher_build_info{component,version} 1`` to ``registry``; switch the ``*_created`` series off."""
    from prometheus_client import Gauge, ProcessCollector, disable_created_metrics

    if component not in COMPONENTS:
        raise ValueError(f"unknown component {component!r}")
    # A process-wide switch of prometheus_client, read at every scrape: the *_created series double the
    # output and say nothing a dashboard uses (the process start time is in process_start_time_seconds).
    disable_created_metrics()
    ProcessCollector(registry=registry)
    info = Gauge(
        BUILD_INFO,
        "Version of the running component (value is always 1)",
        ["component", "version"],
        registry=registry,
        multiprocess_mode="max",  # the backend's workers (prometheus_client multiprocess mode) report it once
    )
    info.labels(component, __version__).set(1)
