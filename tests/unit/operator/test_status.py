"""Pure status logic: conditions per the API conventions, readiness of workloads, the subset check that
keeps unchanged children from being rewritten, and the CLI's argument errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from watcher_operator.builders import target_from_resource
from watcher_operator.conditions import get_condition, set_condition
from watcher_operator.reconcile import is_subset
from watcher_operator.status import (
    Problem,
    compute_status,
    daemonset_readiness,
    deployment_readiness,
    event_time,
    latest_event,
    pods_missing,
)

ROOT = Path(__file__).resolve().parents[3]


def target(**spec):
    doc = yaml.safe_load((ROOT / "examples" / "watcherdeployment-minimal.yaml").read_text())
    doc["metadata"].update(uid="u", generation=3)
    doc["spec"].update(spec)
    return target_from_resource(doc)


def dep(ready=1, replicas=1, gen=1, observed=1):
    return {
        "metadata": {"generation": gen},
        "spec": {"replicas": replicas},
        "status": {"observedGeneration": observed, "readyReplicas": ready, "updatedReplicas": replicas},
    }


def ds(ready=2, desired=2, gen=1, observed=1):
    return {
        "metadata": {"generation": gen},
        "status": {
            "observedGeneration": observed,
            "desiredNumberScheduled": desired,
            "numberReady": ready,
            "updatedNumberScheduled": desired,
        },
    }


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
    st = compute_status(
        target(),
        {"backend": dep(), "filemon": ds(), "procmon": ds()},
        [Problem("CredentialsSecretMissing", "Secret x not found", True), Problem("ShrinkRefused", "cannot shrink")],
        None,
        "T",
    )
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
    desired = {
        "spec": {
            "replicas": 1,
            "template": {"containers": [{"name": "a", "image": "x:1", "resources": {"limits": {"cpu": "0.5"}}}]},
        }
    }
    live = {
        "metadata": {"resourceVersion": "7"},
        "spec": {
            "replicas": 1,
            "progressDeadlineSeconds": 600,
            "template": {
                "containers": [
                    {
                        "name": "a",
                        "image": "x:1",
                        "terminationMessagePath": "/dev/x",
                        "resources": {"limits": {"cpu": "500m"}},
                    }
                ]
            },
        },
    }
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


# --- pods the controller cannot create (Pod Security Admission, quota): the cause in the conditions -----
# Shapes as the API server returns them; the messages are kube-apiserver's PodSecurity and quota refusals.

PSA_PROCMON = (
    'Error creating: pods "watcher-procmon-x7k2q" is forbidden: violates PodSecurity "baseline:latest": '
    'host namespaces (hostPID=true), hostPath volumes (volumes "modules", "usr-src", "tracefs", "debugfs", '
    '"state"), non-default capabilities (container "procmon" must not include "BPF", "NET_ADMIN", '
    '"PERFMON", "SYS_PTRACE", "SYS_RESOURCE" in securityContext.capabilities.add), seccompProfile (pod '
    'must not set securityContext.seccompProfile.type to "Unconfined")'
)
QUOTA_FILEMON = (
    'Error creating: pods "watcher-filemon-abcde" is forbidden: exceeded quota: pods, requested: pods=1, '
    "used: pods=10, limited: pods=10"
)
LABEL = "kubectl label namespace watcher pod-security.kubernetes.io/enforce=privileged"


def stuck_ds(name="watcher-procmon", desired=3, current=0, old_controller=False):
    """A DaemonSet none of whose pods could be created. Controllers before Kubernetes 1.26/1.27 did not
    update the status at all then (kubernetes#100683): zeros and no observedGeneration."""
    meta = {"name": name, "namespace": "watcher", "uid": f"uid-{name}", "generation": 1}
    if old_controller:
        return {
            "metadata": meta,
            "status": {
                "currentNumberScheduled": 0,
                "desiredNumberScheduled": 0,
                "numberMisscheduled": 0,
                "numberReady": 0,
            },
        }
    return {
        "metadata": meta,
        "status": {
            "currentNumberScheduled": current,
            "desiredNumberScheduled": desired,
            "numberMisscheduled": 0,
            "numberReady": current,
            "numberUnavailable": desired - current,
            "observedGeneration": 1,
            "updatedNumberScheduled": current,
        },
    }


def failed_create(
    message=PSA_PROCMON, last="2026-03-02T09:12:00Z", name="watcher-procmon", first="2026-03-02T07:58:00Z"
):
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{name}.17c9e0a1b2c3d4e5", "namespace": "watcher", "creationTimestamp": first},
        "involvedObject": {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "name": name,
            "namespace": "watcher",
            "uid": f"uid-{name}",
            "resourceVersion": "812",
        },
        "reason": "FailedCreate",
        "type": "Warning",
        "count": 14,
        "message": message,
        "source": {"component": "daemonset-controller"},
        "reportingComponent": "daemonset-controller",
        "firstTimestamp": first,
        "lastTimestamp": last,
        "eventTime": None,
    }


