"""The alert rules of a WatcherDeployment, as data: one table (``ALERTS``), rendered per resource.

The operator wraps the group in a PrometheusRule child (``builders.build_prometheus_rule``) when the cluster
has the PrometheusRule CRD; ``python -m watcher_operator.alerts`` prints the same group as a plain
Prometheus rules file for the deployment guide's names (resource ``watcher`` in namespace ``watcher``), the
copy in ``deploy/prometheus-rules.yaml`` for a Prometheus without the operator (``make generate``).

The rules select the series of the operator's ServiceMonitors: ``job`` is the scraped Service's name and
``namespace`` its namespace (the Prometheus Operator sets both). Every metric named here is one the
components export; ``tests/unit/operator/test_alerts.py`` parses the expressions and checks each name
against the components' registries, and runs ``promtool test rules`` with one firing and one quiet case
per alert. Each alert has a runbook section in docs/operator.md, under its name.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from datetime import datetime, timedelta
from string import Template
from zoneinfo import ZoneInfo

import yaml

# The hours classes happen in, for the no-events alert: weekdays 09:00-18:00 in Korea.
CLASS_ZONE = "Asia/Seoul"
CLASS_HOURS = (9, 18)
CLASS_WEEKDAYS = (1, 5)  # Monday..Friday, as PromQL's day_of_week() counts (0 = Sunday)
# The window of the no-events alert: no accepted event in the last hour. The alert watches only hours whose
# whole window lies inside the class day (10:00-18:00), so the night before never counts.
NO_EVENTS_WINDOW_HOURS = 1
# The snapshot collector is stalled after this many of its intervals without a finished run.
GC_STALLED_INTERVALS = 3
OUTBOX_AGE_SECONDS = 600
OUTBOX_FILL_RATIO = (
    0.8  # the agents warn in their log at the same ratio (watcher_agents.delivery.sender.OUTBOX_WARN_RATIO)
)
RUNBOOK = "docs/operator.md#{anchor}"


class _Params(Template):
    """The table's placeholders are @name: $ belongs to the annotations' Go templates ({{ $labels.node }})."""

    delimiter = "@"


@dataclass(frozen=True)
class Alert:
    name: str
    component: str  # backend, filemon, procmon or agents (both): the rule is left out when it is disabled
    severity: str  # critical (students' work is not being recorded) or warning
    expr: str  # @backend, @agents, @filemon, @procmon (selectors) and the other values of rule_group()
    summary: str
    description: str  # what it means and what to do
    for_: str = "0m"

    @property
    def anchor(self) -> str:
        return self.name.lower()


ALERTS: tuple[Alert, ...] = (
    Alert(
        "WatcherBackendDown",
        "backend",
        "critical",
        "up{@backend} == 0 or absent(up{@backend})",
        "The Watcher backend {{ $labels.namespace }}/{{ $labels.job }} is not scraped or not answering",
        "Prometheus cannot scrape the backend (or no backend target exists). The agents keep their events in "
        "their outboxes meanwhile, but nobody can read the data. Check the pods: kubectl -n "
        "{{ $labels.namespace }} get pods -l app={{ $labels.job }} and the WatcherDeployment's conditions "
        "(kubectl -n {{ $labels.namespace }} describe wd).",
        "5m",
    ),
    Alert(
        "WatcherAgentDown",
        "agents",
        "critical",
        "up{@agents} == 0",
        "Watcher agent {{ $labels.job }} on {{ $labels.node }} is down",
        "The agent's metrics endpoint does not answer: saves, compiles or runs on node {{ $labels.node }} are not "
        "recorded while it is down. Check the pod ({{ $labels.pod }}): kubectl -n {{ $labels.namespace }} logs "
        "{{ $labels.pod }} and kubectl -n {{ $labels.namespace }} describe pod {{ $labels.pod }}.",
        "5m",
    ),
    Alert(
        "WatcherOutboxOld",
        "agents",
        "warning",
        "watcher_outbox_oldest_age_seconds{@agents} > @outbox_age",
        "Events on {{ $labels.node }} wait in {{ $labels.job }}'s outbox for more than @outbox_age_minutes minutes",
        "The agent cannot deliver to the backend: its oldest unsent event is older than @outbox_age_minutes "
        "minutes. Nothing is lost yet (the outbox is on disk), but the data is late. Look at the agent's log "
        "for the reason (backend unreachable, token refused) and at WatcherBackendDown.",
        "2m",
    ),
    Alert(
        "WatcherOutboxFilling",
        "agents",
        "warning",
        "watcher_outbox_fill_ratio{@agents} > @outbox_fill",
        "{{ $labels.job }}'s outbox on {{ $labels.node }} is more than @outbox_fill_percent % full",
        "When the outbox is full the agent stops queueing new events and they are lost. Restore delivery "
        "to the backend first (see WatcherOutboxOld); watcher outbox status in the agent's pod shows the queue.",
        "5m",
    ),
    Alert(
        "WatcherIngestTokenRejected",
        "backend",
        "warning",
        'sum by (namespace, job) (increase(http_requests_total{@backend,endpoint="/api/v1/events",'
        'http_status=~"401|403"}[10m])) > 0',
        "The backend refuses the token of event posts",
        "POST /api/v1/events answered 401 or 403 in the last 10 minutes: an agent or notebook hook sends a "
        "wrong or outdated token, and its events stay in its outbox. Compare the ingest token the agents get "
        "(the Secret named by status.tokensSecretName) with the backend's, and restart the agents after a "
        "token change.",
    ),
    Alert(
        "WatcherDeadLetters",
        "agents",
        "warning",
        "increase(watcher_dead_letters_total{@agents}[30m]) > 0",
        "{{ $labels.job }} on {{ $labels.node }} has new dead letters",
        "The backend refused events for good (they are kept in the agent's dead-letter table, not sent again). "
        "See why: kubectl -n {{ $labels.namespace }} exec {{ $labels.pod }} -- watcher outbox dead-letters list; "
        "after fixing the cause (usually: upgrade the backend first) put them back with "
        "watcher outbox dead-letters requeue --all.",
    ),
    Alert(
        "WatcherKernelEventsLost",
        "procmon",
        "warning",
        "increase(procmon_events_lost_total{@procmon}[10m]) > 0",
        "procmon on {{ $labels.node }} lost kernel events",
        "The kernel dropped exec/exit events before procmon read them (ring buffer or netlink socket full): "
        "some compiles or runs on this node are missing. Look at the node's load and procmon's CPU limit "
        "(spec.procmon.resources); procmon_queue_depth shows a backlog.",
    ),
    Alert(
        "WatcherInotifyWatchesMissing",
        "filemon",
        "warning",
        "filemon_watches_missing{@filemon} > 0",
        "filemon on {{ $labels.node }} cannot watch every student folder",
        "Some directories have no inotify watch (the node's fs.inotify.max_user_watches is too low); filemon "
        "polls them instead, so saves there are seen late and intermediate versions may be missed. Raise the "
        "limit on the node: sysctl -w fs.inotify.max_user_watches=1048576 (and persist it).",
        "15m",
    ),
    Alert(
        "WatcherSnapshotCollectorStalled",
        "filemon",
        "warning",
        "time() - filemon_snapshot_gc_last_run_timestamp_seconds{@filemon} > @gc_stalled_seconds",
        "filemon's snapshot collector on {{ $labels.node }} has not finished a run for @gc_stalled_intervals intervals",
        "Erased contents (erasure requests, retention) stay in the snapshot store until the collector removes "
        "them. It needs the backend to answer; look at filemon's log (snapshot collector lines) and "
        'filemon_snapshot_gc_total{result="error"}.',
        "@gc_interval",
    ),
    Alert(
        "WatcherDatabaseErrors",
        "backend",
        "critical",
        "increase(watcher_database_errors_total{@backend}[5m]) > 0",
        "The Watcher backend's database fails",
        "Requests were answered 503 because the database failed; events wait in the agents' outboxes. Check "
        "the database (the backend's claim is full? PostgreSQL down?) and the backend's log.",
    ),
    Alert(
        "WatcherNoEventsDuringClassHours",
        "backend",
        "warning",
        '(sum(increase(watcher_events_ingested_total{@backend,result="accepted"}[@{window}h])) or vector(0)) == 0 '
        "and on() (hour() >= @utc_from and hour() < @utc_to) "
        "and on() (day_of_week() >= @weekday_from and day_of_week() <= @weekday_to)",
        "No event reached the Watcher backend in the last hour of a class day",
        "On weekdays between @class_from:00 and @class_to:00 Korea time students save files all the time; none "
        "was stored for an hour. Either nobody works (a holiday: silence the alert) or recording broke "
        "everywhere at once: look at WatcherAgentDown, WatcherIngestTokenRejected and the agents' logs.",
    ),
)


def _utc_hours() -> tuple[int, int]:
    """The class day's hours in UTC (Korea has no daylight saving time, so one offset holds all year)."""
    zone = ZoneInfo(CLASS_ZONE)
    offsets = {zone.utcoffset(datetime(2024, month, 1)) for month in range(1, 13)}
    assert len(offsets) == 1, f"{CLASS_ZONE} has daylight saving time: one UTC range does not fit"
    shift = int(offsets.pop() / timedelta(hours=1))
    start, end = CLASS_HOURS[0] + NO_EVENTS_WINDOW_HOURS - shift, CLASS_HOURS[1] - shift
    assert 0 <= start < end <= 24, "the class day crosses midnight in UTC: one hour() range does not fit"
    return start, end


