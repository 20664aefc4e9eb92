"""Pure builders: the children a WatcherDeployment yields, checked against golden files and the
Kubernetes schemas (kubernetes-validate, strict: unknown fields are errors)."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import all_versions

from watcher_operator import builders, crd
from watcher_operator.builders import Inputs, build_children, target_from_resource

ROOT = Path(__file__).resolve().parents[3]
GOLDEN = Path(__file__).parent / "golden"
EXAMPLES = {
    "full": ROOT / "examples" / "watcherdeployment.yaml",
    "minimal": ROOT / "examples" / "watcherdeployment-minimal.yaml",
}
# Fixed inputs so the output is deterministic (the reconciler reads these from the cluster).
INPUTS = Inputs(
    registry_username="robot$watcher",
    registry_password="s3cret",
    tokens={"ingest": "ingest-token-value", "read": "read-token-value", "admin": "admin-token-value"},
    service_monitors_available=True,
    prometheus_rules_available=True,
)
# The oldest schema kubernetes-validate ships is 1.25; also the newest one it knows.
SCHEMA_VERSIONS = ["1.25", kubernetes_validate.latest_version()]


def load_example(which: str) -> dict:
    resource = yaml.safe_load(EXAMPLES[which].read_text())
    resource["metadata"]["uid"] = f"00000000-0000-0000-0000-{'0' * 8}{which[:4].encode().hex()}"
    resource["metadata"]["generation"] = 1
    return resource


def children(which: str, inputs: Inputs = INPUTS) -> list[dict]:
    return build_children(load_example(which), inputs)


def by_key(objs: list[dict]) -> dict[tuple[str, str], dict]:
    return {(o["kind"], o["metadata"]["name"]): o for o in objs}


@pytest.mark.parametrize("which", sorted(EXAMPLES))
def test_children_match_golden_files(which):
    rendered = yaml.safe_dump_all(children(which), sort_keys=True, width=120)
    golden = GOLDEN / f"{which}.yaml"
    if os.environ.get("UPDATE_GOLDEN") == "1" or not golden.exists():
        golden.write_text(rendered)
    assert rendered == golden.read_text(), f"regenerate with UPDATE_GOLDEN=1 if the change is intended: {golden}"


def test_schema_versions_available():
    assert "1.25.0" in all_versions()
    assert SCHEMA_VERSIONS[1] >= "1.25"


@pytest.mark.parametrize("version", SCHEMA_VERSIONS)
@pytest.mark.parametrize("which", sorted(EXAMPLES))
def test_every_builtin_child_passes_strict_schema(which, version):
    checked = 0
    for obj in children(which):
        if obj["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # a CRD kind: kubernetes-validate has no schema for it (checked below)
        kubernetes_validate.validate(obj, version, strict=True)
        checked += 1
    assert checked >= 9


# ServiceMonitor is a Prometheus Operator CRD; kubernetes-validate only ships built-in kinds
# (SchemaNotFoundError). Check the fields we set against the shape of monitoring.coreos.com/v1.
SERVICE_MONITOR_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {"type": "object"},
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["selector", "endpoints"],
            "properties": {
                "selector": {"type": "object", "properties": {"matchLabels": {"type": "object"}}},
                "namespaceSelector": {
                    "type": "object",
                    "properties": {"matchNames": {"type": "array", "items": {"type": "string"}}},
                },
                "endpoints": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string"},
                            "interval": {"type": "string"},
                            "relabelings": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "additionalProperties": False,
                                    "properties": {
                                        "action": {"enum": ["replace"]},
                                        "sourceLabels": {"type": "array", "items": {"type": "string"}},
                                        "targetLabel": {"type": "string"},
                                    },
                                },
                            },
                        },
                    },
                },
            },
        },
    },
}


def test_service_monitors_have_the_prometheus_operator_shape():
    import jsonschema

    monitors = [o for o in children("full") if o["kind"] == "ServiceMonitor"]
    assert {m["metadata"]["name"] for m in monitors} == {
        "watcher-backend-monitor",
        "watcher-filemon-monitor",
        "watcher-procmon-monitor",
    }
    for m in monitors:
        jsonschema.validate(m, SERVICE_MONITOR_SCHEMA)
        assert m["metadata"]["labels"]["release"] == "prometheus"
        with pytest.raises(kubernetes_validate.SchemaNotFoundError):
            kubernetes_validate.validate(m, "1.25", strict=True)
        relabel = m["spec"]["endpoints"][0].get("relabelings")
        if m["metadata"]["name"] == "watcher-backend-monitor":
            assert relabel is None  # one backend, no node to name
        else:  # one agent per node: its series carry the node's name
            assert relabel == [
                {"action": "replace", "sourceLabels": ["__meta_kubernetes_pod_node_name"], "targetLabel": "node"}
            ]


# PrometheusRule (monitoring.coreos.com/v1): the fields we set, as the Prometheus Operator's CRD declares them.
PROMETHEUS_RULE_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "PrometheusRule"},
        "metadata": {"type": "object"},
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "groups": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["name", "rules"],
                        "properties": {
                            "name": {"type": "string"},
                            "rules": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "additionalProperties": False,
                                    "required": ["alert", "expr"],
                                    "properties": {
                                        "alert": {"type": "string"},
                                        "expr": {"type": "string"},
                                        "for": {"type": "string", "pattern": "^(0|(([0-9]+)(y|w|d|h|m|s|ms))+)$"},
                                        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                                        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
                                    },
                                },
                            },
                        },
                    },
                }
            },
        },
    },
}


def test_prometheus_rule_holds_the_alerts_and_follows_the_crd_and_the_spec():
    import jsonschema

    from watcher_operator import alerts

    rule = by_key(children("minimal"))["PrometheusRule", "watcher-alerts"]
    jsonschema.validate(rule, PROMETHEUS_RULE_SCHEMA)
    assert rule["metadata"]["labels"]["release"] == "prometheus"  # what kube-prometheus-stack selects rules by
    assert rule["metadata"]["ownerReferences"]
    t = target_from_resource(load_example("minimal"))
    assert rule["spec"]["groups"] == [alerts.rule_group("watcher", t.namespace, t.spec)]
    assert {r["alert"] for r in rule["spec"]["groups"][0]["rules"]} == {a.name for a in alerts.ALERTS}
    # decided as the ServiceMonitors are: no CRD, no rule; and it comes only with the ServiceMonitors it reads
    no_crd = Inputs(tokens=INPUTS.tokens, registry_username="u", service_monitors_available=True)
    assert "PrometheusRule" not in {o["kind"] for o in build_children(load_example("minimal"), no_crd)}
    for monitoring in ({"prometheusRules": False}, {"serviceMonitors": False}):
        r = load_example("minimal")
        r["spec"]["monitoring"] = monitoring
        assert "PrometheusRule" not in {o["kind"] for o in build_children(r, INPUTS)}, monitoring
    # the alerts follow the components
    r = load_example("minimal")
    r["spec"]["procmon"] = {"enabled": False}
    rule = by_key(build_children(r, INPUTS))["PrometheusRule", "watcher-alerts"]
    names = {x["alert"] for x in rule["spec"]["groups"][0]["rules"]}
    assert "WatcherKernelEventsLost" not in names and "WatcherInotifyWatchesMissing" in names


def test_names_ports_sizes_and_labels_follow_the_deployment_guide():
    objs = by_key(children("minimal"))
    assert set(objs) == {
        ("Secret", "watcher-harbor-registry-secret"),
        ("Secret", "watcher-tokens"),
        ("PersistentVolumeClaim", "watcher-backend-pvc"),
        ("PersistentVolumeClaim", "watcher-filemon-storage-pvc"),
        ("Service", "watcher-backend-service"),
        ("Deployment", "watcher-backend"),
        ("Service", "watcher-filemon"),
        ("DaemonSet", "watcher-filemon"),
        ("Service", "watcher-procmon"),
        ("DaemonSet", "watcher-procmon"),
        ("NetworkPolicy", "watcher-backend"),
        ("NetworkPolicy", "watcher-agents"),
        ("ServiceMonitor", "watcher-backend-monitor"),
        ("ServiceMonitor", "watcher-filemon-monitor"),
        ("ServiceMonitor", "watcher-procmon-monitor"),
        ("PrometheusRule", "watcher-alerts"),
        ("ConfigMap", "watcher-dashboard"),
    }
    backend_pvc = objs["PersistentVolumeClaim", "watcher-backend-pvc"]["spec"]
    assert backend_pvc["accessModes"] == ["ReadWriteOnce"]
    assert backend_pvc["resources"]["requests"]["storage"] == "10Gi"
    assert backend_pvc["storageClassName"] == "longhorn"
    snap_pvc = objs["PersistentVolumeClaim", "watcher-filemon-storage-pvc"]["spec"]
    assert snap_pvc["accessModes"] == ["ReadWriteMany"] and snap_pvc["resources"]["requests"]["storage"] == "30Gi"
    svc = objs["Service", "watcher-backend-service"]["spec"]
    assert svc["type"] == "ClusterIP" and svc["ports"][0]["port"] == 3000
    assert svc["selector"] == {"app": "watcher-backend"}
    for comp in ("filemon", "procmon"):
        assert objs["Service", f"watcher-{comp}"]["spec"]["ports"][0]["port"] == 9090
        ds = objs["DaemonSet", f"watcher-{comp}"]
        assert ds["spec"]["template"]["metadata"]["labels"]["app"] == f"watcher-{comp}"
        assert ds["spec"]["template"]["spec"]["imagePullSecrets"] == [{"name": "watcher-harbor-registry-secret"}]
        image = ds["spec"]["template"]["spec"]["containers"][0]["image"]
        assert image == f"harbor.jbnu.ac.kr/jdevops/watcher-{comp}:1.0.0"
    dep = objs["Deployment", "watcher-backend"]
    assert dep["spec"]["template"]["metadata"]["labels"]["app"] == "watcher-backend"


def test_backend_is_non_root_read_only_with_health_probes():
    dep = by_key(children("minimal"))["Deployment", "watcher-backend"]
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert c["livenessProbe"]["httpGet"]["path"] == "/health"
    assert c["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert c["ports"] == [{"name": "http", "containerPort": 3000, "protocol": "TCP"}]
    assert c["resources"]["requests"] == {"cpu": "100m", "memory": "256Mi"}
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    assert mounts["/watcher/snapshots"]["readOnly"] is True  # serves snapshot content, never writes it
    vols = {v["name"]: v for v in pod["volumes"]}
    assert vols["snapshots"]["persistentVolumeClaim"] == {"claimName": "watcher-filemon-storage-pvc", "readOnly": True}
    env = {e["name"]: e for e in c["env"]}
    assert c["args"][c["args"].index("--database-url") + 1] == "sqlite:////app/data/watcher.db"
    assert "WATCHER_DATABASE_URL" not in env
    assert env["WATCHER_INGEST_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "watcher-tokens", "key": "ingest-token"}
    # RWO database volume: the old pod must stop before the new one mounts it
    assert dep["spec"]["strategy"] == {"type": "Recreate"}


def test_backend_probes_against_the_backend_itself_with_its_database_unreachable(tmp_path):
    """The rendered probes, asked of the real backend app whose database cannot be opened: liveness
    passes (no restart for a database outage), readiness fails (the pod leaves the Service, not Ready)."""
    import asyncio

    import httpx
    from sqlalchemy import create_engine

    from watcher_backend.app import create_app
    from watcher_backend.settings import Settings

    c = by_key(children("minimal"))["Deployment", "watcher-backend"]["spec"]["template"]["spec"]["containers"][0]
    ports = {p["name"] for p in c["ports"]}
    for probe in ("livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"]["port"] in ports and c[probe]["httpGet"]["scheme"] == "HTTP"
    # a file in a directory that does not exist: every connection fails, like a database that is down
    app = create_app(Settings(run_migrations=False), create_engine(f"sqlite:///{tmp_path / 'gone' / 'watcher.db'}"))

    async def probe(path: str) -> httpx.Response:
        # ASGI transport: no lifespan, so nothing tries to migrate the missing database
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://pod") as client:
            return await client.get(path)

    assert asyncio.run(probe(c["livenessProbe"]["httpGet"]["path"])).status_code == 200
    ready = asyncio.run(probe(c["readinessProbe"]["httpGet"]["path"]))
    assert ready.status_code == 503 and ready.json()["status"] == "unavailable"


def test_filemon_mounts_workspace_read_only_and_names_its_node():
    ds = by_key(children("full"))["DaemonSet", "watcher-filemon"]
    pod = ds["spec"]["template"]["spec"]
    c = pod["containers"][0]
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    assert mounts["/watcher/codes"] == {
        "name": "workspace",
        "mountPath": "/watcher/codes",
        "readOnly": True,
        "subPath": "workspace",
    }
    assert "readOnly" not in mounts["/watcher/snapshots"]
    vols = {v["name"]: v for v in pod["volumes"]}
    assert vols["workspace"]["persistentVolumeClaim"] == {"claimName": "jcode-vol-pvc", "readOnly": True}
    assert vols["state"]["hostPath"] == {"path": "/var/lib/watcher/filemon", "type": "DirectoryOrCreate"}
    env = {e["name"]: e for e in c["env"]}
    assert env["WATCHER_NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    assert env["WATCHER_EXTENSIONS"]["value"] == ".c,.h,.cc,.cpp,.hpp,.py,.ipynb"
    assert "--node-name" in c["args"] and "$(WATCHER_NODE_NAME)" in c["args"]
    assert (
        c["args"][c["args"].index("--backend-url") + 1]
        == "http://watcher-backend-service.watcher.svc.cluster.local:3000"
    )
    assert pod["nodeSelector"] == {"jcode.io/student-workloads": "true"}
    assert pod["tolerations"][0]["key"] == "dev-node"


def test_procmon_has_host_pid_least_capabilities_and_read_only_host_mounts():
    ds = by_key(children("minimal"))["DaemonSet", "watcher-procmon"]
    pod = ds["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert pod["hostPID"] is True
    caps = c["securityContext"]["capabilities"]
    assert caps["drop"] == ["ALL"] and "SYS_ADMIN" not in caps["add"]
    assert {"BPF", "PERFMON"} <= set(caps["add"])
    assert c["securityContext"].get("privileged") is None
    host_paths = {v["hostPath"]["path"]: v["name"] for v in pod["volumes"] if "hostPath" in v}
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    for path in ("/lib/modules", "/usr/src", "/sys/kernel/tracing", "/sys/kernel/debug"):
        assert mounts[host_paths[path]]["readOnly"] is True, path
    assert mounts[host_paths["/var/lib/watcher/procmon"]].get("readOnly") is not True


def test_legacy_kernel_swaps_bpf_caps_for_sys_admin():
    r = load_example("minimal")
    r["spec"]["procmon"] = {"legacyKernel": True}
    ds = by_key(build_children(r, INPUTS))["DaemonSet", "watcher-procmon"]
    caps = ds["spec"]["template"]["spec"]["containers"][0]["securityContext"]["capabilities"]["add"]
    assert "SYS_ADMIN" in caps and "BPF" not in caps


def test_registry_secret_is_a_dockerconfigjson_for_the_registry_host():
    secret = by_key(children("minimal"))["Secret", "watcher-harbor-registry-secret"]
    assert secret["type"] == "kubernetes.io/dockerconfigjson"
    config = json.loads(base64.b64decode(secret["data"][".dockerconfigjson"]))
    entry = config["auths"]["harbor.jbnu.ac.kr"]
    assert entry["username"] == "robot$watcher" and entry["password"] == "s3cret"
    assert base64.b64decode(entry["auth"]).decode() == "robot$watcher:s3cret"


def test_owner_references_everywhere_except_data_claims():
    for obj in children("minimal"):
        refs = obj["metadata"].get("ownerReferences")
        if obj["kind"] == "PersistentVolumeClaim":
            assert refs is None, obj["metadata"]["name"]
        else:
            assert refs and refs[0]["kind"] == "WatcherDeployment" and refs[0]["controller"] is True
    r = load_example("minimal")
    r["spec"]["deleteClaimsOnDelete"] = True
    for obj in build_children(r, INPUTS):
        assert obj["metadata"].get("ownerReferences"), obj["metadata"]["name"]


def test_optional_children_follow_the_spec():
    r = load_example("minimal")
    r["spec"].update(
        filemon={"enabled": False},
        procmon={"enabled": False},
        networkPolicy={"enabled": False},
        monitoring={"serviceMonitors": False},
    )
    kinds = {(o["kind"], o["metadata"]["name"]) for o in build_children(r, INPUTS)}
    assert not any("filemon" in n and k != "PersistentVolumeClaim" for k, n in kinds)
    assert not any("procmon" in n for _, n in kinds)
    assert not any(k in ("NetworkPolicy", "ServiceMonitor") for k, _ in kinds)
    # no ServiceMonitor CRD in the cluster: none even when asked
    kinds = {
        o["kind"] for o in build_children(load_example("minimal"), Inputs(tokens=INPUTS.tokens, registry_username="u"))
    }
    assert "ServiceMonitor" not in kinds
    # workspace creation
    r = load_example("minimal")
    r["spec"]["workspace"] = {"create": True, "size": "20Gi"}
    pvc = by_key(build_children(r, INPUTS))["PersistentVolumeClaim", "jcode-vol-pvc"]
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"] and pvc["spec"]["resources"]["requests"]["storage"] == "20Gi"


def test_sqlite_backend_runs_one_replica_postgres_scales():
    r = load_example("minimal")
    r["spec"]["backend"] = {"replicas": 3}
    assert by_key(build_children(r, INPUTS))["Deployment", "watcher-backend"]["spec"]["replicas"] == 1
    r["spec"]["backend"] = {"replicas": 3, "database": {"secretRef": {"name": "pg"}}}
    dep = by_key(build_children(r, INPUTS))["Deployment", "watcher-backend"]
    assert dep["spec"]["replicas"] == 3
    assert dep["spec"]["strategy"]["type"] == "RollingUpdate"
    c = dep["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in c["env"]}
    assert env["WATCHER_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "pg", "key": "url"}
    assert "--database-url" not in c["args"]  # the URL (with its password) stays in the Secret


def test_per_component_image_override_and_no_pull_secret_without_credentials():
    r = load_example("minimal")
    r["spec"]["image"] = {"tag": "2.0.0"}
    r["spec"]["procmon"] = {"image": {"tag": "2.0.1-debug", "registry": "ghcr.io/jcode"}}
    objs = by_key(build_children(r, Inputs(tokens=INPUTS.tokens)))
    assert ("Secret", "watcher-harbor-registry-secret") not in objs
    proc = objs["DaemonSet", "watcher-procmon"]["spec"]["template"]["spec"]
    assert proc["containers"][0]["image"] == "ghcr.io/jcode/watcher-procmon:2.0.1-debug"
    assert "imagePullSecrets" not in proc
    back = objs["Deployment", "watcher-backend"]["spec"]["template"]["spec"]
    assert back["containers"][0]["image"] == "harbor.jbnu.ac.kr/jdevops/watcher-backend:2.0.0"


def test_children_are_named_after_the_resource():
    r = load_example("minimal")
    r["metadata"]["name"] = "os-2026"
    t = target_from_resource(r)
    objs = build_children(r, INPUTS)
    assert {o["metadata"]["name"] for o in objs} >= {
        "os-2026-backend",
        "os-2026-backend-service",
        "os-2026-backend-pvc",
        "os-2026-filemon-storage-pvc",
    }
    assert builders.backend_url(t) == "http://os-2026-backend-service.watcher.svc.cluster.local:3000"


def test_network_policy_admits_agents_and_listed_peers_only():
    np_ = by_key(children("full"))["NetworkPolicy", "watcher-backend"]
    assert np_["spec"]["podSelector"] == {"matchLabels": {"app": "watcher-backend"}}
    peers = np_["spec"]["ingress"][0]["from"]
    assert {"podSelector": {"matchLabels": {"app": "watcher-filemon"}}} in peers
    assert {"podSelector": {"matchLabels": {"app": "watcher-procmon"}}} in peers
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "jcode"}}} in peers
    assert np_["spec"]["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 3000}]


def admits(policy: dict, namespace: str, namespace_labels: dict, pod_labels: dict, port: int) -> bool:
    """Whether `policy` lets a pod in (NetworkPolicy ingress semantics, for the matchLabels peers the builders
    write): a peer without namespaceSelector means the policy's own namespace; both selectors must match."""

    def matches(selector: dict | None, labels: dict) -> bool:
        return selector is None or all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())

    for rule in policy["spec"]["ingress"]:
        if not any(p["port"] == port for p in rule["ports"]):
            continue
        for peer in rule["from"]:
            if "namespaceSelector" in peer:
                ns_ok = matches(
                    peer["namespaceSelector"], {**namespace_labels, "kubernetes.io/metadata.name": namespace}
                )
            else:
                ns_ok = namespace == policy["metadata"]["namespace"]
            if ns_ok and matches(peer.get("podSelector"), pod_labels):
                return True
    return False


