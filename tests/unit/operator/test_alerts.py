"""The alert rules (watcher_operator.alerts): valid for the real promtool, each alert fires when it should and
not when it should not (``promtool test rules``), reads only metrics the components export, has a runbook
section in docs/operator.md, and deploy/prometheus-rules.yaml is the generated copy."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from support.metric_names import exported_metric_names, metric_names
from watcher_operator import alerts
from watcher_operator.defaults import spec_with_defaults

ROOT = Path(__file__).resolve().parents[3]
RULES_FILE = ROOT / "deploy" / "prometheus-rules.yaml"
OPERATOR_DOC = ROOT / "docs" / "operator.md"
PROMTOOL = shutil.which("promtool")

# Series labels as the ServiceMonitors give them (job = the Service, node from the relabeling).
B = {"namespace": "watcher", "job": "watcher-backend-service", "pod": "watcher-backend-7d9f-abcde"}
F = {"namespace": "watcher", "job": "watcher-filemon", "pod": "watcher-filemon-x7k2q", "node": "node-1"}
P = {"namespace": "watcher", "job": "watcher-procmon", "pod": "watcher-procmon-q2w3e", "node": "node-2"}


def series(name: str, labels: dict, **more: str) -> str:
    body = ",".join(f'{k}="{v}"' for k, v in {**labels, **more}.items())
    return f"{name}{{{body}}}"


@dataclass
class Case:
    """Input series (series -> promtool values), the evaluation time, and the alerts expected then (each
    as the labels the expression leaves; the rule's own labels are added from the table). Empty: quiet."""

    input: dict[str, str]
    at: str
    fires: list[dict] = field(default_factory=list)
    step: str = "1m"  # of the input series and of promtool's rule evaluation


def _job(labels: dict) -> dict:
    return {"namespace": labels["namespace"], "job": labels["job"]}


NO_EVENTS = "WatcherNoEventsDuringClassHours"
EVENTS = series("watcher_events_ingested_total", B, type="file.save", result="accepted")
CASES: dict[str, list[Case]] = {
    "WatcherBackendDown": [
        Case({series("up", B): "0x15"}, "10m", [B]),
        Case({series("up", F): "1x15"}, "10m", [_job(B)]),  # no backend target at all
        Case({series("up", B): "1x15"}, "10m"),
        Case({series("up", B): "0 0 0 1x12"}, "10m"),  # down 3 minutes: not yet
    ],
    "WatcherAgentDown": [
        Case({series("up", F): "0x15", series("up", P): "1x15"}, "10m", [F]),
        Case({series("up", F): "1x15", series("up", B): "0x15"}, "10m"),  # the backend is not an agent
    ],
    "WatcherOutboxOld": [
        Case({series("watcher_outbox_oldest_age_seconds", P): "0+60x20"}, "15m", [P]),  # 900 s
        Case({series("watcher_outbox_oldest_age_seconds", P): "0+30x20"}, "15m"),  # 450 s
    ],
    "WatcherOutboxFilling": [
        Case({series("watcher_outbox_fill_ratio", F): "0.9x20"}, "10m", [F]),
        Case({series("watcher_outbox_fill_ratio", F): "0.7x20"}, "10m"),
    ],
    "WatcherIngestTokenRejected": [
        Case(
            {series("http_requests_total", B, method="POST", endpoint="/api/v1/events", http_status="401"): "0+1x20"},
            "10m",
            [_job(B)],
        ),
        Case(
            {
                series("http_requests_total", B, method="POST", endpoint="/api/v1/events", http_status="401"): "5x20",
                series("http_requests_total", B, method="POST", endpoint="/api/v1/events", http_status="200"): "0+9x20",
                series("http_requests_total", B, method="GET", endpoint="/api/v1/status", http_status="401"): "0+1x20",
            },
            "10m",
        ),
    ],
    "WatcherDeadLetters": [
        Case({series("watcher_dead_letters_total", F): "0 0 0 0 0 1x30"}, "20m", [F]),
        Case({series("watcher_dead_letters_total", F): "3x40"}, "35m"),
    ],
    "WatcherKernelEventsLost": [
        Case({series("procmon_events_lost_total", P): "0+1x20"}, "10m", [P]),
        Case({series("procmon_events_lost_total", P): "0x20"}, "10m"),
    ],
    "WatcherInotifyWatchesMissing": [
        Case({series("filemon_watches_missing", F): "3x30"}, "20m", [F]),
        Case({series("filemon_watches_missing", F): "0x10 3x10"}, "18m"),  # 8 minutes: not yet
        Case({series("filemon_watches_missing", F): "3x10 0x20"}, "25m"),
    ],
    # the default interval: 600 s, stalled after 1800 s without a run, for 600 s
    "WatcherSnapshotCollectorStalled": [
        Case({series("filemon_snapshot_gc_last_run_timestamp_seconds", F): "60x60"}, "60m", [F]),
        Case({series("filemon_snapshot_gc_last_run_timestamp_seconds", F): "60x60"}, "35m"),  # 34 min: not yet
        Case({series("filemon_snapshot_gc_last_run_timestamp_seconds", F): "0+60x60"}, "60m"),
    ],
    "WatcherDatabaseErrors": [
        Case({series("watcher_database_errors_total", B): "0 0 1 1 1 1 1"}, "4m", [B]),
        Case({series("watcher_database_errors_total", B): "0x10"}, "10m"),
    ],
    # promtool's clock starts at 1970-01-01 00:00 UTC, a Thursday; Korea is UTC+9
    # (no `for`: evaluated every 10 minutes, which keeps the two days of the weekend case quick)
    "WatcherNoEventsDuringClassHours": [
        Case({EVENTS: "10x20"}, "2h", [{}], step="10m"),  # Thursday 11:00 KST, nothing for an hour
        Case({EVENTS: "10x60"}, "8h50m", [{}], step="10m"),  # 17:50 KST
        Case({series("up", B): "1x20"}, "2h", [{}], step="10m"),  # not one event since the backend started
        Case({EVENTS: "0+5x20"}, "2h", step="10m"),  # students save
        Case({EVENTS: "10x60"}, "9h", step="10m"),  # 18:00 KST: the day is over
        Case({EVENTS: "10x10"}, "50m", step="10m"),  # 09:50 KST: the hour looked at began at night
        Case({EVENTS: "10x310"}, "50h", step="10m"),  # Saturday 11:00 KST
    ],
}


def default_group() -> dict:
    return alerts.rule_group("watcher", "watcher", spec_with_defaults({}))


def _render(text: str, labels: dict) -> str:
    return re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels.get(m.group(1), ""), text)


