"""The operator against a real kube-apiserver 1.20 + garbage collector: `watcher operator` runs as a
subprocess, the tests act like a platform operator with kubectl and read the results back.

There are no nodes: workload readiness is simulated by patching the status subresource, as the
deployment/daemonset controllers would."""

from __future__ import annotations

import base64
import copy
import json
import time
import warnings

import httpx
import pytest
import yaml

from watcher_core import __version__
from watcher_operator.builders import Inputs, build_children
from watcher_operator.kubeapi import Kube, load_config
from watcher_operator.reconcile import is_subset

from .conftest import ROOT, wait_for

warnings.filterwarnings("ignore", message="Unverified HTTPS request")

INVALID = yaml.safe_load((ROOT / "tests" / "unit" / "operator" / "golden" / "invalid-specs.yaml").read_text())
WD = ("watcher.jcode.io/v1alpha1", "WatcherDeployment")


def minimal(namespace: str, **spec_over) -> dict:
    doc = yaml.safe_load((ROOT / "examples" / "watcherdeployment-minimal.yaml").read_text())
    doc["metadata"]["namespace"] = namespace
    doc["spec"].update(spec_over)
    return doc


@pytest.fixture
def kube(cluster) -> Kube:
    return Kube(load_config(cluster.kubeconfig))


def apply(cluster, doc: dict, *extra: str, check: bool = True):
    return cluster.kubectl("apply", "-f", "-", *extra, input=json.dumps(doc), check=check)


def prepare(cluster, ns: str) -> None:
    """What the guide's step 1 and 3 leave behind: credentials and the workspace claim."""
    cluster.kubectl(
        "-n",
        ns,
        "create",
        "secret",
        "generic",
        "harbor-credentials",
        "--from-literal=username=robot$watcher",
        "--from-literal=password=s3cret",
    )
    apply(
        cluster,
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "jcode-vol-pvc", "namespace": ns},
            "spec": {
                "accessModes": ["ReadWriteMany"],
                "storageClassName": "longhorn",
                "resources": {"requests": {"storage": "10Gi"}},
            },
        },
    )


def condition(kube: Kube, ns: str, type_: str, name: str = "watcher") -> dict | None:
    wd = kube.get(*WD, ns, name) or {}
    for c in (wd.get("status") or {}).get("conditions") or []:
        if c["type"] == type_:
            return c
    return None


def children_ready(kube: Kube, ns: str) -> bool:
    return all(
        kube.get(av, k, ns, n)
        for av, k, n in [
            ("apps/v1", "Deployment", "watcher-backend"),
            ("apps/v1", "DaemonSet", "watcher-filemon"),
            ("apps/v1", "DaemonSet", "watcher-procmon"),
            ("v1", "Service", "watcher-backend-service"),
            ("networking.k8s.io/v1", "NetworkPolicy", "watcher-backend"),
            ("networking.k8s.io/v1", "NetworkPolicy", "watcher-agents"),
        ]
    )


def mark_ready(
    kube: Kube, ns: str, *, backend: bool = True, filemon: bool = True, procmon: bool = True, nodes: int = 2
) -> None:
    """Do what the workload controllers and kubelets would: report pods ready."""
    dep = kube.get("apps/v1", "Deployment", ns, "watcher-backend")
    n = dep["spec"]["replicas"] if backend else 0
    kube.merge_patch(
        "apps/v1",
        "Deployment",
        ns,
        "watcher-backend",
        {
            "status": {
                "observedGeneration": dep["metadata"]["generation"],
                "replicas": dep["spec"]["replicas"],
                "readyReplicas": n,
                "updatedReplicas": dep["spec"]["replicas"],
                "availableReplicas": n,
            }
        },
        subresource="status",
    )
    for name, ok in (("watcher-filemon", filemon), ("watcher-procmon", procmon)):
        ds = kube.get("apps/v1", "DaemonSet", ns, name)
        if ds is None:
            continue
        kube.merge_patch(
            "apps/v1",
            "DaemonSet",
            ns,
            name,
            {
                "status": {
                    "observedGeneration": ds["metadata"]["generation"],
                    "desiredNumberScheduled": nodes,
                    "currentNumberScheduled": nodes,
                    "numberMisscheduled": 0,
                    "updatedNumberScheduled": nodes,
                    "numberReady": nodes if ok else nodes - 1,
                    "numberAvailable": nodes if ok else nodes - 1,
                }
            },
            subresource="status",
        )


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def test_crd_accepts_the_examples_and_rejects_invalid_specs(cluster, namespace, kube):
    for example in ("watcherdeployment.yaml", "watcherdeployment-minimal.yaml"):
        doc = yaml.safe_load((ROOT / "examples" / example).read_text())
        doc["metadata"]["namespace"] = namespace
        doc["metadata"]["name"] = example.split(".")[0]
        apply(cluster, doc)
    stored = kube.get(*WD, namespace, "watcherdeployment-minimal")
    # the API server filled the defaults from the schema
    assert stored["spec"]["backend"]["storage"] == {"size": "10Gi", "accessMode": "ReadWriteOnce"}
    assert stored["spec"]["filemon"]["storage"]["size"] == "30Gi"
    assert stored["spec"]["image"]["registry"] == "harbor.jbnu.ac.kr/jdevops"
    assert stored["spec"]["procmon"]["mode"] == "auto"
    # privacy: the snapshot collector's defaults are filled in, retention stays unset (keep everything)
    assert stored["spec"]["filemon"]["snapshotGcIntervalSeconds"] == 600
    assert stored["spec"]["filemon"]["snapshotGcGraceSeconds"] == 86400
    assert "retentionDays" not in stored["spec"]["backend"]
    base = minimal(namespace)
    for case in INVALID:
        doc = copy.deepcopy(base)
        doc["spec"] = _merge(doc["spec"], case["spec"])
        doc["metadata"]["name"] = "invalid"
        # --validate=false: the API server itself must refuse it, not kubectl's client-side check
        proc = apply(cluster, doc, "--validate=false", check=False)
        assert proc.returncode != 0, case["why"]
        assert "is invalid" in proc.stderr or "Invalid value" in proc.stderr or "Required value" in proc.stderr, (
            case["why"],
            proc.stderr,
        )
    long_name = minimal(namespace)
    long_name["metadata"]["name"] = "a" * 48
    assert apply(cluster, long_name, "--validate=false", check=False).returncode != 0