NOW = "2026-03-02T09:13:00Z"


def test_pod_security_refusal_is_named_in_procmon_and_ready_with_the_namespace_label():
    st = compute_status(
        target(),
        {"backend": dep(), "filemon": ds(), "procmon": stuck_ds()},
        [],
        None,
        NOW,
        {"procmon": failed_create()},
    )
    procmon = get_condition(st["conditions"], "ProcmonReady")
    assert procmon["status"] == "False" and procmon["reason"] == "FailedCreate"
    assert 'violates PodSecurity "baseline:latest": host namespaces (hostPID=true)' in procmon["message"]
    assert procmon["message"].endswith(LABEL)
    ready = get_condition(st["conditions"], "Ready")
    assert ready["status"] == "False" and ready["reason"] == "ProcmonNotReady"
    assert ready["message"].startswith(
        "procmon: DaemonSet watcher-procmon cannot create its pods: Error creating: "
        'pods "watcher-procmon-x7k2q" is forbidden: violates PodSecurity'
    )
    assert LABEL in ready["message"]
    assert st["procmon"] == "0/3"


def test_an_old_controller_that_left_the_status_at_zero_still_gets_the_cause():
    old = stuck_ds(old_controller=True)
    # without the event this looks like a pending rollout: the event must win
    assert daemonset_readiness(old, "watcher-procmon").reason == "RolloutPending"
    r = daemonset_readiness(old, "watcher-procmon", failed_create(), namespace="watcher", now=NOW)
    assert r.reason == "FailedCreate" and "hostPID=true" in r.message and LABEL in r.message


def test_other_refusals_are_named_without_the_pod_security_hint():
    st = compute_status(
        target(),
        {"backend": dep(), "filemon": stuck_ds("watcher-filemon", 3, 1), "procmon": ds()},
        [],
        None,
        NOW,
        {"filemon": failed_create(QUOTA_FILEMON, name="watcher-filemon")},
    )
    filemon = get_condition(st["conditions"], "FilemonReady")
    assert filemon["reason"] == "FailedCreate" and "exceeded quota: pods" in filemon["message"]
    assert "pod-security" not in filemon["message"]


def test_the_recorders_aggregation_prefix_is_dropped():
    event = failed_create("(combined from similar events): " + PSA_PROCMON)
    r = daemonset_readiness(stuck_ds(), "watcher-procmon", event, namespace="watcher", now=NOW)
    assert "combined" not in r.message and "Error creating: pods" in r.message


def test_a_stale_event_or_a_daemonset_with_all_its_pods_is_not_a_failure():
    stale = failed_create(last="2026-03-02T08:00:00Z")  # 73 min before NOW: fixed since, or long gone
    assert daemonset_readiness(stuck_ds(), "p", stale, namespace="watcher", now=NOW).reason == "Progressing"
    healthy = stuck_ds(current=3)
    healthy["status"]["numberReady"] = 3
    assert daemonset_readiness(healthy, "p", failed_create(), namespace="watcher", now=NOW).ok