# kube-prometheus-stack's Prometheus pod and a neighbour of it, with the labels that chart gives them
PROMETHEUS = (
    "monitoring",
    {},
    {
        "app.kubernetes.io/name": "prometheus",
        "prometheus": "kube-prometheus-stack-prometheus",
        "app.kubernetes.io/instance": "kube-prometheus-stack-prometheus",
    },
)
GRAFANA = (
    "monitoring",
    {},
    {"app.kubernetes.io/name": "grafana", "app.kubernetes.io/instance": "kube-prometheus-stack"},
)


def _policy(resource: dict) -> dict:
    return by_key(build_children(resource, INPUTS))["NetworkPolicy", "watcher-backend"]


def test_default_policy_lets_the_prometheus_of_the_default_service_monitor_scrape_the_backend():
    r = load_example("minimal")
    objs = by_key(build_children(r, INPUTS))
    assert ("ServiceMonitor", "watcher-backend-monitor") in objs  # on by default...
    policy = objs["NetworkPolicy", "watcher-backend"]
    assert admits(policy, *PROMETHEUS, 3000)  # ...so its scraper gets through
    assert not admits(policy, *PROMETHEUS, 9999)
    assert not admits(policy, *GRAFANA, 3000)
    assert not admits(policy, "students", {}, PROMETHEUS[2], 3000)  # a look-alike elsewhere does not
    assert admits(policy, "watcher", {}, {"app": "watcher-filemon"}, 3000)
    assert not admits(policy, "jcode", {}, {"app": "jcode-backend"}, 3000)  # the platform only when listed


