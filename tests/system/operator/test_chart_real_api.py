"""The chart installed with the Helm library into a real API server, and the operator running as the
chart's ServiceAccount (its token from the TokenRequest API): proves the RBAC is sufficient, the peering
objects work, and two replicas elect one active operator."""

from __future__ import annotations

import json
import uuid
import warnings

import helm_python as helm
import pytest

from watcher_operator.kubeapi import Kube, load_config

from .conftest import ROOT, wait_for
from .test_operator_real_api import apply, children_ready, mark_ready, minimal, prepare

warnings.filterwarnings("ignore", message="Unverified HTTPS request")


@pytest.fixture
def kube(cluster) -> Kube:
    return Kube(load_config(cluster.kubeconfig))


def sa_kubeconfig(cluster, namespace: str, sa: str, path) -> str:
    token = cluster.kubectl("-n", namespace, "create", "token", sa, "--duration=1h").stdout.strip()
    cfg = json.loads(open(cluster.kubeconfig).read())
    cfg["users"] = [{"name": sa, "user": {"token": token}}]
    cfg["contexts"][0]["context"]["user"] = sa
    path.write_text(json.dumps(cfg))
    return str(path)


def test_chart_installs_and_its_service_account_can_run_the_operator(cluster, kube, run_operator, tmp_path):
    ns = f"chart-{uuid.uuid4().hex[:6]}"
    config = helm.Config(kubeconfig_path=cluster.kubeconfig, namespace=ns)
    operators = []
    try:
        release = config.install(
            str(ROOT / "charts" / "watcher-operator"),
            "watcher-operator",
            {"replicaCount": 2},
            namespace=ns,
            create_namespace=True,
            timeout=120,
        )
        assert "watcher-operator" in json.dumps(release)
        assert cluster.kubectl("-n", ns, "get", "deployment", "watcher-operator").returncode == 0
        assert cluster.kubectl("-n", ns, "get", "kopfpeerings.kopf.dev", "watcher-operator").returncode == 0
        # nobody runs the pods (no nodes): run two replicas here with the ServiceAccount's own token
        kubeconfig = sa_kubeconfig(cluster, ns, "watcher-operator", tmp_path / "sa.kubeconfig")
        denied = cluster.kubectl(
            "auth", "can-i", "delete", "persistentvolumeclaims", "-n", ns, kubeconfig=kubeconfig, check=False
        )
        assert denied.stdout.strip() == "no"
        assert (
            cluster.kubectl(
                "auth", "can-i", "create", "daemonsets", "-n", "default", kubeconfig=kubeconfig, check=False
            ).stdout.strip()
            == "no"
        )
        first = run_operator(
            ns, "--peering", "watcher-operator", "--priority", "200", kubeconfig=kubeconfig, name="replica-1"
        )
        second = run_operator(
            ns, "--peering", "watcher-operator", "--priority", "100", kubeconfig=kubeconfig, name="replica-2"
        )
        operators += [first, second]
        # both replicas register in the chart's KopfPeering; the lower priority one stays paused (kopf logs
        # "Pausing" only when it was active first, so the proof is below: it creates nothing)
        wait_for(
            lambda: (
                len(
                    kube.request("GET", f"/apis/kopf.dev/v1/namespaces/{ns}/kopfpeerings/watcher-operator").get(
                        "status"
                    )
                    or {}
                )
                >= 2
            ),
            60,
            "two peers registered",
        )
        prepare(cluster, ns)
        apply(cluster, minimal(ns))
        wait_for(lambda: children_ready(kube, ns), 90, "children created by the chart's service account")
        mark_ready(kube, ns)
        cluster.kubectl("-n", ns, "wait", "--for=condition=Ready", "--timeout=60s", "watcherdeployment/watcher")
        assert "created Deployment watcher-backend" in first.output()
        assert "created Deployment watcher-backend" not in second.output()
        # node scope: the chart's account may grant filemon its pod-reading Role (RBAC refuses to let anyone
        # grant rules it does not hold itself)
        apply(cluster, minimal(ns, filemon={"scope": "node"}))
        wait_for(
            lambda: kube.get("rbac.authorization.k8s.io/v1", "RoleBinding", ns, "watcher-filemon-pods"),
            60,
            "filemon's Role granted by the chart's service account",
        )
        can_watch = cluster.kubectl(
            "auth", "can-i", "watch", "pods", "-n", ns, f"--as=system:serviceaccount:{ns}:watcher-filemon", check=False
        )
        assert can_watch.stdout.strip() == "yes"
        for verb, resource in (("delete", "pods"), ("list", "secrets"), ("create", "pods/exec")):
            denied = cluster.kubectl(
                "auth",
                "can-i",
                verb,
                resource,
                "-n",
                ns,
                f"--as=system:serviceaccount:{ns}:watcher-filemon",
                check=False,
            )
            assert denied.stdout.strip() == "no", (verb, resource)
        for op in (first, second):
            out = op.output()
            # RBAC refusals show as kopf's APIForbiddenError / "Forbidden" ("403" alone would also match a
            # log line's milliseconds, e.g. "12:30:17,403")
            assert "Forbidden" not in out and "Traceback" not in out, out[-3000:]
        # the active replica dies: the other one takes over and repairs drift
        first.stop()
        cluster.kubectl("-n", ns, "delete", "deployment", "watcher-backend")
        wait_for(lambda: kube.get("apps/v1", "Deployment", ns, "watcher-backend"), 150, "failover repair")
        assert "created Deployment watcher-backend" in second.output()
    finally:
        for op in operators:  # before the RBAC goes away with the release
            op.stop()
        cluster.kubectl("-n", ns, "delete", "watcherdeployments", "--all", "--wait=false", check=False)
        try:
            config.uninstall("watcher-operator")
        except helm.HelmError:
            pass
        cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)
        config.close()


def test_the_helm_test_hook_passes_against_a_running_operator_and_fails_without_one(
    cluster, namespace, run_operator, tmp_path
):
    import subprocess
    import sys

    import yaml

    from support.ports import free_port

    liveness = free_port()
    op = run_operator(namespace, "--standalone", "--liveness", f"http://127.0.0.1:{liveness}/healthz")
    out = helm.Chart.load(ROOT / "charts" / "watcher-operator").render(
        {"livenessPort": liveness, "metricsPort": op.metrics_port},
        name="watcher-operator",
        namespace=namespace,
        is_install=True,
    )
    hook = yaml.safe_load(out["watcher-operator/templates/tests/test-operator-up.yaml"])
    script = hook["spec"]["containers"][0]["args"][0]
    # the pod asks the Service; here the operator is a process on this machine
    service = f"http://watcher-operator.{namespace}.svc"
    assert service in script
    script = script.replace(service, "http://127.0.0.1")

    def hook_run(text: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", text], capture_output=True, text=True, timeout=120)

    passed = hook_run(script)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert passed.stdout.count("ok http://127.0.0.1") == 2
    op.stop()
    failed = hook_run(script.replace("range(30)", "range(1)"))  # one try each instead of a minute of them
    assert failed.returncode != 0 and "the operator does not answer" in failed.stderr
