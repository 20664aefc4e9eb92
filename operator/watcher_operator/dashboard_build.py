"""Builds the Grafana dashboard with grafana-foundation-sdk, at ``make generate`` time only.

``python -m watcher_operator.dashboard_build`` prints the JSON that ships as package data
(``watcher_operator/dashboard.json``); the operator reads that file (``builders.build_dashboard_config``)
and never imports this module, so the SDK is a test dependency, not the operator image's. The queries select
the ServiceMonitors' series through three variables the operator fills per resource: ``$namespace`` and
``$instance`` (hidden constants: the resource's namespace and name) and ``$datasource`` (a Prometheus data
source, chosen in Grafana). ``tests/unit/operator/test_dashboard.py`` checks that the shipped file is this
module's output and that every query reads only metrics the components export.
"""

from __future__ import annotations

import json
import sys

from grafana_foundation_sdk.builders import common, dashboard, stat, timeseries
from grafana_foundation_sdk.builders import prometheus as prom
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import (
    BigValueGraphMode,
    GraphDrawStyle,
    LegendDisplayMode,
    LegendPlacement,
    StackingMode,
    TooltipDisplayMode,
)
from grafana_foundation_sdk.models.dashboard import DataSourceRef

TITLE = "JCode Watcher"
BACKEND = 'namespace="$namespace",job="${instance}-backend-service"'
AGENTS = 'namespace="$namespace",job=~"${instance}-(filemon|procmon)"'
FILEMON = 'namespace="$namespace",job="${instance}-filemon"'
RATE = "$__rate_interval"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def _query(expr: str, legend: str, ref: str) -> prom.Dataquery:
    return prom.Dataquery().expr(expr).legend_format(legend).ref_id(ref)


def _series(title: str, description: str, unit: str, queries: list[tuple[str, str]], **opts) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .datasource(DataSourceRef(type_val=DATASOURCE["type"], uid=DATASOURCE["uid"]))
        .height(8)
        .span(12)
        .legend(
            common.VizLegendOptions()
            .display_mode(LegendDisplayMode.LIST)
            .placement(LegendPlacement.BOTTOM)
            .show_legend(True)
        )
        .tooltip(common.VizTooltipOptions().mode(TooltipDisplayMode.MULTI))
    )
    if opts.get("bars"):
        panel = panel.draw_style(GraphDrawStyle.BARS).fill_opacity(80)
    if opts.get("stacked"):
        panel = panel.stacking(common.StackingConfig().mode(StackingMode.NORMAL))
    if "min" in opts:
        panel = panel.min(opts["min"])
    if "max" in opts:
        panel = panel.max(opts["max"])
    for i, (expr, legend) in enumerate(queries):
        panel = panel.with_target(_query(expr, legend, chr(ord("A") + i)))
    return panel


def _stat(title: str, description: str, unit: str, expr: str) -> stat.Panel:
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .graph_mode(BigValueGraphMode.AREA)
        .datasource(DataSourceRef(type_val=DATASOURCE["type"], uid=DATASOURCE["uid"]))
        .height(4)
        .span(6)
        .with_target(_query(expr, "", "A"))
    )


def _quantile(q: float, type_: str) -> str:
    return (
        f"histogram_quantile({q}, sum by (le) (rate(watcher_event_queryable_delay_seconds_bucket"
        f'{{{BACKEND},type="{type_}"}}[{RATE}])))'
    )