def test_prometheus_peer_follows_monitoring_spec():
    r = load_example("minimal")
    r["spec"]["monitoring"] = {"serviceMonitors": False}
    assert not admits(_policy(r), *PROMETHEUS, 3000)  # no ServiceMonitor, no scraper to let in
    r["spec"]["monitoring"] = {
        "prometheusPeer": {"namespaceSelector": {"team": "observability"}, "podSelector": {"app": "prometheus"}}
    }
    policy = _policy(r)
    assert admits(policy, "obs", {"team": "observability"}, {"app": "prometheus"}, 3000)
    assert not admits(policy, *PROMETHEUS, 3000)
    r["spec"]["monitoring"] = {"prometheusPeer": {"podSelector": {"app": "prometheus"}}}  # no namespaceSelector
    policy = _policy(r)
    assert admits(policy, "watcher", {}, {"app": "prometheus"}, 3000)  # this namespace only
    assert not admits(policy, "monitoring", {}, {"app": "prometheus"}, 3000)


def test_a_peer_listed_twice_is_written_once():
    r = load_example("minimal")
    r["spec"]["networkPolicy"] = {
        "allowFrom": [
            dict(crd.DEFAULT_PROMETHEUS_PEER),
            {"namespaceSelector": {"kubernetes.io/metadata.name": "jcode"}},
        ]
    }
    peers = _policy(r)["spec"]["ingress"][0]["from"]
    assert len(peers) == 4 and len({json.dumps(p, sort_keys=True) for p in peers}) == 4
    assert admits(_policy(r), "jcode", {}, {"app": "jcode-backend"}, 3000)