def test_no_pod_at_all_for_five_minutes_is_reported_even_without_an_event():
    t = target()
    workloads = {"backend": dep(), "filemon": ds(), "procmon": stuck_ds()}
    first = compute_status(t, workloads, [], None, "2026-03-02T09:00:00Z")
    assert get_condition(first["conditions"], "ProcmonReady")["reason"] == "Progressing"
    soon = compute_status(t, workloads, [], first, "2026-03-02T09:02:00Z")
    assert get_condition(soon["conditions"], "ProcmonReady")["reason"] == "Progressing"
    later = compute_status(t, workloads, [], soon, "2026-03-02T09:06:00Z")
    procmon = get_condition(later["conditions"], "ProcmonReady")
    assert procmon["reason"] == "FailedCreate" and "no pod on any of its 3 nodes after 6 min" in procmon["message"]
    assert "kubectl -n watcher describe daemonset watcher-procmon" in procmon["message"] and LABEL in procmon["message"]
    assert procmon["lastTransitionTime"] == "2026-03-02T09:00:00Z"  # still the same False since the start


def test_backend_replica_failure_condition_is_named():
    refused = (
        'pods "watcher-backend-7c9d8f6b5-abcde" is forbidden: violates PodSecurity "restricted:latest": '
        'seccompProfile (pod or container "backend" must set securityContext.seccompProfile.type to '
        '"RuntimeDefault" or "Localhost")'
    )
    backend = {
        "metadata": {"generation": 1},
        "spec": {"replicas": 1},
        "status": {
            "observedGeneration": 1,
            "unavailableReplicas": 1,
            "conditions": [
                {
                    "type": "Available",
                    "status": "False",
                    "reason": "MinimumReplicasUnavailable",
                    "message": "Deployment does not have minimum availability.",
                },
                {"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate", "message": refused},
                {
                    "type": "Progressing",
                    "status": "True",
                    "reason": "ReplicaSetUpdated",
                    "message": 'ReplicaSet "watcher-backend-7c9d8f6b5" is progressing.',
                },
            ],
        },
    }
    st = compute_status(target(), {"backend": backend, "filemon": ds(), "procmon": ds()}, [], None, NOW)
    b = get_condition(st["conditions"], "BackendReady")
    assert b["reason"] == "FailedCreate" and refused in b["message"] and LABEL in b["message"]
    assert deployment_readiness(dep(), 1, "b", "watcher").ok  # no ReplicaFailure: as before


def test_latest_event_reads_either_event_shape():
    core = failed_create(last="2026-03-02T09:12:00Z")
    newer = dict(
        failed_create(message="newest"),
        lastTimestamp=None,
        eventTime="2026-03-02T09:12:30.123456Z",
        series={"count": 3, "lastObservedTime": "2026-03-02T09:12:59.000001Z"},
    )
    assert latest_event([core, newer])["message"] == "newest"
    assert latest_event([newer, core])["message"] == "newest"
    assert latest_event([]) is None
    assert event_time(newer) == "2026-03-02T09:12:59.000001Z"


def test_pods_missing_decides_when_events_are_read():
    assert pods_missing(stuck_ds()) and pods_missing(stuck_ds(old_controller=True))
    assert not pods_missing(stuck_ds(current=3)) and not pods_missing(None)


class FakeKube:
    """The few verbs status refresh uses, over a dict of live objects; records every list and status patch."""

    def __init__(self, objects: dict, events: list[dict]):
        self.objects, self.events, self.lists, self.patches = objects, events, [], []

    def get(self, api_version, kind, namespace, name):
        return self.objects.get((kind, name))

    def list_objects(self, api_version, kind, namespace, *, field_selector=None):
        self.lists.append((api_version, kind, namespace, field_selector))
        return list(self.events)

    def merge_patch(self, api_version, kind, namespace, name, patch, subresource=None):
        self.patches.append((subresource, patch))
        return {}


