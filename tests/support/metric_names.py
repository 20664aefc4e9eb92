"""What the components really export, and which metric names a PromQL expression reads.

``exported_metric_names(tmp_path)`` builds each component's registry the way the component does (the
backend's ``Metrics``, an ``AgentRuntime`` with filemon's or procmon's own metrics on it, the operator's
metrics) and returns every series name a scrape can show, per component, plus Prometheus's own ``up``.
``metric_names(expr)`` parses PromQL with promql-parser (the Rust parser Prometheus-compatible tools use) and
returns the names of the series it selects; ``metric_selectors(expr)`` also the ``job`` each one asks for. The alerts' and the dashboard's tests use both.
"""

from __future__ import annotations

from pathlib import Path

import promql_parser
from prometheus_client import CollectorRegistry

# Series names a metric family yields in the text format, by its type (the *_created series are off).
SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("", "_sum", "_count"),
    "info": ("_info",),
    "stateset": ("",),
    "unknown": ("",),
}
# Series Prometheus itself adds to every target.
SCRAPE_SERIES = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}


def registry_names(registry: CollectorRegistry) -> set[str]:
    out = set()
    for family in registry.collect():
        out.update(family.name + s for s in SUFFIXES[family.type])
        out.update(sample.name for sample in family.samples)
    return out


def agent_settings(workspace: Path, state_dir: Path, agent: str):
    """The settings of an agent that sends nowhere (port 9) and serves metrics on a free loopback port."""
    from watcher_agents.config import AgentSettings

    return AgentSettings(
        agent=agent,
        workspace_root=workspace,
        state_dir=state_dir,
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


def _agent_names(tmp_path: Path, agent: str) -> set[str]:
    from watcher_agents.delivery.runtime import AgentRuntime
    from watcher_agents.filemon.metrics import FilemonMetrics
    from watcher_agents.procmon.metrics import ProcmonMetrics

    state = tmp_path / agent
    state.mkdir(parents=True, exist_ok=True)
    settings = agent_settings(tmp_path, state, agent)
    rt = AgentRuntime(settings, metrics_host="127.0.0.1")
    try:
        (FilemonMetrics if agent == "filemon" else ProcmonMetrics)(rt.registry)
        return registry_names(rt.registry)
    finally:
        rt.http.stop()
        rt.outbox.close()


def exported_metric_names(tmp_path: Path) -> dict[str, set[str]]:
    """Every series name each component's /metrics can show."""
    from watcher_backend.metrics import Metrics
    from watcher_operator.metrics import OperatorMetrics

    return {
        "backend": registry_names(Metrics().registry),
        "filemon": _agent_names(tmp_path, "filemon"),
        "procmon": _agent_names(tmp_path, "procmon"),
        "operator": registry_names(OperatorMetrics().registry),
        "prometheus": set(SCRAPE_SERIES),
    }


def metric_names(expr: str) -> set[str]:
    """The names of the series a PromQL expression selects (parse errors raise)."""
    return {name for name, _ in metric_selectors(expr)}


def metric_selectors(expr: str) -> set[tuple[str, str | None]]:
    """(metric name, the value of its ``job`` matcher or None) of every series selector in ``expr``."""
    names: set[tuple[str, str | None]] = set()

    def visit(node) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            matchers = node.matchers.matchers
            job = next((m.value for m in matchers if m.name == "job"), None)
            if node.name:
                names.add((node.name, job))
            names.update((m.value, job) for m in matchers if m.name == "__name__")
            return
        for attr in ("expr", "lhs", "rhs", "vector_selector", "param"):
            child = getattr(node, attr, None)
            if isinstance(child, promql_parser.Expr):
                visit(child)
        for child in getattr(node, "args", None) or []:
            if isinstance(child, promql_parser.Expr):
                visit(child)

    visit(promql_parser.parse(expr))
    return names