def test_operator_creates_every_child_and_a_noop_resync_rewrites_nothing(cluster, namespace, kube, run_operator):
    prepare(cluster, namespace)
    op = run_operator(namespace, "--standalone")
    apply(cluster, minimal(namespace))
    wait_for(lambda: children_ready(kube, namespace), 60, "children")
    wd = kube.get(*WD, namespace, "watcher")
    tokens_secret = wait_for(lambda: kube.get("v1", "Secret", namespace, "watcher-tokens"), 30, "tokens")
    tokens = {k.split("-")[0]: base64.b64decode(v).decode() for k, v in tokens_secret["data"].items()}
    assert all(len(v) >= 32 for v in tokens.values())
    desired = build_children(wd, Inputs(registry_username="robot$watcher", registry_password="s3cret", tokens=tokens))
    assert len(desired) == 13  # with the dashboard ConfigMap and both NetworkPolicies (no ServiceMonitor CRD here)
    for obj in desired:
        live = wait_for(
            lambda: kube.get(obj["apiVersion"], obj["kind"], namespace, obj["metadata"]["name"]),
            30,
            f"{obj['kind']} {obj['metadata']['name']}",
        )
        assert is_subset(obj, live), f"{obj['kind']} {obj['metadata']['name']} differs from the builder"
    # managed by server-side apply under our field manager
    dep = kube.get("apps/v1", "Deployment", namespace, "watcher-backend")
    managers = {(m["manager"], m["operation"]) for m in dep["metadata"]["managedFields"]}
    assert ("watcher-operator", "Apply") in managers
    # data claims carry no owner reference; everything else is owned
    assert (
        "ownerReferences" not in kube.get("v1", "PersistentVolumeClaim", namespace, "watcher-backend-pvc")["metadata"]
    )
    # status and events
    wait_for(lambda: condition(kube, namespace, "BackendReady"), 30, "conditions")
    status = kube.get(*WD, namespace, "watcher")["status"]
    assert status["observedGeneration"] == wd["metadata"]["generation"]
    # kopf's finalizer only (it stops the resync timer on deletion); the operator adds none of its own
    assert kube.get(*WD, namespace, "watcher")["metadata"].get("finalizers") == ["kopf.zalando.org/KopfFinalizerMarker"]
    assert status["backendURL"] == f"http://watcher-backend-service.{namespace}.svc.cluster.local:3000"
    events = cluster.kubectl("-n", namespace, "get", "events", "-o", "json").stdout
    assert "created Deployment watcher-backend" in events
    # no-op: several resyncs (every 3 s) later nothing was rewritten and the tokens were kept
    versions = {
        (o["kind"], o["metadata"]["name"]): kube.get(o["apiVersion"], o["kind"], namespace, o["metadata"]["name"])[
            "metadata"
        ]["resourceVersion"]
        for o in desired
    }
    wd_version = kube.get(*WD, namespace, "watcher")["metadata"]["resourceVersion"]
    time.sleep(8)
    assert op.output().count("Timer 'resync' succeeded") >= 2
    after = {
        (o["kind"], o["metadata"]["name"]): kube.get(o["apiVersion"], o["kind"], namespace, o["metadata"]["name"])[
            "metadata"
        ]["resourceVersion"]
        for o in desired
    }
    assert after == versions
    assert kube.get(*WD, namespace, "watcher")["metadata"]["resourceVersion"] == wd_version
    assert "Traceback" not in op.output()
    # the operator's metrics port: every resync counted and timed, the last success stamped
    metrics = operator_metrics(op)
    assert metrics["watcher_operator_reconciles_total", (("result", "ok"),)] >= 3
    assert metrics["watcher_operator_reconciles_total", (("result", "error"),)] == 0
    assert metrics["watcher_operator_reconcile_duration_seconds_count", ()] >= 3
    stamp = metrics["watcher_operator_last_success_timestamp_seconds", (("name", "watcher"), ("namespace", namespace))]
    assert time.time() - 15 < stamp <= time.time()
    assert metrics["watcher_build_info", (("component", "operator"), ("version", __version__))] == 1
    assert metrics["process_start_time_seconds", ()] > 0
    assert not any(name.endswith("_created") for name, _ in metrics)