def _literal_env(container: dict) -> dict[str, str]:
    """The container's env entries that carry a value (not the Secret/downward-API references)."""
    return {e["name"]: e["value"] for e in container["env"] if "value" in e}


def _filemon_settings(container: dict, snapshot_dir: Path):
    """What filemon itself makes of the rendered args and env (its own parser; the snapshot dir moved to a
    writable tmp dir because filemon checks it)."""
    from watcher_agents.filemon import cli as filemon_cli

    args = list(container["args"][1:])
    args[args.index("--snapshot-dir") + 1] = str(snapshot_dir)
    parsed = filemon_cli.build_parser().parse_args(args)
    return filemon_cli.resolve_filemon(parsed, env=_literal_env(container))


def test_privacy_settings_reach_the_components_as_they_read_them(tmp_path):
    from watcher_backend import settings as backend_settings

    r = load_example("minimal")
    r["spec"]["backend"] = {"retentionDays": 30}
    r["spec"]["filemon"] = {"snapshotGcIntervalSeconds": 0, "snapshotGcGraceSeconds": 3600}
    objs = by_key(build_children(r, INPUTS))
    backend = objs["Deployment", "watcher-backend"]["spec"]["template"]["spec"]["containers"][0]
    assert _literal_env(backend)["WATCHER_RETENTION_DAYS"] == "30"
    assert backend_settings.from_env(_literal_env(backend)).retention_days == 30
    filemon = objs["DaemonSet", "watcher-filemon"]["spec"]["template"]["spec"]["containers"][0]
    env = _literal_env(filemon)
    assert (env["WATCHER_SNAPSHOT_GC_INTERVAL_SECONDS"], env["WATCHER_SNAPSHOT_GC_GRACE_SECONDS"]) == ("0", "3600")
    fm = _filemon_settings(filemon, tmp_path)
    assert (fm.snapshot_gc_interval, fm.snapshot_gc_grace) == (0.0, 3600.0)  # 0: the collector is off