def _resource():
    doc = yaml.safe_load((ROOT / "examples" / "watcherdeployment-minimal.yaml").read_text())
    doc["metadata"].update(uid="wd-uid", generation=1)
    return doc


def test_reconciler_reads_the_failed_create_events_of_a_daemonset_without_pods_only():
    from watcher_operator.reconcile import Reconciler

    healthy_filemon = stuck_ds("watcher-filemon", current=3)
    kube = FakeKube(
        {
            ("WatcherDeployment", "watcher"): _resource(),
            ("Deployment", "watcher-backend"): dep(),
            ("DaemonSet", "watcher-filemon"): healthy_filemon,
            ("DaemonSet", "watcher-procmon"): stuck_ds(),
        },
        [failed_create()],
    )
    out = Reconciler(kube, now=lambda: NOW).refresh_status("watcher", "watcher")
    # procmon only (filemon has its pods), by uid so a deleted namesake's events do not count
    assert kube.lists == [("v1", "Event", "watcher", "involvedObject.uid=uid-watcher-procmon,reason=FailedCreate")]
    assert get_condition(out.status["conditions"], "ProcmonReady")["reason"] == "FailedCreate"
    [(subresource, patch)] = kube.patches
    assert subresource == "status" and LABEL in get_condition(patch["status"]["conditions"], "Ready")["message"]


def test_reconciler_without_permission_to_list_events_still_writes_status():
    from watcher_operator.kubeapi import ApiError
    from watcher_operator.reconcile import Reconciler

    class Forbidden(FakeKube):
        def list_objects(self, *args, **kwargs):
            raise ApiError(
                403,
                "Forbidden",
                'events is forbidden: User "system:serviceaccount:watcher:op" cannot list resource "events"',
            )

    kube = Forbidden(
        {
            ("WatcherDeployment", "watcher"): _resource(),
            ("Deployment", "watcher-backend"): dep(),
            ("DaemonSet", "watcher-filemon"): ds(),
            ("DaemonSet", "watcher-procmon"): stuck_ds(),
        },
        [],
    )
    out = Reconciler(kube, now=lambda: NOW).refresh_status("watcher", "watcher")
    assert get_condition(out.status["conditions"], "ProcmonReady")["reason"] == "Progressing"


def test_a_status_refresh_reads_the_resource_only_after_a_running_reconcile_has_finished():
    """A refresh that read the status before a reconcile put the agents on hold, and wrote after it,
    replaced Progressing=AgentsWaitForBackend by RollingOut (a fresh-clone CI run caught it on the
    real API server). The refresh must read under the same lock the reconcile holds."""
    import threading

    from watcher_operator.reconcile import Reconciler

    class Recording(FakeKube):
        def __init__(self, *args):
            super().__init__(*args)
            self.reads = threading.Event()

        def get(self, api_version, kind, namespace, name):
            if kind == "WatcherDeployment":
                self.reads.set()
            return super().get(api_version, kind, namespace, name)

    kube = Recording(
        {
            ("WatcherDeployment", "watcher"): _resource(),
            ("Deployment", "watcher-backend"): dep(),
            ("DaemonSet", "watcher-filemon"): ds(),
            ("DaemonSet", "watcher-procmon"): ds(),
        },
        [],
    )
    reconciler = Reconciler(kube, now=lambda: NOW)
    running_reconcile = reconciler._lock("watcher", "watcher")  # as a reconcile in another handler holds it
    with running_reconcile:
        refresh = threading.Thread(target=reconciler.refresh_status, args=("watcher", "watcher"))
        refresh.start()
        assert not kube.reads.wait(0.5), "the refresh read the resource while a reconcile was running"
    refresh.join(10)
    assert kube.reads.is_set() and not refresh.is_alive() and len(kube.patches) == 1