def operator_metrics(op) -> dict[tuple[str, tuple], float]:
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(op.metrics_url, timeout=5).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_update_drift_repair_and_garbage_collection(cluster, namespace, kube, run_operator):
    prepare(cluster, namespace)
    op = run_operator(namespace, "--standalone")
    apply(cluster, minimal(namespace))
    wait_for(lambda: children_ready(kube, namespace), 60, "children")

    # update: new tag, filemon disabled -> image rolled, filemon DaemonSet and Service removed, claim kept
    doc = minimal(namespace)
    doc["spec"]["image"]["tag"] = "1.1.0"
    doc["spec"]["filemon"] = {"enabled": False}
    apply(cluster, doc)
    wait_for(
        lambda: kube.get("apps/v1", "Deployment", namespace, "watcher-backend")["spec"]["template"]["spec"][
            "containers"
        ][0]["image"].endswith("watcher-backend:1.1.0"),
        30,
        "new backend image",
    )
    wait_for(lambda: kube.get("apps/v1", "DaemonSet", namespace, "watcher-filemon") is None, 30, "filemon removed")
    wait_for(lambda: kube.get("v1", "Service", namespace, "watcher-filemon") is None, 30, "filemon svc removed")
    assert kube.get("v1", "PersistentVolumeClaim", namespace, "watcher-filemon-storage-pvc") is not None
    # procmon follows once the backend has rolled out (the rollout order: backend first)
    mark_ready(kube, namespace)
    wait_for(
        lambda: kube.get("apps/v1", "DaemonSet", namespace, "watcher-procmon")["spec"]["template"]["spec"][
            "containers"
        ][0]["image"].endswith("watcher-procmon:1.1.0"),
        30,
        "procmon upgraded after the backend",
    )
    wait_for(lambda: (condition(kube, namespace, "FilemonReady") or {}).get("reason") == "Disabled", 30)
    assert cluster.kubectl("-n", namespace, "get", "wd", "watcher", "--no-headers").stdout.split()[3] == "disabled"

    # drift: a Deployment deleted by hand comes back; a hand edit of an owned field is reverted
    old_uid = kube.get("apps/v1", "Deployment", namespace, "watcher-backend")["metadata"]["uid"]
    cluster.kubectl("-n", namespace, "delete", "deployment", "watcher-backend")
    wait_for(
        lambda: (
            (kube.get("apps/v1", "Deployment", namespace, "watcher-backend") or {}).get("metadata", {}).get("uid")
            not in (None, old_uid)
        ),
        30,
        "backend recreated",
    )
    cluster.kubectl("-n", namespace, "set", "image", "daemonset/watcher-procmon", "procmon=evil/procmon:hacked")
    wait_for(
        lambda: kube.get("apps/v1", "DaemonSet", namespace, "watcher-procmon")["spec"]["template"]["spec"][
            "containers"
        ][0]["image"].endswith("watcher-procmon:1.1.0"),
        30,
        "procmon image restored",
    )
    cluster.kubectl("-n", namespace, "delete", "secret", "watcher-harbor-registry-secret")
    wait_for(lambda: kube.get("v1", "Secret", namespace, "watcher-harbor-registry-secret"), 30, "pull secret back")

    # delete: the garbage collector removes every owned child; the data claims stay
    cluster.kubectl("-n", namespace, "delete", "watcherdeployment", "watcher")
    for av, kind, name in [
        ("apps/v1", "Deployment", "watcher-backend"),
        ("apps/v1", "DaemonSet", "watcher-procmon"),
        ("v1", "Service", "watcher-backend-service"),
        ("v1", "Secret", "watcher-tokens"),
        ("v1", "Secret", "watcher-harbor-registry-secret"),
        ("networking.k8s.io/v1", "NetworkPolicy", "watcher-backend"),
        ("networking.k8s.io/v1", "NetworkPolicy", "watcher-agents"),
    ]:
        wait_for(lambda: kube.get(av, kind, namespace, name) is None, 60, f"GC of {kind} {name}")
    for claim in ("watcher-backend-pvc", "watcher-filemon-storage-pvc", "jcode-vol-pvc"):
        pvc = kube.get("v1", "PersistentVolumeClaim", namespace, claim)
        assert pvc is not None and not pvc["metadata"].get("deletionTimestamp"), claim
    assert "Traceback" not in op.output()


def _image(kube: Kube, ns: str, kind: str, name: str) -> str:
    return kube.get("apps/v1", kind, ns, name)["spec"]["template"]["spec"]["containers"][0]["image"]