def build() -> dict:
    compiles = f'{BACKEND},type="process.compile"'
    board = (
        dashboard.Dashboard(TITLE)
        .uid("jcode-watcher")
        .description("Ingest, delivery from the nodes, and privacy work of one JCode Watcher (docs/operator.md)")
        .tags(["jcode-watcher"])
        .refresh("1m")
        .time("now-6h", "now")
        .timezone("browser")
        .with_variable(dashboard.DatasourceVariable("datasource").label("Data source").type("prometheus"))
        .with_variable(dashboard.ConstantVariable("namespace").value("watcher"))
        .with_variable(dashboard.ConstantVariable("instance").value("watcher"))
        .with_row(dashboard.Row("Overview"))
        .with_panel(
            _stat(
                "Events stored (last hour)",
                "New events the backend stored in the last hour (resends not counted).",
                "short",
                f'sum(increase(watcher_events_ingested_total{{{BACKEND},result="accepted"}}[1h]))',
            )
        )
        .with_panel(
            _stat(
                "Compile success (last hour)",
                "Share of the compiles stored in the last hour that exited 0 without a signal.",
                "percentunit",
                f'sum(increase(watcher_event_outcomes_total{{{compiles},outcome="succeeded"}}[1h])) / '
                f"sum(increase(watcher_event_outcomes_total{{{compiles}}}[1h]))",
            )
        )
        .with_panel(
            _stat(
                "Agents up",
                "filemon and procmon pods that answer Prometheus' scrape.",
                "short",
                f"sum(up{{{AGENTS}}})",
            )
        )
        .with_panel(
            _stat(
                "Events waiting on the nodes",
                "Events in every agent's outbox, not yet stored by the backend.",
                "short",
                f"sum(watcher_outbox_events{{{AGENTS}}})",
            )
        )
        .with_row(dashboard.Row("Ingest"))
        .with_panel(
            _series(
                "Ingest rate by type",
                "Events per second posted to /api/v1/events, by type: stored, resends the backend already had "
                "(duplicate), and refused (rejected: they become the agents' dead letters).",
                "ops",
                [
                    (
                        f'sum by (type) (rate(watcher_events_ingested_total{{{BACKEND},result="accepted"}}[{RATE}]))',
                        "{{type}}",
                    ),
                    (
                        f"sum by (type, result) (rate(watcher_events_ingested_total"
                        f'{{{BACKEND},result=~"duplicate|rejected"}}[{RATE}]))',
                        "{{type}} {{result}}",
                    ),
                ],
                stacked=True,
            )
        )
        .with_panel(
            _series(
                "Save to queryable delay",
                "From a file's save (the event's timestamp) to its row being stored and readable through the "
                "API: debounce, the outbox, the network and the insert. Hours after an outage, seconds otherwise.",
                "s",
                [(_quantile(q, "file.save"), f"p{round(q * 100)}") for q in (0.5, 0.95, 0.99)],
                min=0,
            )
        )
        .with_panel(
            _series(
                "Compile success rate",
                "Share of the stored compiles that exited 0 without a signal; failed compiles are students' "
                "errors, so a sudden drop to 0 is rather a broken compiler image.",
                "percentunit",
                [
                    (
                        f'sum(rate(watcher_event_outcomes_total{{{compiles},outcome="succeeded"}}[{RATE}])) / '
                        f"sum(rate(watcher_event_outcomes_total{{{compiles}}}[{RATE}]))",
                        "compiles succeeded",
                    ),
                    (
                        f'sum(rate(watcher_event_outcomes_total{{{BACKEND},type="process.run",outcome="succeeded"}}'
                        f"[{RATE}])) / sum(rate(watcher_event_outcomes_total"
                        f'{{{BACKEND},type="process.run"}}[{RATE}]))',
                        "runs succeeded",
                    ),
                ],
                min=0,
                max=1,
            )
        )
        .with_panel(
            _series(
                "Stored compiles and runs",
                "Compiles and runs stored per second, by outcome.",
                "ops",
                [
                    (
                        f"sum by (type, outcome) (rate(watcher_event_outcomes_total{{{BACKEND}}}[{RATE}]))",
                        "{{type}} {{outcome}}",
                    )
                ],
                stacked=True,
            )
        )
        .with_row(dashboard.Row("Delivery from the nodes"))
        .with_panel(
            _series(
                "Outbox depth per node",
                "Events waiting in each agent's outbox (on the node's disk) until the backend stores them.",
                "short",
                [(f"max by (node, job) (watcher_outbox_events{{{AGENTS}}})", "{{node}} {{job}}")],
            )
        )
        .with_panel(
            _series(
                "Outbox age per node",
                "Age of the oldest unsent event of each agent: the alert WatcherOutboxOld fires above 10 minutes.",
                "s",
                [(f"max by (node, job) (watcher_outbox_oldest_age_seconds{{{AGENTS}}})", "{{node}} {{job}}")],
                min=0,
            )
        )
        .with_row(dashboard.Row("Erasure and retention"))
        .with_panel(
            _series(
                "Erasure and retention",
                "Rows deleted by student erasure requests and by the retention policy, and erased snapshot "
                "contents filemon removed from the store, per hour.",
                "short",
                [
                    (f"sum(increase(watcher_student_records_deleted_total{{{BACKEND}}}[1h]))", "erasure: rows deleted"),
                    (f"sum(increase(watcher_retention_purged_total{{{BACKEND}}}[1h]))", "retention: events purged"),
                    (
                        f"sum(increase(watcher_erased_contents_removed_total{{{BACKEND}}}[1h]))",
                        "snapshot contents removed",
                    ),
                ],
                bars=True,
            )
        )
        .with_panel(
            _series(
                "Retention runs and snapshot collector",
                "Retention purges by result (backend) and erased contents the snapshot collector handled by "
                "result (filemon), per hour.",
                "short",
                [
                    (
                        f"sum by (result) (increase(watcher_retention_runs_total{{{BACKEND}}}[1h]))",
                        "retention {{result}}",
                    ),
                    (
                        f"sum by (result) (increase(filemon_snapshot_gc_total{{{FILEMON}}}[1h]))",
                        "collector {{result}}",
                    ),
                ],
                bars=True,
            )
        )
    )
    out = json.loads(json.dumps(board.build(), cls=JSONEncoder))
    for i, panel in enumerate(out["panels"], start=1):  # stable ids: links to a panel (viewPanel=) keep working
        panel["id"] = i
    return out


def dashboard_json() -> str:
    return json.dumps(build(), indent=2, sort_keys=True) + "\n"


def main() -> int:
    sys.stdout.write(dashboard_json())
    return 0


if __name__ == "__main__":
    sys.exit(main())
