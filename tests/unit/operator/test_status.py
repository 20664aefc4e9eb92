"""Pure status logic: conditions per the API conventions, readiness of workloads, the subset check that
keeps unchanged children from being rewritten, and the CLI's argument errors."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from watcher_operator.builders import target_from_resource
from watcher_operator.conditions import get_condition, set_condition
from watcher_operator.reconcile import is_subset
from watcher_operator.status import Problem, compute_status, daemonset_readiness, deployment_readiness

ROOT = Path(__file__).resolve().parents[3]


def target(**spec):
    doc = yaml.safe_load((ROOT / "examples" / "watcherdeployment-minimal.yaml").read_text())
    doc["metadata"].update(uid="u", generation=3)
    doc["spec"].update(spec)
    return target_from_resource(doc)


def dep(ready=1, replicas=1, gen=1, observed=1):
    return {"metadata": {"generation": gen}, "spec": {"replicas": replicas},
            "status": {"observedGeneration": observed, "readyReplicas": ready, "updatedReplicas": replicas}}


def ds(ready=2, desired=2, gen=1, observed=1):
    return {"metadata": {"generation": gen}, "status": {"observedGeneration": observed, "desiredNumberScheduled": desired,
                                                        "numberReady": ready, "updatedNumberScheduled": desired}}


def test_last_transition_time_changes_only_when_status_flips():
    c = set_condition(None, "Ready", False, "Progressing", "0/1", 1, "T1")
    c = set_condition(c, "Ready", False, "Progressing", "still 0/1", 2, "T2")
    ready = get_condition(c, "Ready")
    assert ready["lastTransitionTime"] == "T1" and ready["message"] == "still 0/1" and ready["observedGeneration"] == 2
    c = set_condition(c, "Ready", True, "AllComponentsReady", "ok", 2, "T3")
    assert get_condition(c, "Ready")["lastTransitionTime"] == "T3"
    assert get_condition(c, "Ready")["status"] == "True"


def test_conditions_keep_a_stable_order():
    c = set_condition(None, "Degraded", False, "AsExpected", "", 1, "T")
    c = set_condition(c, "BackendReady", True, "Available", "", 1, "T")
    c = set_condition(c, "Ready", True, "AllComponentsReady", "", 1, "T")
    assert [x["type"] for x in c] == ["Ready", "BackendReady", "Degraded"]


def test_workload_readiness_rules():
    assert deployment_readiness(dep(), 1, "b").ok
    assert deployment_readiness(dep(ready=0), 1, "b").reason == "Progressing"
    assert deployment_readiness(dep(gen=2, observed=1), 1, "b").reason == "RolloutPending"
    assert deployment_readiness(None, 1, "b").reason == "Missing"
    assert daemonset_readiness(ds(), "f").ok
    assert daemonset_readiness(ds(ready=1), "f").reason == "Progressing"
    assert daemonset_readiness(ds(ready=0, desired=0), "f").reason == "NoNodes"  # never "ready" on zero nodes


def test_compute_status_all_ready_then_one_not():
    t = target()
    st = compute_status(t, {"backend": dep(), "filemon": ds(), "procmon": ds()}, [], None, "T1")
    assert (st["backend"], st["filemon"], st["procmon"]) == ("1/1", "2/2", "2/2")
    assert get_condition(st["conditions"], "Ready")["status"] == "True"
    assert get_condition(st["conditions"], "Degraded")["status"] == "False"
    assert st["observedGeneration"] == 3
    assert st["backendURL"] == "http://watcher-backend-service.watcher.svc.cluster.local:3000"
    st2 = compute_status(t, {"backend": dep(), "filemon": ds(), "procmon": ds(ready=1)}, [], st, "T2")
    ready = get_condition(st2["conditions"], "Ready")
    assert ready["status"] == "False" and ready["reason"] == "ProcmonNotReady" and ready["lastTransitionTime"] == "T2"
    assert get_condition(st2["conditions"], "BackendReady")["lastTransitionTime"] == "T1"


def test_blocking_problem_decides_ready_and_degraded():
    st = compute_status(target(), {"backend": dep(), "filemon": ds(), "procmon": ds()},
                        [Problem("CredentialsSecretMissing", "Secret x not found", True),
                         Problem("ShrinkRefused", "cannot shrink")], None, "T")
    ready = get_condition(st["conditions"], "Ready")
    assert ready["status"] == "False" and ready["reason"] == "CredentialsSecretMissing"
    degraded = get_condition(st["conditions"], "Degraded")
    assert degraded["status"] == "True" and "cannot shrink" in degraded["message"]


def test_disabled_components_count_as_ready():
    t = target(filemon={"enabled": False}, procmon={"enabled": False})
    st = compute_status(t, {"backend": dep()}, [], None, "T")
    assert st["filemon"] == "disabled" and get_condition(st["conditions"], "Ready")["status"] == "True"
    assert get_condition(st["conditions"], "FilemonReady")["reason"] == "Disabled"


def test_sqlite_backend_desires_one_replica():
    t = target(backend={"replicas": 3})
    st = compute_status(t, {"backend": dep(ready=1, replicas=1), "filemon": ds(), "procmon": ds()}, [], None, "T")
    assert st["backend"] == "1/1"


def test_is_subset_ignores_server_defaults_but_sees_changes():
    desired = {"spec": {"replicas": 1, "template": {"containers": [{"name": "a", "image": "x:1",
                                                                   "resources": {"limits": {"cpu": "0.5"}}}]}}}
    live = {"metadata": {"resourceVersion": "7"},
            "spec": {"replicas": 1, "progressDeadlineSeconds": 600,
                     "template": {"containers": [{"name": "a", "image": "x:1", "terminationMessagePath": "/dev/x",
                                                  "resources": {"limits": {"cpu": "500m"}}}]}}}
    assert is_subset(desired, live)
    live["spec"]["template"]["containers"][0]["image"] = "x:2"
    assert not is_subset(desired, live)
    assert not is_subset({"a": [1, 2]}, {"a": [1]})
    assert not is_subset({"a": "b"}, {})


def test_cli_help_and_scope_errors():
    watcher = [sys.executable, "-m", "watcher_core.cli"]
    out = subprocess.run([*watcher, "operator", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "--all-namespaces" in out.stdout and "--peering" in out.stdout
    err = subprocess.run([*watcher, "operator"], capture_output=True, text=True, env={"PATH": "/usr/bin"})
    assert err.returncode == 2 and "choose --namespace" in err.stderr and "Traceback" not in err.stderr
    err = subprocess.run([*watcher, "operator", "-n", "x", "--resync-seconds", "0"], capture_output=True, text=True)
    assert err.returncode == 2 and "--resync-seconds" in err.stderr
    err = subprocess.run([*watcher, "operator", "-n", "x", "-A"], capture_output=True, text=True)
    assert err.returncode == 2 and "not allowed with" in err.stderr