def test_legacy_time_zones_reach_the_backend_as_it_reads_them():
    from watcher_backend import settings as backend_settings
    from watcher_backend.legacy import timezones
    from watcher_operator import crd

    assert crd.LEGACY_TIME_ZONES == timezones.ZONE_NAMES  # the CRD's enum is what the backend accepts
    r = load_example("minimal")
    unset = by_key(build_children(r, INPUTS))["Deployment", "watcher-backend"]["spec"]["template"]["spec"]
    env = _literal_env(unset["containers"][0])
    assert "WATCHER_LEGACY_SNAPSHOT_TZ" not in env and "WATCHER_LEGACY_NAIVE_TZ" not in env  # the backend's UTC
    r["spec"]["backend"] = {"legacySnapshotTimeZone": "KST", "legacyNaiveTimeZone": "Asia/Seoul"}
    objs = by_key(build_children(r, INPUTS))
    env = _literal_env(objs["Deployment", "watcher-backend"]["spec"]["template"]["spec"]["containers"][0])
    read = backend_settings.from_env(env)  # as the backend reads them
    assert read.legacy_snapshot_zone is timezones.KST
    assert read.legacy_naive_zone is timezones.KST


def test_backend_workers_reach_the_backend_as_it_reads_them_and_unset_is_one_process():
    from watcher_backend import settings as backend_settings

    r = load_example("minimal")
    unset = by_key(build_children(r, INPUTS))["Deployment", "watcher-backend"]["spec"]["template"]["spec"]
    env = _literal_env(unset["containers"][0])
    assert "WATCHER_WORKERS" not in env and backend_settings.from_env(env).workers == 1
    r["spec"]["backend"] = {"workers": 3}  # with SQLite: workers share one pod, unlike replicas
    objs = by_key(build_children(r, INPUTS))
    deployment = objs["Deployment", "watcher-backend"]["spec"]
    env = _literal_env(deployment["template"]["spec"]["containers"][0])
    assert backend_settings.from_env(env).workers == 3
    assert deployment["replicas"] == 1