def test_an_upgrade_rolls_out_the_backend_before_the_agents(cluster, namespace, kube, run_operator):
    prepare(cluster, namespace)
    op = run_operator(namespace, "--standalone")
    apply(cluster, minimal(namespace))
    wait_for(lambda: children_ready(kube, namespace), 60, "children")
    mark_ready(kube, namespace)
    wait_for(lambda: (condition(kube, namespace, "Ready") or {}).get("status") == "True", 30, "Ready")
    old_tag = _image(kube, namespace, "DaemonSet", "watcher-filemon").rsplit(":", 1)[1]

    doc = minimal(namespace)
    doc["spec"]["image"]["tag"] = "9.9.9"
    apply(cluster, doc)
    wait_for(lambda: _image(kube, namespace, "Deployment", "watcher-backend").endswith(":9.9.9"), 30, "backend first")
    wait_for(
        lambda: (condition(kube, namespace, "Progressing") or {}).get("reason") == "AgentsWaitForBackend",
        30,
        "Progressing=AgentsWaitForBackend",
    )
    progressing = condition(kube, namespace, "Progressing")
    assert progressing["status"] == "True" and f"filemon at {old_tag}" in progressing["message"]
    # the backend's new pods are not available yet: the agents stay at the old version, resyncs included
    time.sleep(3)
    for ds in ("watcher-filemon", "watcher-procmon"):
        assert _image(kube, namespace, "DaemonSet", ds).endswith(f":{old_tag}"), ds
    # half-way: one replica updated, the old pod still there (a surge) -> still held
    dep = kube.get("apps/v1", "Deployment", namespace, "watcher-backend")
    kube.merge_patch(
        "apps/v1",
        "Deployment",
        namespace,
        "watcher-backend",
        {
            "status": {
                "observedGeneration": dep["metadata"]["generation"],
                "replicas": 2,
                "updatedReplicas": 1,
                "readyReplicas": 2,
                "availableReplicas": 2,
            }
        },
        subresource="status",
    )
    time.sleep(2)
    assert _image(kube, namespace, "DaemonSet", "watcher-filemon").endswith(f":{old_tag}")
    # rolled out: the backend's status event releases the agents at once
    mark_ready(kube, namespace)
    for ds in ("watcher-filemon", "watcher-procmon"):
        wait_for(lambda: _image(kube, namespace, "DaemonSet", ds).endswith(":9.9.9"), 30, f"{ds} released")
    mark_ready(kube, namespace)
    wait_for(
        lambda: (condition(kube, namespace, "Progressing") or {}).get("reason") == "RolloutComplete",
        30,
        "Progressing=False",
    )
    assert condition(kube, namespace, "Degraded")["status"] == "False"
    assert "Traceback" not in op.output()


def test_node_scope_grants_filemon_pod_reads_in_the_students_namespace_and_takes_them_back(
    cluster, namespace, kube, run_operator
):
    prepare(cluster, namespace)
    students = f"{namespace}-students"
    cluster.kubectl("create", "namespace", students)
    try:
        op = run_operator(namespace, "--standalone")
        spec = {"scope": "node", "studentPods": {"namespace": students, "labels": {"role": "student"}}}
        apply(cluster, minimal(namespace, filemon=spec))
        rbac = "rbac.authorization.k8s.io/v1"
        wait_for(lambda: kube.get(rbac, "RoleBinding", students, "watcher-filemon-pods"), 60, "RoleBinding")
        role = kube.get(rbac, "Role", students, "watcher-filemon-pods")
        assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]
        account = f"system:serviceaccount:{namespace}:watcher-filemon"
        assert kube.get("v1", "ServiceAccount", namespace, "watcher-filemon") is not None
        can = cluster.kubectl("auth", "can-i", "watch", "pods", "-n", students, f"--as={account}", check=False)
        assert can.stdout.strip() == "yes"
        elsewhere = cluster.kubectl("auth", "can-i", "list", "pods", "-n", namespace, f"--as={account}", check=False)
        assert elsewhere.stdout.strip() == "no"
        ds = kube.get("apps/v1", "DaemonSet", namespace, "watcher-filemon")["spec"]["template"]["spec"]
        assert ds["serviceAccountName"] == "watcher-filemon"
        env = {e["name"]: e.get("value") for e in ds["containers"][0]["env"]}
        assert env["WATCHER_POD_NAMESPACE"] == students and env["WATCHER_POD_SELECTOR"] == "role=student"
        # a Role deleted by hand comes back
        cluster.kubectl("-n", students, "delete", "role", "watcher-filemon-pods")
        wait_for(lambda: kube.get(rbac, "Role", students, "watcher-filemon-pods"), 60, "Role repaired")
        # back to the whole volume: the grant is taken back (pruned by labels: no owner reference there)
        apply(cluster, minimal(namespace, filemon={"scope": "volume", "studentPods": {"namespace": students}}))
        for kind in ("Role", "RoleBinding"):
            wait_for(lambda: kube.get(rbac, kind, students, "watcher-filemon-pods") is None, 60, f"{kind} pruned")
        wait_for(lambda: kube.get("v1", "ServiceAccount", namespace, "watcher-filemon") is None, 60, "SA pruned")
        ds = kube.get("apps/v1", "DaemonSet", namespace, "watcher-filemon")["spec"]["template"]["spec"]
        assert ds.get("automountServiceAccountToken") is False
        # no pod may name the deleted account (its pods could not be created)
        assert ds.get("serviceAccountName", "default") == "default", ds.get("serviceAccountName")
        assert ds.get("serviceAccount", "default") == "default", ds.get("serviceAccount")
        assert "Traceback" not in op.output()
    finally:
        cluster.kubectl("delete", "namespace", students, "--wait=false", check=False)


