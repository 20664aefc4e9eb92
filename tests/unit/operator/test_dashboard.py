"""The Grafana dashboard: the shipped JSON is what grafana-foundation-sdk builds (make generate), every query
reads only metrics the component it selects exports, and the operator renders it per resource as a
ConfigMap for Grafana's sidecar."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from support.metric_names import exported_metric_names, metric_selectors
from watcher_operator import builders, dashboard_build
from watcher_operator.builders import Inputs, build_children

SHIPPED = Path(builders.__file__).parent / "dashboard.json"
INPUTS = Inputs(tokens={"ingest": "i", "read": "r", "admin": "a"})


def resource(name="watcher", namespace="watcher", **spec) -> dict:
    return {
        "apiVersion": "watcher.jcode.io/v1alpha1",
        "kind": "WatcherDeployment",
        "metadata": {"name": name, "namespace": namespace, "uid": "u-1"},
        "spec": {"image": {"tag": "1.0.0"}, **spec},
    }


def queries(board: dict) -> list[tuple[str, str]]:
    return [(p["title"], t["expr"]) for p in board["panels"] for t in p.get("targets", [])]


def as_prometheus_sees_it(expr: str, board: dict) -> str:
    """Grafana's variables replaced as Grafana does before it sends the query."""
    values = {v["name"]: v.get("query", "") for v in board["templating"]["list"]}
    expr = expr.replace("$__rate_interval", "2m")
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: values[m.group(1) or m.group(2)], expr)


def rendered(name="watcher", namespace="watcher", **spec) -> tuple[dict, dict]:
    cm = next(o for o in build_children(resource(name, namespace, **spec), INPUTS) if o["kind"] == "ConfigMap")
    (key, text), *rest = cm["data"].items()
    assert not rest
    return cm, json.loads(text)


def test_the_shipped_dashboard_is_generated():
    text = dashboard_build.dashboard_json()
    if os.environ.get("UPDATE_GOLDEN") == "1" or not SHIPPED.exists():
        SHIPPED.write_text(text)
    assert SHIPPED.read_text() == text, "regenerate with make generate"


def test_the_dashboard_shows_what_operations_asked_for():
    board = json.loads(SHIPPED.read_text())
    titles = {p["title"] for p in board["panels"]}
    assert {
        "Ingest rate by type",
        "Outbox depth per node",
        "Outbox age per node",
        "Save to queryable delay",
        "Compile success rate",
        "Erasure and retention",
    } <= titles
    by_title: dict[str, str] = {}
    for title, expr in queries(board):
        by_title.setdefault(title, expr)  # the panel's first query
    assert "by (type)" in by_title["Ingest rate by type"]
    assert "by (node, job)" in by_title["Outbox depth per node"] and "by (node, job)" in by_title["Outbox age per node"]
    assert "histogram_quantile" in by_title["Save to queryable delay"]
    # every panel reads the Prometheus the person picks
    assert all(p.get("datasource", {}).get("uid") == "${datasource}" for p in board["panels"] if p["type"] != "row")


def test_every_query_reads_only_metrics_the_components_export(tmp_path):
    exported = exported_metric_names(tmp_path)
    by_job = {
        "watcher-backend-service": exported["backend"],
        "watcher-filemon": exported["filemon"],
        "watcher-procmon": exported["procmon"],
        "watcher-(filemon|procmon)": exported["filemon"] & exported["procmon"],
    }
    _, board = rendered()
    checked = 0
    for title, expr in queries(board):
        selectors = metric_selectors(as_prometheus_sees_it(expr, board))
        assert selectors, title
        for name, job in selectors:
            assert job in by_job, f"{title}: {name} selects job {job!r}, not one of our ServiceMonitors'"
            assert name in by_job[job] | exported["prometheus"], f"{title}: {job} does not export {name}"
            checked += 1
    assert checked >= 15
    # a misspelt name would be caught
    assert "watcher_outbox_event" not in by_job["watcher-(filemon|procmon)"]


def test_the_operator_renders_one_dashboard_per_resource_for_the_sidecar():
    cm, board = rendered("lab", "course-a")
    assert cm["metadata"]["name"] == "lab-dashboard"
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["ownerReferences"][0]["name"] == "lab"
    assert list(cm["data"]) == ["jcode-watcher-course-a-lab.json"]
    values = {v["name"]: v["query"] for v in board["templating"]["list"] if v["type"] == "constant"}
    assert values == {"namespace": "course-a", "instance": "lab"}
    expr = as_prometheus_sees_it(dict(queries(board))["Ingest rate by type"], board)
    assert 'namespace="course-a",job="lab-backend-service"' in expr
    other = rendered("lab", "course-b")[1]
    assert board["uid"] != other["uid"] and len(board["uid"]) <= 40  # Grafana keeps one dashboard per uid
    assert board["title"] == "JCode Watcher course-a/lab"


def test_the_dashboard_follows_the_spec():
    def kinds(**monitoring):
        objs = build_children(resource(monitoring=monitoring), INPUTS)
        return {o["metadata"]["name"] for o in objs if o["kind"] == "ConfigMap"}

    assert kinds() == {"watcher-dashboard"}
    assert kinds(grafanaDashboard=False) == set()
    assert kinds(serviceMonitors=False) == set()  # its queries read the ServiceMonitors' series