def test_unset_retention_keeps_everything_and_the_collector_runs_with_filemon_defaults(tmp_path):
    from watcher_agents.filemon import gc
    from watcher_backend import settings as backend_settings

    objs = by_key(children("minimal"))
    backend = objs["Deployment", "watcher-backend"]["spec"]["template"]["spec"]["containers"][0]
    assert "WATCHER_RETENTION_DAYS" not in {e["name"] for e in backend["env"]}
    assert backend_settings.from_env(_literal_env(backend)).retention_days is None
    filemon = objs["DaemonSet", "watcher-filemon"]["spec"]["template"]["spec"]["containers"][0]
    fm = _filemon_settings(filemon, tmp_path)
    # the CRD's defaults are filemon's own: installing through the operator changes nothing
    assert (fm.snapshot_gc_interval, fm.snapshot_gc_grace) == (gc.DEFAULT_INTERVAL, gc.DEFAULT_GRACE)


def _backend_env(resource: dict) -> dict:
    deploy = by_key(build_children(resource, INPUTS))["Deployment", "watcher-backend"]
    return {e["name"]: e.get("value") for e in deploy["spec"]["template"]["spec"]["containers"][0]["env"]}


PLATFORM = ("jcode", {}, {"app": "jcode-backend"})


def test_the_platform_is_admitted_and_reads_without_a_token_only_behind_the_policy():
    r = load_example("minimal")
    assert "WATCHER_LEGACY_READS_FROM" not in _backend_env(r)  # tokens everywhere by default
    r["spec"]["platform"] = {
        "namespaceSelector": {"kubernetes.io/metadata.name": "jcode"},
        "podSelector": {"app": "jcode-backend"},
    }
    policy = _policy(r)
    assert admits(policy, *PLATFORM, 3000)
    assert not admits(policy, "jcode", {}, {"app": "jcode-os-1-202012345"}, 3000)  # a student pod there
    assert not admits(policy, "students", {}, {"app": "jcode-backend"}, 3000)
    assert _backend_env(r)["WATCHER_LEGACY_READS_FROM"] == "0.0.0.0/0,::/0"  # the policy is the gate
    r["spec"]["platform"]["sourceCIDRs"] = ["10.42.7.0/24", "10.42.9.3"]
    assert _backend_env(r)["WATCHER_LEGACY_READS_FROM"] == "10.42.7.0/24,10.42.9.3"
    # no NetworkPolicy: open only to the listed sources, never to every address
    r["spec"]["networkPolicy"] = {"enabled": False}
    assert _backend_env(r)["WATCHER_LEGACY_READS_FROM"] == "10.42.7.0/24,10.42.9.3"
    del r["spec"]["platform"]["sourceCIDRs"]
    assert "WATCHER_LEGACY_READS_FROM" not in _backend_env(r)