def test_delete_claims_on_delete_removes_data_claims(cluster, namespace, kube, run_operator):
    prepare(cluster, namespace)
    run_operator(namespace, "--standalone")
    apply(
        cluster,
        minimal(
            namespace, deleteClaimsOnDelete=True, workspace={"create": True, "claimName": "ws-created", "size": "20Gi"}
        ),
    )
    wait_for(lambda: children_ready(kube, namespace), 60, "children")
    pvc = kube.get("v1", "PersistentVolumeClaim", namespace, "watcher-backend-pvc")
    assert pvc["metadata"]["ownerReferences"][0]["kind"] == "WatcherDeployment"
    ws = wait_for(lambda: kube.get("v1", "PersistentVolumeClaim", namespace, "ws-created"), 30, "workspace claim")
    assert ws["spec"]["accessModes"] == ["ReadWriteMany"] and ws["spec"]["resources"]["requests"]["storage"] == "20Gi"
    ds = kube.get("apps/v1", "DaemonSet", namespace, "watcher-filemon")
    vols = {v["name"]: v for v in ds["spec"]["template"]["spec"]["volumes"]}
    assert vols["workspace"]["persistentVolumeClaim"]["claimName"] == "ws-created"
    cluster.kubectl("-n", namespace, "delete", "watcherdeployment", "watcher")
    for claim in ("watcher-backend-pvc", "watcher-filemon-storage-pvc", "ws-created"):
        wait_for(lambda: kube.get("v1", "PersistentVolumeClaim", namespace, claim) is None, 60, f"{claim} deleted")
    # a claim the operator did not create is never touched
    assert kube.get("v1", "PersistentVolumeClaim", namespace, "jcode-vol-pvc") is not None


def test_status_follows_the_workloads_and_kubectl_wait_works(cluster, namespace, kube, run_operator):
    prepare(cluster, namespace)
    run_operator(namespace, "--standalone")
    apply(cluster, minimal(namespace))
    wait_for(lambda: children_ready(kube, namespace), 60, "children")
    wait_for(lambda: (condition(kube, namespace, "Ready") or {}).get("status") == "False", 30, "Ready=False")
    mark_ready(kube, namespace)
    cluster.kubectl("-n", namespace, "wait", "--for=condition=Ready", "--timeout=60s", "watcherdeployment/watcher")
    table = cluster.kubectl("-n", namespace, "get", "watcherdeployments").stdout.splitlines()
    assert table[0].split() == ["NAME", "READY", "BACKEND", "FILEMON", "PROCMON", "AGE"]
    assert table[1].split()[:5] == ["watcher", "True", "1/1", "2/2", "2/2"]
    # the short name works too
    assert cluster.kubectl("-n", namespace, "get", "wd").stdout.splitlines()[1].split()[:2] == ["watcher", "True"]
    backend_since = condition(kube, namespace, "BackendReady")["lastTransitionTime"]
    ready = condition(kube, namespace, "Ready")
    assert ready["reason"] == "AllComponentsReady" and ready["observedGeneration"] >= 1
    status = kube.get(*WD, namespace, "watcher")["status"]
    assert status["components"]["filemon"] == {"ready": 2, "desired": 2, "enabled": True}

    time.sleep(1.1)  # so a rewritten timestamp would differ
    mark_ready(kube, namespace, procmon=False)
    wait_for(lambda: (condition(kube, namespace, "ProcmonReady") or {}).get("status") == "False", 30)
    ready = condition(kube, namespace, "Ready")
    assert ready["status"] == "False" and ready["reason"] == "ProcmonNotReady"
    assert "1/2 nodes ready" in ready["message"]
    # BackendReady did not flip: its lastTransitionTime is unchanged
    assert condition(kube, namespace, "BackendReady")["lastTransitionTime"] == backend_since
    assert cluster.kubectl("-n", namespace, "get", "wd", "watcher", "--no-headers").stdout.split()[4] == "1/2"


def test_unsatisfiable_specs_give_conditions_and_retries_not_tracebacks(cluster, namespace, kube, run_operator):
    op = run_operator(namespace, "--standalone")
    # no credentials Secret yet, and an unknown storage class for the snapshots
    apply(cluster, minimal(namespace, filemon={"storage": {"storageClassName": "no-such-class"}}))
    wait_for(
        lambda: (condition(kube, namespace, "Ready") or {}).get("reason") == "CredentialsSecretMissing",
        30,
        "CredentialsSecretMissing",
    )
    degraded = condition(kube, namespace, "Degraded")
    assert degraded["status"] == "True"
    assert "harbor-credentials" in degraded["message"] and "no-such-class" in degraded["message"]
    assert kube.get("apps/v1", "Deployment", namespace, "watcher-backend") is None
    # fix one thing at a time: the retry picks it up without any edit of the resource
    prepare(cluster, namespace)
    wait_for(lambda: (condition(kube, namespace, "Ready") or {}).get("reason") == "StorageClassNotFound", 30)
    doc = minimal(namespace)
    apply(cluster, doc)
    wait_for(lambda: children_ready(kube, namespace), 60, "children after the fix")
    events = cluster.kubectl("-n", namespace, "get", "events", "-o", "json").stdout
    assert "CredentialsSecretMissing" in events and "StorageClassNotFound" in events
    assert "Traceback" not in op.output()
    # the blocked reconciles are counted as such, and the fixed resource has a last success
    metrics = operator_metrics(op)
    assert metrics["watcher_operator_reconciles_total", (("result", "blocked"),)] >= 2
    assert metrics["watcher_operator_reconciles_total", (("result", "ok"),)] >= 1


