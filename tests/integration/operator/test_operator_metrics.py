"""The operator's metrics port over real loopback HTTP: reconciles by result, their duration, the last
success per resource, the process collector and the build info; a deleted resource's series goes."""

from __future__ import annotations

import time

import httpx
from prometheus_client.parser import text_string_to_metric_families

from watcher_core import __version__
from watcher_operator.metrics import OperatorMetrics


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    assert "_created" not in text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_reconciles_are_counted_timed_and_stamped_on_the_metrics_port():
    metrics = OperatorMetrics()
    server = metrics.serve(0, host="127.0.0.1")
    port = server.server_port
    m = scrape(port)
    assert m["watcher_operator_reconciles_total", (("result", "blocked"),)] == 0  # there before the first
    assert m["watcher_build_info", (("component", "operator"), ("version", __version__))] == 1
    assert m["process_resident_memory_bytes", ()] > 0
    now = time.time()
    metrics.observe("course-a", "watcher", "ok", 0.2, now)
    metrics.observe("course-a", "watcher", "blocked", 0.05, now + 1)
    metrics.observe("course-b", "lab", "error", 3.0, now + 2)
    m = scrape(port)
    assert [m["watcher_operator_reconciles_total", (("result", r),)] for r in ("ok", "blocked", "error")] == [1, 1, 1]
    assert m["watcher_operator_reconcile_duration_seconds_count", ()] == 3
    assert m["watcher_operator_reconcile_duration_seconds_bucket", (("le", "0.25"),)] == 2
    # only a full success stamps: course-a's is the ok one, course-b never succeeded
    stamps = {k[1]: v for k, v in m.items() if k[0] == "watcher_operator_last_success_timestamp_seconds"}
    assert stamps == {(("name", "watcher"), ("namespace", "course-a")): now}
    metrics.forget("course-a", "watcher")
    metrics.forget("course-b", "lab")  # never stamped: nothing to remove, no error
    assert not any(k[0] == "watcher_operator_last_success_timestamp_seconds" for k in scrape(port))
    server.shutdown()
    server.server_close()
