"""The cluster tier: one real node (support.cluster) with the project's images, shared by the module."""

from __future__ import annotations

import pytest

from support.cluster import Cluster, why_no_cluster
from support.podman import build_images, build_local_image, ensure_tracefs, why_no_podman


@pytest.fixture(scope="session")
def cluster():
    why = why_no_cluster() or why_no_podman()
    if why:
        pytest.skip(why)
    c = Cluster()
    if c.running():
        pytest.fail(f"a cluster is already running from {c.dir} (make cluster-down first)")
    images = [*build_images().values(), build_local_image("student")]
    build_local_image("pause")
    ensure_tracefs()  # procmon's tracepoints; on a real node systemd mounts it
    with c:
        c.load_images(images)
        yield c


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failing cluster test shows what the cluster looked like: pods, events, the last log lines."""
    outcome = yield
    report = outcome.get_result()
    c = item.funcargs.get("cluster") if hasattr(item, "funcargs") else None
    if report.failed and isinstance(c, Cluster) and c.running():
        try:
            report.sections.append(("cluster state", c.diagnose("watcher")))
        except Exception as exc:  # the diagnosis must never hide the failure itself
            report.sections.append(("cluster state", f"(could not be read: {exc})"))