def test_claim_changes_are_reported_not_crash_looped(cluster, namespace, kube, run_operator):
    prepare(cluster, namespace)
    op = run_operator(namespace, "--standalone")
    apply(cluster, minimal(namespace))
    wait_for(lambda: children_ready(kube, namespace), 60, "children")
    # grow the database claim (an unbound claim cannot be resized: the API server refuses, we report it)
    # and ask for another access mode on the snapshot claim (immutable); the tag change must still apply
    doc = minimal(
        namespace, backend={"storage": {"size": "20Gi"}}, filemon={"storage": {"accessMode": "ReadWriteOnce"}}
    )
    doc["spec"]["image"]["tag"] = "1.2.0"
    apply(cluster, doc)
    wait_for(
        lambda: "access modes cannot change" in (condition(kube, namespace, "Degraded") or {}).get("message", ""),
        30,
        "AccessModeImmutable reported",
    )
    degraded = condition(kube, namespace, "Degraded")
    assert "watcher-backend-pvc cannot grow from 10Gi to 20Gi" in degraded["message"]
    assert "ReadWriteMany" in degraded["message"]
    wait_for(
        lambda: kube.get("apps/v1", "Deployment", namespace, "watcher-backend")["spec"]["template"]["spec"][
            "containers"
        ][0]["image"].endswith(":1.2.0"),
        30,
        "tag applied despite claim problems",
    )
    pvc = kube.get("v1", "PersistentVolumeClaim", namespace, "watcher-filemon-storage-pvc")
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    # the operator keeps running and keeps reporting (no crash loop)
    time.sleep(4)
    assert op.proc.poll() is None
    assert "Traceback" not in op.output()
    # shrinking is refused with its own message
    apply(cluster, minimal(namespace, backend={"storage": {"size": "5Gi"}}))
    wait_for(lambda: "cannot shrink" in (condition(kube, namespace, "Degraded") or {}).get("message", ""), 30)


def _prometheus_operator_crd(kind: str, plural: str) -> dict:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.monitoring.coreos.com"},
        "spec": {
            "group": "monitoring.coreos.com",
            "scope": "Namespaced",
            "names": {"kind": kind, "plural": plural, "singular": kind.lower(), "listKind": f"{kind}List"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
                }
            ],
        },
    }


def test_service_monitors_and_alert_rules_appear_when_the_prometheus_crds_exist(cluster, namespace, kube, run_operator):
    from watcher_operator import alerts

    prepare(cluster, namespace)
    run_operator(namespace, "--standalone")
    apply(cluster, minimal(namespace))
    wait_for(lambda: children_ready(kube, namespace), 60, "children")
    mon_api = "monitoring.coreos.com/v1"
    apply(cluster, _prometheus_operator_crd("ServiceMonitor", "servicemonitors"))
    try:
        cluster.kubectl("wait", "--for=condition=Established", "crd/servicemonitors.monitoring.coreos.com")
        for name in ("watcher-backend-monitor", "watcher-filemon-monitor", "watcher-procmon-monitor"):
            mon = wait_for(lambda: kube.get(mon_api, "ServiceMonitor", namespace, name), 30, name)
            assert mon["metadata"]["labels"]["release"] == "prometheus"
        # the rules' CRD arrives later: the PrometheusRule follows
        apply(cluster, _prometheus_operator_crd("PrometheusRule", "prometheusrules"))
        cluster.kubectl("wait", "--for=condition=Established", "crd/prometheusrules.monitoring.coreos.com")
        rule = wait_for(lambda: kube.get(mon_api, "PrometheusRule", namespace, "watcher-alerts"), 30, "rule")
        assert rule["metadata"]["labels"]["release"] == "prometheus"
        got = {r["alert"] for r in rule["spec"]["groups"][0]["rules"]}
        assert got == {a.name for a in alerts.ALERTS}
        # rules switched off: the rule goes, the monitors stay
        apply(cluster, minimal(namespace, monitoring={"prometheusRules": False}))
        wait_for(lambda: kube.get(mon_api, "PrometheusRule", namespace, "watcher-alerts") is None, 30, "rule removed")
        assert kube.get(mon_api, "ServiceMonitor", namespace, "watcher-backend-monitor") is not None
        # monitoring switched off: they are removed
        apply(cluster, minimal(namespace, monitoring={"serviceMonitors": False}))
        wait_for(
            lambda: kube.get(mon_api, "ServiceMonitor", namespace, "watcher-backend-monitor") is None,
            30,
            "monitor removed",
        )
    finally:
        cluster.kubectl("delete", "crd", "prometheusrules.monitoring.coreos.com", check=False)
        cluster.kubectl("delete", "crd", "servicemonitors.monitoring.coreos.com", check=False)


