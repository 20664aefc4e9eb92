"""An agent's /metrics over real loopback HTTP carries the process collector and its build info, and no
*_created series."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from support.metric_names import agent_settings
from watcher_agents.delivery.runtime import AgentRuntime
from watcher_core import __version__


@pytest.mark.parametrize("agent", ["filemon", "procmon"])
def test_agent_metrics_have_process_and_build_info_and_no_created_series(tmp_path, agent):
    settings = agent_settings(tmp_path, tmp_path, agent)
    rt = AgentRuntime(settings, metrics_host="127.0.0.1")
    rt.http.start()
    try:
        rt.sender.metrics.sent.inc()  # a counter with a value: it would have a _created series
        text = httpx.get(f"http://127.0.0.1:{rt.http.port}/metrics", timeout=5).text
    finally:
        rt.http.stop()
        rt.outbox.close()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }
    assert samples["watcher_build_info", (("component", agent), ("version", __version__))] == 1
    assert samples["process_start_time_seconds", ()] > 0 and samples["process_cpu_seconds_total", ()] >= 0
    assert samples["watcher_events_sent_total", ()] == 1
    assert "_created" not in text