STUDENT = ("jcode", {}, {"app": "jcode-os-1-202012345"})


def test_notebooks_bring_the_hook_config_the_key_and_the_student_pods_peer_only_when_enabled():
    r = load_example("minimal")
    objs = by_key(build_children(r, INPUTS))
    assert not any(name.endswith(("hook-config", "notebook-key")) for kind, name in objs)
    assert "WATCHER_NOTEBOOK_KEY" not in _backend_env(r)
    assert not admits(_policy(r), *STUDENT, 3000)
    r["spec"]["notebook"] = {
        "enabled": True,
        "studentPods": {"namespaceSelector": {"kubernetes.io/metadata.name": "jcode"}},
    }
    key = "k" * 64
    objs = by_key(build_children(r, Inputs(**{**INPUTS.__dict__, "notebook_key": key})))
    hook = objs["ConfigMap", "watcher-hook-config"]
    source = hook["data"]["00-jcode-watcher.py"]
    compile(source, "00-jcode-watcher.py", "exec")  # the startup file IPython will run, whole
    assert "notebook.cell" in source and hook["metadata"]["ownerReferences"]
    secret = objs["Secret", "watcher-notebook-key"]
    assert base64.b64decode(secret["data"]["notebook-key"]).decode() == key
    deploy = objs["Deployment", "watcher-backend"]
    env = {e["name"]: e for e in deploy["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["WATCHER_NOTEBOOK_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "watcher-notebook-key",
        "key": "notebook-key",
    }
    policy = objs["NetworkPolicy", "watcher-backend"]
    assert admits(policy, *STUDENT, 3000) and not admits(policy, "elsewhere", {}, STUDENT[2], 3000)
    # an existing key Secret: referenced, never rendered
    r["spec"]["notebook"]["keySecretName"] = "jcode-notebook-key"
    objs = by_key(build_children(r, Inputs(**{**INPUTS.__dict__, "notebook_key": key})))
    assert ("Secret", "watcher-notebook-key") not in objs
    env = {
        e["name"]: e for e in objs["Deployment", "watcher-backend"]["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["WATCHER_NOTEBOOK_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "jcode-notebook-key"


def test_every_child_carries_the_version_it_runs():
    for which in sorted(EXAMPLES):
        for obj in children(which):
            assert obj["metadata"]["labels"]["app.kubernetes.io/version"] == "1.0.0", obj["metadata"]["name"]
            template = obj.get("spec", {}).get("template")
            if template:
                assert template["metadata"]["labels"]["app.kubernetes.io/version"] == "1.0.0"
                assert "app.kubernetes.io/version" not in obj["spec"]["selector"]["matchLabels"]  # immutable
    r = load_example("minimal")
    r["spec"]["image"]["tag"] = "2.0.0-rc.1"
    r["spec"]["backend"] = {"image": {"tag": "2.0.1"}}
    objs = by_key(build_children(r, INPUTS))
    assert objs["Deployment", "watcher-backend"]["metadata"]["labels"]["app.kubernetes.io/version"] == "2.0.1"
    assert objs["DaemonSet", "watcher-filemon"]["metadata"]["labels"]["app.kubernetes.io/version"] == "2.0.0-rc.1"
    # a tag Kubernetes would not take as a label value is trimmed to one it takes
    r["spec"]["image"]["tag"] = "v" + "1" * 70 + "."
    from kubernetes_validate import validate

    secret = by_key(build_children(r, INPUTS))["Secret", "watcher-harbor-registry-secret"]
    assert len(secret["metadata"]["labels"]["app.kubernetes.io/version"]) == 63
    validate(secret, "1.25", strict=True)


def test_pull_secrets_join_the_managed_one_on_every_pod():
    def pull_secrets(resource) -> dict[str, list[str]]:
        out = {}
        for o in build_children(resource, INPUTS):
            pod = o.get("spec", {}).get("template", {}).get("spec")
            if pod is not None:
                out[o["metadata"]["name"]] = [s["name"] for s in pod.get("imagePullSecrets", [])]
        return out

    r = load_example("minimal")
    r["spec"]["image"]["pullSecrets"] = ["other-registry", "watcher-harbor-registry-secret", "mirror"]
    got = pull_secrets(r)
    assert set(got) == {"watcher-backend", "watcher-filemon", "watcher-procmon"}
    # the managed Secret first, each name once
    assert all(v == ["watcher-harbor-registry-secret", "other-registry", "mirror"] for v in got.values()), got
    # without credentialsSecretRef only the listed ones; with neither, no imagePullSecrets at all
    del r["spec"]["image"]["credentialsSecretRef"]
    r["spec"]["image"]["pullSecrets"] = ["mirror"]
    assert all(v == ["mirror"] for v in pull_secrets(r).values())
    r["spec"]["image"]["pullSecrets"] = []
    assert all(v == [] for v in pull_secrets(r).values())
    assert target_from_resource(load_example("minimal")).spec["image"]["pullSecrets"] == []  # the default


def test_node_scope_renders_the_pod_watch_and_exactly_its_rbac():
    r = load_example("minimal")
    volume = by_key(build_children(r, INPUTS))
    pod = volume[("DaemonSet", "watcher-filemon")]["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False and "serviceAccountName" not in pod
    assert not any(k[0] in ("ServiceAccount", "Role", "RoleBinding") for k in volume)

    r["spec"]["filemon"] = {
        "scope": "node",
        "studentPods": {
            "namespace": "jcode",
            "labels": {"role": "student", "app.kubernetes.io/part-of": "jcode"},
            "workspacePattern": "^student-(?P<workspace>.+)$",
        },
    }
    objs = build_children(r, INPUTS)
    kinds = [o["kind"] for o in objs]
    # the account and its grant exist before the DaemonSet that uses them
    assert kinds.index("RoleBinding") < kinds.index("DaemonSet")
    node = by_key(objs)
    pod = node[("DaemonSet", "watcher-filemon")]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "watcher-filemon" and pod["automountServiceAccountToken"] is True
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in pod["containers"][0]["env"]}
    assert env["WATCHER_FILEMON_SCOPE"] == "node" and env["WATCHER_POD_NAMESPACE"] == "jcode"
    assert env["WATCHER_POD_SELECTOR"] == "app.kubernetes.io/part-of=jcode,role=student"
    assert env["WATCHER_POD_WORKSPACE_PATTERN"] == "^student-(?P<workspace>.+)$"
    assert env["WATCHER_NODE_NAME"] == {"fieldRef": {"apiVersion": "v1", "fieldPath": "spec.nodeName"}}
    role = node[("Role", "watcher-filemon-pods")]
    assert role["metadata"]["namespace"] == "jcode"
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]
    binding = node[("RoleBinding", "watcher-filemon-pods")]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "watcher-filemon", "namespace": "watcher"}]
    assert binding["roleRef"]["name"] == "watcher-filemon-pods"
    # no owner reference across namespaces (the garbage collector would delete them); labels say whose
    for obj in (role, binding):
        assert "ownerReferences" not in obj["metadata"]
        assert obj["metadata"]["labels"][builders.OWNER_NAMESPACE_LABEL] == "watcher"
    account = node[("ServiceAccount", "watcher-filemon")]
    assert account["metadata"]["namespace"] == "watcher" and account["metadata"]["ownerReferences"]
    # same namespace: owned like every other child
    r["spec"]["filemon"]["studentPods"] = {}
    same = by_key(build_children(r, INPUTS))
    assert same[("Role", "watcher-filemon-pods")]["metadata"]["namespace"] == "watcher"
    assert same[("Role", "watcher-filemon-pods")]["metadata"]["ownerReferences"]
    env = {
        e["name"]: e.get("value")
        for e in same[("DaemonSet", "watcher-filemon")]["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert "WATCHER_POD_SELECTOR" not in env and env["WATCHER_POD_NAMESPACE"] == "watcher"
