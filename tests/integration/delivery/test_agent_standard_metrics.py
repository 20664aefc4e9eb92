"""An agent's /metrics over real loopback HTTP carries the process collector and its build info, and no
*_created series."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from watcher_agents.config import AgentSettings
from watcher_agents.runtime import AgentRuntime
from watcher_core import __version__


@pytest.mark.parametrize("agent", ["filemon", "procmon"])
def test_agent_metrics_have_process_and_build_info_and_no_created_series(tmp_path, agent):
    settings = AgentSettings(
        agent=agent,
        workspace_root=tmp_path,
        state_dir=tmp_path,
        backend_url="http://127.0.0.1:9",
        token=None,
        token_source="none",
        metrics_port=0,
        node_name="node-1",
        outbox_max_events=100,
        outbox_max_bytes=1 << 20,
        outbox_sync="normal",
        batch_size=10,
        log_level="INFO",
    )
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