def promtool_test(tmp_path: Path, rules: Path, name: str, cases: list[Case]) -> subprocess.CompletedProcess:
    rule = next(r for r in yaml.safe_load(rules.read_text())["groups"][0]["rules"] if r["alert"] == name)
    steps = {c.step for c in cases}
    assert len(steps) == 1, "promtool evaluates a file at one interval: one step per call"
    tests = []
    for c in cases:
        expected = []
        for labels in c.fires:
            full = {**labels, **rule["labels"]}
            expected.append(
                {"exp_labels": full, "exp_annotations": {k: _render(v, full) for k, v in rule["annotations"].items()}}
            )
        tests.append(
            {
                "interval": c.step,
                "input_series": [{"series": s, "values": v} for s, v in c.input.items()],
                "alert_rule_test": [{"eval_time": c.at, "alertname": name, "exp_alerts": expected}],
            }
        )
    spec = tmp_path / f"{name}.test.yaml"
    doc = {"rule_files": [str(rules)], "evaluation_interval": steps.pop(), "tests": tests}
    spec.write_text(yaml.safe_dump(doc))
    return subprocess.run([PROMTOOL, "test", "rules", str(spec)], capture_output=True, text=True, timeout=60)


def test_promtool_is_installed():
    assert PROMTOOL, "promtool missing: run scripts/deps/prometheus.sh (make deps)"