def test_full_example_with_postgres_reconciles(cluster, namespace, kube, run_operator):
    prepare(cluster, namespace)
    cluster.kubectl(
        "-n",
        namespace,
        "create",
        "secret",
        "generic",
        "watcher-database",
        "--from-literal=url=postgresql+psycopg://watcher:pw@postgres/watcher",
    )
    run_operator(namespace, "--standalone")
    doc = yaml.safe_load((ROOT / "examples" / "watcherdeployment.yaml").read_text())
    doc["metadata"]["namespace"] = namespace
    doc["spec"]["backend"]["replicas"] = 2
    apply(cluster, doc)
    wait_for(lambda: children_ready(kube, namespace), 60, "children")
    dep = kube.get("apps/v1", "Deployment", namespace, "watcher-backend")
    assert dep["spec"]["replicas"] == 2 and dep["spec"]["strategy"]["type"] == "RollingUpdate"
    env = {e["name"]: e for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["WATCHER_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "watcher-database", "key": "url"}
    ds = kube.get("apps/v1", "DaemonSet", namespace, "watcher-filemon")
    pod = ds["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"jcode.io/student-workloads": "true"}
    assert pod["containers"][0]["volumeMounts"][0]["subPath"] == "workspace"
    netpol = kube.get("networking.k8s.io/v1", "NetworkPolicy", namespace, "watcher-backend")
    assert len(netpol["spec"]["ingress"][0]["from"]) == 4
    mark_ready(kube, namespace)
    cluster.kubectl("-n", namespace, "wait", "--for=condition=Ready", "--timeout=60s", "watcherdeployment/watcher")
    assert cluster.kubectl("-n", namespace, "get", "wd", "watcher", "--no-headers").stdout.split()[2] == "2/2"
    # back to SQLite with 3 replicas: runs one, and says why
    del doc["spec"]["backend"]["database"]
    doc["spec"]["backend"]["replicas"] = 3
    apply(cluster, doc)
    wait_for(lambda: (condition(kube, namespace, "Degraded") or {}).get("reason") == "SingleWriterDatabase", 30)
    assert kube.get("apps/v1", "Deployment", namespace, "watcher-backend")["spec"]["replicas"] == 1


def _container_env(kube: Kube, ns: str, kind: str, name: str) -> dict[str, str]:
    obj = kube.get("apps/v1", kind, ns, name)
    return {e["name"]: e.get("value") for e in obj["spec"]["template"]["spec"]["containers"][0]["env"]}


def test_privacy_fields_reach_the_workloads_and_unset_retention_is_removed(cluster, namespace, kube, run_operator):
    prepare(cluster, namespace)
    op = run_operator(namespace, "--standalone")
    # the grace period is left out: the API server fills its default and the operator renders it
    apply(cluster, minimal(namespace, backend={"retentionDays": 365}, filemon={"snapshotGcIntervalSeconds": 0}))
    wait_for(
        lambda: _container_env(kube, namespace, "Deployment", "watcher-backend").get("WATCHER_RETENTION_DAYS") == "365",
        60,
        "retention env on the backend",
    )
    filemon = wait_for(lambda: _container_env(kube, namespace, "DaemonSet", "watcher-filemon"), 30, "filemon")
    assert filemon["WATCHER_SNAPSHOT_GC_INTERVAL_SECONDS"] == "0"
    assert filemon["WATCHER_SNAPSHOT_GC_GRACE_SECONDS"] == "86400"
    # retention switched off again: server-side apply drops the variable we no longer send
    apply(cluster, minimal(namespace, filemon={"snapshotGcIntervalSeconds": 0}))
    wait_for(
        lambda: "WATCHER_RETENTION_DAYS" not in _container_env(kube, namespace, "Deployment", "watcher-backend"),
        30,
        "retention env removed",
    )
    assert "Traceback" not in op.output()


def test_notebooks_get_the_hook_config_a_key_kept_across_reconciles_and_a_warning_without_student_pods(
    cluster, namespace, kube, run_operator
):
    prepare(cluster, namespace)
    op = run_operator(namespace, "--standalone")
    apply(cluster, minimal(namespace, notebook={"enabled": True}))
    hook = wait_for(lambda: kube.get("v1", "ConfigMap", namespace, "watcher-hook-config"), 60, "hook ConfigMap")
    compile(hook["data"]["00-jcode-watcher.py"], "00-jcode-watcher.py", "exec")
    secret = wait_for(lambda: kube.get("v1", "Secret", namespace, "watcher-notebook-key"), 30, "key Secret")
    key = base64.b64decode(secret["data"]["notebook-key"]).decode()
    assert len(key) >= 32
    deploy = wait_for(lambda: kube.get("apps/v1", "Deployment", namespace, "watcher-backend"), 30, "backend")
    env = {e["name"]: e for e in deploy["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["WATCHER_NOTEBOOK_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "watcher-notebook-key"
    # the NetworkPolicy would drop the kernels' posts: said in the conditions, not silently
    wait_for(
        lambda: "NotebookStudentPodsUnset" in json.dumps((kube.get(*WD, namespace, "watcher") or {}).get("status", {})),
        30,
        "NotebookStudentPodsUnset",
    )
    students = {"namespaceSelector": {"kubernetes.io/metadata.name": "jcode"}}
    apply(cluster, minimal(namespace, notebook={"enabled": True, "studentPods": students}))
    wait_for(
        lambda: (
            students["namespaceSelector"]
            in [
                p.get("namespaceSelector", {}).get("matchLabels")
                for p in kube.get("networking.k8s.io/v1", "NetworkPolicy", namespace, "watcher-backend")["spec"][
                    "ingress"
                ][0]["from"]
            ]
        ),
        30,
        "student pods admitted",
    )
    # turned off: the ConfigMap goes, the key stays (tokens handed out stay valid if it is turned on again)
    apply(cluster, minimal(namespace))
    wait_for(lambda: kube.get("v1", "ConfigMap", namespace, "watcher-hook-config") is None, 30, "hook ConfigMap pruned")
    assert "WATCHER_NOTEBOOK_KEY" not in _container_env(kube, namespace, "Deployment", "watcher-backend")
    apply(cluster, minimal(namespace, notebook={"enabled": True, "studentPods": students}))
    wait_for(lambda: kube.get("v1", "ConfigMap", namespace, "watcher-hook-config"), 30, "hook ConfigMap again")
    again = kube.get("v1", "Secret", namespace, "watcher-notebook-key")
    assert base64.b64decode(again["data"]["notebook-key"]).decode() == key
    assert "Traceback" not in op.output()


def test_a_paused_resource_is_left_alone_and_says_so_until_resumed(cluster, namespace, kube, run_operator):
    prepare(cluster, namespace)
    op = run_operator(namespace, "--standalone")
    apply(cluster, minimal(namespace))
    wait_for(lambda: kube.get("v1", "Service", namespace, "watcher-filemon"), 60, "children")
    apply(cluster, minimal(namespace, paused=True))
    wait_for(lambda: (condition(kube, namespace, "Degraded") or {}).get("reason") == "Paused", 30, "Paused")
    # a child removed by hand while paused stays removed (a manual repair is not undone)...
    handled = op.output().count("Handler 'child_event' succeeded")
    cluster.kubectl("-n", namespace, "delete", "service", "watcher-filemon")
    # the operator saw the deletion and ran its reconcile (which, unpaused, recreates the child at once)
    wait_for(lambda: op.output().count("Handler 'child_event' succeeded") > handled, 30, "the deletion handled")
    assert "child Service watcher-filemon was deleted" in op.output()
    assert kube.get("v1", "Service", namespace, "watcher-filemon") is None
    # ...and comes back once the resource is resumed
    apply(cluster, minimal(namespace))
    wait_for(lambda: kube.get("v1", "Service", namespace, "watcher-filemon"), 30, "Service recreated")
    wait_for(lambda: (condition(kube, namespace, "Degraded") or {}).get("reason") != "Paused", 30, "not Paused")
    assert "Traceback" not in op.output()


def test_pull_secrets_reach_every_pod_and_a_missing_one_is_reported(cluster, namespace, kube, run_operator):
    prepare(cluster, namespace)
    op = run_operator(namespace, "--standalone")
    doc = minimal(namespace)
    doc["spec"]["image"]["pullSecrets"] = ["mirror-registry"]
    apply(cluster, doc)
    wait_for(lambda: children_ready(kube, namespace), 60, "children")
    workloads = [
        ("apps/v1", "Deployment", "watcher-backend"),
        ("apps/v1", "DaemonSet", "watcher-filemon"),
        ("apps/v1", "DaemonSet", "watcher-procmon"),
    ]

    def pull_secrets() -> list[list[str]]:
        return [
            [
                s["name"]
                for s in kube.get(*w[:2], namespace, w[2])["spec"]["template"]["spec"].get("imagePullSecrets", [])
            ]
            for w in workloads
        ]

    assert pull_secrets() == [["watcher-harbor-registry-secret", "mirror-registry"]] * 3
    # the Secret does not exist yet: said, but nothing blocked
    wait_for(lambda: "PullSecretMissing" in (condition(kube, namespace, "Degraded") or {}).get("reason", ""), 30)
    assert "mirror-registry" in condition(kube, namespace, "Degraded")["message"]
    cluster.kubectl(
        "-n", namespace, "create", "secret", "docker-registry", "mirror-registry",
        "--docker-server=mirror.example", "--docker-username=u", "--docker-password=p",
    )  # fmt: skip
    wait_for(lambda: (condition(kube, namespace, "Degraded") or {}).get("status") == "False", 30, "healed")
    # taken out of the list: the pods keep only the operator's own
    doc["spec"]["image"]["pullSecrets"] = []
    apply(cluster, doc)
    wait_for(lambda: pull_secrets() == [["watcher-harbor-registry-secret"]] * 3, 30, "pull secret removed")
    assert "Traceback" not in op.output()
