"""The backend's NetworkPolicy as a CNI that enforces it would apply it (the one-node test cluster's does
not): the objects the operator renders, evaluated by support.netpol against pods with the labels and
namespaces they have in the cluster (tests/system/cluster). Who reaches the backend's port: the agents,
spec.platform, the Prometheus peer while ServiceMonitors are on, the notebook student pods while
spec.notebook is on; never a student pod otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from support.netpol import Pod, allowed, ingress_policies
from watcher_operator.builders import Inputs, build_children

ROOT = Path(__file__).resolve().parents[3]
INPUTS = Inputs(
    registry_username="robot$watcher",
    registry_password="s3cret",
    tokens={"ingest": "i" * 32, "read": "r" * 32, "admin": "a" * 32},
    service_monitors_available=True,
    prometheus_rules_available=True,
)
# as in tests/system/cluster: the student pod next to Watcher, and the platform's namespace
STUDENT = Pod("watcher", {"app": "jcode-student"})
STUDENT_IN_JCODE = Pod("jcode", {"app": "jcode-student", "jcode/student": "202012345"})
PLATFORM = Pod("jcode", {"app": "jcode-backend"})
PROMETHEUS = Pod("monitoring", {"app.kubernetes.io/name": "prometheus", "prometheus": "kube-prometheus-stack"})
GRAFANA = Pod("monitoring", {"app.kubernetes.io/name": "grafana"})
ANYONE = Pod("default", {"run": "curl"})


def resource(**spec) -> dict:
    r = yaml.safe_load((ROOT / "examples" / "watcherdeployment-minimal.yaml").read_text())
    r["metadata"].update(uid="00000000-0000-0000-0000-000000000001", generation=1)
    r["spec"].update(spec)
    return r


class Cluster:
    """The rendered children: their NetworkPolicies, and the pods their workloads make (labels and named
    ports from the pod templates)."""

    def __init__(self, r: dict):
        self.objects = build_children(r, INPUTS)
        self.policies = [o for o in self.objects if o["kind"] == "NetworkPolicy"]
        self.pods = {}
        for o in self.objects:
            if o["kind"] in ("Deployment", "DaemonSet"):
                template = o["spec"]["template"]
                ports = {
                    p["name"]: p["containerPort"]
                    for c in template["spec"]["containers"]
                    for p in c.get("ports", [])
                    if "name" in p
                }
                self.pods[o["metadata"]["name"]] = Pod(
                    o["metadata"]["namespace"], template["metadata"]["labels"], ports=ports
                )
        self.backend = self.pods["watcher-backend"]
        self.port = self.backend.ports["http"]

    def reaches_backend(self, pod: Pod, port: int | None = None) -> bool:
        return allowed(self.policies, pod, self.backend, self.port if port is None else port)


def test_the_backend_is_isolated_and_a_student_pod_cannot_reach_it():
    c = Cluster(resource())
    assert ingress_policies(c.policies, c.backend)  # the backend pod is selected: isolated
    for pod in (STUDENT, STUDENT_IN_JCODE, PLATFORM, GRAFANA, ANYONE):
        assert not c.reaches_backend(pod), pod
        assert not c.reaches_backend(pod, 9090)


def test_the_agents_reach_the_backend_port_and_only_that_port():
    c = Cluster(resource())
    for name in ("watcher-filemon", "watcher-procmon"):
        assert c.reaches_backend(c.pods[name])
        assert not c.reaches_backend(c.pods[name], c.port + 1)


def test_the_platform_named_in_spec_platform_reaches_the_backend_and_its_students_do_not():
    c = Cluster(
        resource(
            platform={
                "namespaceSelector": {"kubernetes.io/metadata.name": "jcode"},
                "podSelector": {"app": "jcode-backend"},
            }
        )
    )
    assert c.reaches_backend(PLATFORM)
    assert not c.reaches_backend(STUDENT_IN_JCODE)  # the platform's namespace holds student pods too
    assert not c.reaches_backend(Pod("other", {"app": "jcode-backend"}))  # a look-alike elsewhere
    assert not c.reaches_backend(STUDENT)


@pytest.mark.parametrize("on", [True, False])
def test_prometheus_reaches_the_backend_only_while_service_monitors_are_on(on):
    c = Cluster(resource(monitoring={"serviceMonitors": on}))
    assert c.reaches_backend(PROMETHEUS) is on
    assert not c.reaches_backend(GRAFANA)  # its neighbour in the monitoring namespace never
    assert not c.reaches_backend(STUDENT)


def test_notebook_student_pods_reach_the_backend_only_while_notebooks_are_on():
    pods = {"namespaceSelector": {"kubernetes.io/metadata.name": "jcode"}, "podSelector": {"app": "jcode-student"}}
    off = Cluster(resource(notebook={"enabled": False, "studentPods": pods}))
    assert not off.reaches_backend(STUDENT_IN_JCODE)
    on = Cluster(resource(notebook={"enabled": True, "studentPods": pods}))
    assert on.reaches_backend(STUDENT_IN_JCODE)
    assert not on.reaches_backend(STUDENT)  # a student pod outside the selected namespace: still not
    assert not on.reaches_backend(STUDENT_IN_JCODE, 9090)


def test_without_the_policy_everyone_reaches_the_backend():
    # what networkPolicy.enabled=false means, and why the token-less platform reads need the policy
    c = Cluster(resource(networkPolicy={"enabled": False}))
    assert c.policies == [] and c.reaches_backend(STUDENT)


# The simulator itself, on the Kubernetes documentation's cases: it must refuse what Kubernetes refuses.


def policy(spec: dict, namespace: str = "web") -> dict:
    return {"kind": "NetworkPolicy", "metadata": {"name": "p", "namespace": namespace}, "spec": spec}


WEB = Pod("web", {"app": "web"}, ip="10.0.0.5", ports={"http": 8080})


def test_simulator_unselected_pods_and_other_namespaces_are_open():
    deny_all = policy({"podSelector": {}, "policyTypes": ["Ingress"]})
    assert not allowed([deny_all], ANYONE, WEB, 8080)
    assert allowed([deny_all], WEB, Pod("other", {"app": "web"}), 8080)  # a policy binds its namespace only
    assert allowed([policy({"podSelector": {"matchLabels": {"app": "db"}}, "ingress": []})], ANYONE, WEB, 1)
    allow_all = policy({"podSelector": {}, "ingress": [{}]})
    assert allowed([deny_all, allow_all], ANYONE, WEB, 8080)  # policies add up


def test_simulator_peers_ports_and_selectors():
    both = policy(
        {
            "podSelector": {"matchLabels": {"app": "web"}},
            "ingress": [
                {
                    "from": [
                        {
                            "namespaceSelector": {
                                "matchExpressions": [{"key": "team", "operator": "In", "values": ["a"]}]
                            },
                            "podSelector": {"matchExpressions": [{"key": "role", "operator": "Exists"}]},
                        },
                        {"ipBlock": {"cidr": "10.1.0.0/16", "except": ["10.1.2.0/24"]}},
                    ],
                    "ports": [{"port": "http"}, {"protocol": "TCP", "port": 9000, "endPort": 9010}],
                }
            ],
        }
    )
    client = Pod("x", {"role": "client"}, namespace_labels={"team": "a"})
    assert allowed([both], client, WEB, 8080) and allowed([both], client, WEB, 9005)
    assert not allowed([both], client, WEB, 9011)
    assert not allowed([both], client, WEB, 8080, protocol="UDP")
    assert not allowed([both], Pod("x", {}, namespace_labels={"team": "a"}), WEB, 8080)  # AND, not OR
    assert not allowed([both], Pod("y", {"role": "client"}, namespace_labels={"team": "b"}), WEB, 8080)
    assert allowed([both], Pod("z", {}, ip="10.1.3.4"), WEB, 8080)
    assert not allowed([both], Pod("z", {}, ip="10.1.2.4"), WEB, 8080)
    same_ns_only = policy({"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}]})
    assert allowed([same_ns_only], Pod("web", {}), WEB, 1) and not allowed([same_ns_only], ANYONE, WEB, 1)


def test_a_student_pod_cannot_read_the_agents_metrics_and_prometheus_can():
    c = Cluster(resource())
    for name in ("watcher-filemon", "watcher-procmon"):
        agent = c.pods[name]
        assert ingress_policies(c.policies, agent), name  # selected: isolated
        metrics = agent.ports["metrics"]
        for pod in (STUDENT, STUDENT_IN_JCODE, PLATFORM, GRAFANA, ANYONE, c.backend):
            assert not allowed(c.policies, pod, agent, metrics), (name, pod)
        assert allowed(c.policies, PROMETHEUS, agent, metrics)
        assert not allowed(c.policies, PROMETHEUS, agent, metrics + 1)


def test_without_service_monitors_nothing_reaches_the_agents_but_allow_from():
    quiet = Cluster(resource(monitoring={"serviceMonitors": False}))
    agent = quiet.pods["watcher-filemon"]
    assert not allowed(quiet.policies, PROMETHEUS, agent, agent.ports["metrics"])
    extra = Cluster(
        resource(
            monitoring={"serviceMonitors": False},
            networkPolicy={
                "enabled": True,
                "allowFrom": [{"namespaceSelector": {"kubernetes.io/metadata.name": "monitoring"}}],
            },
        )
    )
    agent = extra.pods["watcher-procmon"]
    assert allowed(extra.policies, GRAFANA, agent, agent.ports["metrics"])
    assert not allowed(extra.policies, STUDENT, agent, agent.ports["metrics"])