def _selector(namespace: str, jobs: list[str]) -> str:
    job = f'job="{jobs[0]}"' if len(jobs) == 1 else f'job=~"{"|".join(jobs)}"'
    return f'namespace="{namespace}",{job}'


def rule_group(name: str, namespace: str, spec: dict) -> dict:
    """The rules group of one WatcherDeployment (``spec`` defaulted), for the enabled components only."""
    enabled = {"backend": True, "filemon": spec["filemon"]["enabled"], "procmon": spec["procmon"]["enabled"]}
    jobs = {"backend": f"{name}-backend-service", "filemon": f"{name}-filemon", "procmon": f"{name}-procmon"}
    agents = [jobs[c] for c in ("filemon", "procmon") if enabled[c]]
    gc_interval = int(spec["filemon"]["snapshotGcIntervalSeconds"])
    utc_from, utc_to = _utc_hours()
    values = {
        "backend": _selector(namespace, [jobs["backend"]]),
        "filemon": _selector(namespace, [jobs["filemon"]]),
        "procmon": _selector(namespace, [jobs["procmon"]]),
        "agents": _selector(namespace, agents) if agents else "",
        "outbox_age": str(OUTBOX_AGE_SECONDS),
        "outbox_age_minutes": f"{OUTBOX_AGE_SECONDS / 60:g}",
        "outbox_fill": f"{OUTBOX_FILL_RATIO:g}",
        "outbox_fill_percent": f"{OUTBOX_FILL_RATIO * 100:g}",
        "gc_interval": f"{gc_interval}s",
        "gc_stalled_seconds": str(GC_STALLED_INTERVALS * gc_interval),
        "gc_stalled_intervals": str(GC_STALLED_INTERVALS),
        "window": str(NO_EVENTS_WINDOW_HOURS),
        "utc_from": str(utc_from),
        "utc_to": str(utc_to),
        "weekday_from": str(CLASS_WEEKDAYS[0]),
        "weekday_to": str(CLASS_WEEKDAYS[1]),
        "class_from": f"{CLASS_HOURS[0]:02d}",
        "class_to": f"{CLASS_HOURS[1]:02d}",
    }
    rules = []
    for a in ALERTS:
        if a.component == "agents" and not agents or a.component in ("filemon", "procmon") and not enabled[a.component]:
            continue
        if a.name == "WatcherSnapshotCollectorStalled" and gc_interval == 0:
            continue  # the collector is off (snapshotGcIntervalSeconds: 0)
        rule: dict = {"alert": a.name, "expr": _Params(a.expr).substitute(values)}
        for_ = _Params(a.for_).substitute(values)
        if for_ != "0m":
            rule["for"] = for_
        rule["labels"] = {"severity": a.severity, "component": a.component, "namespace": namespace}
        rule["annotations"] = {
            "summary": _Params(a.summary).substitute(values),
            "description": _Params(a.description).substitute(values),
            "runbook": RUNBOOK.format(anchor=a.anchor),
        }
        rules.append(rule)
    return {"name": f"jcode-watcher.{namespace}.{name}", "rules": rules}


def rules_file_yaml(name: str = "watcher", namespace: str = "watcher") -> str:
    """A Prometheus rules file (``rule_files:``) with the group for the deployment guide's names."""
    from watcher_operator.defaults import spec_with_defaults

    header = (
        "# Prometheus alert rules for JCode Watcher without the operator (resource `watcher`, namespace `watcher`,\n"
        "# the deployment guide's names). Generated from operator/watcher_operator/alerts.py\n"
        "# (python -m watcher_operator.alerts, make generate); do not edit. The runbook: docs/operator.md#alerts.\n"
    )
    group = rule_group(name, namespace, spec_with_defaults({}))
    return header + yaml.safe_dump({"groups": [group]}, sort_keys=False, width=120)


def main() -> int:
    sys.stdout.write(rules_file_yaml())
    return 0


if __name__ == "__main__":
    sys.exit(main())