def test_the_shipped_rules_file_is_generated_and_valid():
    text = alerts.rules_file_yaml()
    if os.environ.get("UPDATE_GOLDEN") == "1" or not RULES_FILE.exists():
        RULES_FILE.write_text(text)
    assert RULES_FILE.read_text() == text, "regenerate deploy/ with make generate"
    assert yaml.safe_load(text)["groups"] == [default_group()]
    out = subprocess.run([PROMTOOL, "check", "rules", str(RULES_FILE)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(alerts.ALERTS)} rules found" in out.stdout


def test_every_alert_has_a_firing_and_a_quiet_case():
    assert set(CASES) == {a.name for a in alerts.ALERTS}
    for name, cases in CASES.items():
        assert any(c.fires for c in cases) and any(not c.fires for c in cases), name


@pytest.mark.parametrize("name", sorted(CASES))
def test_alert_fires_when_it_should_and_not_otherwise(tmp_path, name):
    out = promtool_test(tmp_path, RULES_FILE, name, CASES[name])
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout
    # each case, turned around (quiet expected to fire, firing expected quiet), fails: every case checks
    for c in CASES[name]:
        flipped = Case(c.input, c.at, [] if c.fires else [_job(B) if name != NO_EVENTS else {}], c.step)
        out = promtool_test(tmp_path, RULES_FILE, name, [flipped])
        assert out.returncode != 0 and "FAILED" in out.stdout + out.stderr, (name, c)


def test_rules_read_only_metrics_the_components_export(tmp_path):
    exported = exported_metric_names(tmp_path)
    scope = {
        "backend": exported["backend"],
        "filemon": exported["filemon"],
        "procmon": exported["procmon"],
        "agents": exported["filemon"] & exported["procmon"],  # the selector matches both agents
    }
    rules = {r["alert"]: r for r in default_group()["rules"]}
    for a in alerts.ALERTS:
        names = metric_names(rules[a.name]["expr"])
        assert names, a.name
        unknown = names - scope[a.component] - exported["prometheus"]
        assert not unknown, f"{a.name} reads {unknown}, which {a.component} does not export"
    # and the check would notice a misspelt name
    assert metric_names("rate(watcher_events_ingsted_total[5m])") - exported["backend"]


def test_every_alert_has_a_runbook_section_that_says_what_to_do():
    doc = OPERATOR_DOC.read_text()
    headings = set(re.findall(r"^#### (Watcher\w+)$", doc, flags=re.M))
    assert headings == {a.name for a in alerts.ALERTS}
    for rule in default_group()["rules"]:
        assert rule["annotations"]["runbook"] == f"docs/operator.md#{rule['alert'].lower()}"
        assert rule["labels"]["severity"] in ("critical", "warning")
        assert len(rule["annotations"]["description"]) > 80


def test_the_outbox_threshold_is_the_agents_warning_ratio():
    from watcher_agents.delivery.sender import OUTBOX_WARN_RATIO

    assert alerts.OUTBOX_FILL_RATIO == OUTBOX_WARN_RATIO


def test_class_hours_are_expressed_in_utc():
    expr = next(r["expr"] for r in default_group()["rules"] if r["alert"] == "WatcherNoEventsDuringClassHours")
    # 10:00-18:00 in Seoul (the hour looked at lies inside 09-18) is 01:00-09:00 UTC, Monday to Friday
    assert "hour() >= 1 and hour() < 9" in expr
    assert "day_of_week() >= 1 and day_of_week() <= 5" in expr


def test_rules_follow_the_enabled_components():
    spec = spec_with_defaults({"filemon": {"enabled": False}})
    group = alerts.rule_group("lab", "course-a", spec)
    names = {r["alert"] for r in group["rules"]}
    assert "WatcherInotifyWatchesMissing" not in names and "WatcherSnapshotCollectorStalled" not in names
    agent_down = next(r for r in group["rules"] if r["alert"] == "WatcherAgentDown")
    assert agent_down["expr"] == 'up{namespace="course-a",job="lab-procmon"} == 0'
    spec = spec_with_defaults({"filemon": {"enabled": False}, "procmon": {"enabled": False}})
    names = {r["alert"] for r in alerts.rule_group("lab", "course-a", spec)["rules"]}
    assert names == {a.name for a in alerts.ALERTS if a.component == "backend"}
    # the collector off: no stall alert; another interval: another threshold
    spec = spec_with_defaults({"filemon": {"snapshotGcIntervalSeconds": 0}})
    assert "WatcherSnapshotCollectorStalled" not in {r["alert"] for r in alerts.rule_group("w", "w", spec)["rules"]}
    spec = spec_with_defaults({"filemon": {"snapshotGcIntervalSeconds": 60}})
    stalled = next(r for r in alerts.rule_group("w", "w", spec)["rules"] if r["alert"].endswith("Stalled"))
    assert stalled["expr"].endswith("> 180") and stalled["for"] == "60s"
