"""Pure functions: a WatcherDeployment (dict) -> the manifests of its children (dicts).

No API calls here. What the builders cannot know from the resource itself (the registry credentials read
from the referenced Secret, the generated tokens, whether the ServiceMonitor CRD exists) is passed in.
Every child is named after the resource, so a resource named `watcher` yields the names of the
deployment guide: watcher-backend, watcher-backend-service, watcher-backend-pvc, watcher-filemon,
watcher-filemon-storage-pvc, watcher-procmon, watcher-harbor-registry-secret.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
from dataclasses import dataclass, field
from importlib import resources

from watcher_operator import alerts, rollout
from watcher_operator.crd import API_VERSION, KIND
from watcher_operator.defaults import spec_with_defaults

MANAGER = "watcher-operator"
# on children in another namespace (no owner reference there): the namespace of the resource they belong to
OWNER_NAMESPACE_LABEL = "watcher.jcode.io/owner-namespace"
PART_OF = "jcode-watcher"

# Paths inside the containers (the components' documented defaults).
WORKSPACE_MOUNT = "/watcher/codes"
SNAPSHOT_MOUNT = "/watcher/snapshots"
BACKEND_DATA_MOUNT = "/app/data"
SQLITE_URL = f"sqlite:///{BACKEND_DATA_MOUNT}/watcher.db"
FILEMON_STATE_DIR = "/var/lib/watcher/filemon"
PROCMON_STATE_DIR = "/var/lib/watcher/procmon"

# Unprivileged uid/gid of the backend (the image creates it; fsGroup makes the data claim writable).
BACKEND_UID = 10001

TOKEN_KEYS = {"ingest": "ingest-token", "read": "read-token", "admin": "admin-token"}
NOTEBOOK_KEY_KEY = "notebook-key"
# The startup file's name in the hook ConfigMap: IPython runs startup files in name order.
HOOK_FILE_NAME = "00-jcode-watcher.py"
# What kube-prometheus-stack's Grafana sidecar looks for in ConfigMaps (its sidecar.dashboards.label default).
DASHBOARD_LABEL = {"grafana_dashboard": "1"}

# procmon's capabilities (see docs/procmon.md). BPF + PERFMON load and attach the tracepoint programs
# (kernel >= 5.8), SYS_RESOURCE lifts the memlock limit for BPF maps on kernels < 5.11, SYS_PTRACE reads
# /proc/<pid>/{cwd,exe,environ} of other users' processes, NET_ADMIN opens the netlink process connector
# (the fallback when eBPF is not available).
PROCMON_CAPABILITIES = ["BPF", "PERFMON", "SYS_RESOURCE", "SYS_PTRACE", "NET_ADMIN"]
PROCMON_LEGACY_CAPABILITIES = ["SYS_ADMIN", "SYS_RESOURCE", "SYS_PTRACE", "NET_ADMIN"]


@dataclass(frozen=True)
class Target:
    """The resource the children belong to, with its spec defaulted."""

    name: str
    namespace: str
    uid: str
    spec: dict
    generation: int = 0

    @property
    def owner_reference(self) -> dict:
        return {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


@dataclass(frozen=True)
class Inputs:
    """What the builders need from outside the resource (read by the reconciler)."""

    registry_username: str | None = None
    registry_password: str | None = None
    tokens: dict[str, str] | None = None  # generate-once tokens {"ingest":..., "read":..., "admin":...}
    notebook_key: str | None = None  # generate-once key of the notebook tokens (spec.notebook)
    service_monitors_available: bool = False
    prometheus_rules_available: bool = False
    # the live backend Deployment (None: absent) and the version label of each live agent DaemonSet:
    # the rollout order holds the agents until the backend runs the new version (watcher_operator.rollout)
    backend_rollout: rollout.BackendRollout | None = None
    agent_versions: dict[str, str | None] = field(default_factory=dict)


def target_from_resource(resource: dict) -> Target:
    meta = resource.get("metadata") or {}
    return Target(
        name=meta["name"],
        namespace=meta.get("namespace") or "default",
        uid=meta.get("uid", ""),
        spec=spec_with_defaults(resource.get("spec")),
        generation=int(meta.get("generation") or 0),
    )


# --- names --------------------------------------------------------------------------------------------


def names(name: str) -> dict[str, str]:
    return {
        "backend": f"{name}-backend",
        "backend_service": f"{name}-backend-service",
        "backend_pvc": f"{name}-backend-pvc",
        "filemon": f"{name}-filemon",
        "filemon_pvc": f"{name}-filemon-storage-pvc",
        "filemon_account": f"{name}-filemon",
        "filemon_pods_role": f"{name}-filemon-pods",
        "procmon": f"{name}-procmon",
        "registry_secret": f"{name}-harbor-registry-secret",
        "tokens_secret": f"{name}-tokens",
        "notebook_key_secret": f"{name}-notebook-key",
        "hook_config": f"{name}-hook-config",
        "network_policy": f"{name}-backend",
        "agents_network_policy": f"{name}-agents",
        "backend_monitor": f"{name}-backend-monitor",
        "filemon_monitor": f"{name}-filemon-monitor",
        "procmon_monitor": f"{name}-procmon-monitor",
        "prometheus_rule": f"{name}-alerts",
        "dashboard": f"{name}-dashboard",
    }


def backend_url(t: Target) -> str:
    return f"http://{names(t.name)['backend_service']}.{t.namespace}.svc.cluster.local:{t.spec['backend']['port']}"


def tokens_secret_name(t: Target) -> str:
    return t.spec["backend"].get("tokensSecretName") or names(t.name)["tokens_secret"]


def notebook_key_secret_name(t: Target) -> str:
    return t.spec["notebook"].get("keySecretName") or names(t.name)["notebook_key_secret"]


# --- metadata helpers ---------------------------------------------------------------------------------


def version_label(t: Target, component: str) -> str:
    """The component's image tag (its override, else spec.image.tag) as a label value: at most 63
    characters, alphanumeric at both ends."""
    over = (t.spec.get(component) or {}).get("image") or {}
    tag = over.get("tag") or t.spec["image"]["tag"]
    return tag[:63].strip("._-") or "unknown"


def labels(t: Target, component: str) -> dict[str, str]:
    return {
        "app": f"{t.name}-{component}",
        "app.kubernetes.io/name": "watcher",
        "app.kubernetes.io/instance": t.name,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/managed-by": MANAGER,
        # the version the resource runs (one tag for every component); selectors never use it
        "app.kubernetes.io/version": version_label(t, component),
    }


def selector(t: Target, component: str) -> dict[str, str]:
    # `app` is what the guide's `kubectl logs -l app=watcher-backend` uses; selectors are immutable, so
    # keep them to this one label forever.
    return {"app": f"{t.name}-{component}"}


def metadata(t: Target, name: str, component: str, *, owned: bool = True) -> dict:
    meta: dict = {"name": name, "namespace": t.namespace, "labels": labels(t, component)}
    if owned:
        meta["ownerReferences"] = [t.owner_reference]
    return meta


def image(t: Target, component: str) -> str:
    glob = t.spec["image"]
    over = t.spec.get(component, {}).get("image") or {}
    registry = (over.get("registry") or glob["registry"]).rstrip("/")
    repo = over.get("name") or f"watcher-{component}"
    tag = over.get("tag") or glob["tag"]
    return f"{registry}/{repo}:{tag}"


def registry_hosts(t: Target) -> list[str]:
    hosts = [t.spec["image"]["registry"].split("/")[0]]
    for component in ("backend", "filemon", "procmon"):
        over = (t.spec.get(component, {}).get("image") or {}).get("registry")
        if over and over.split("/")[0] not in hosts:
            hosts.append(over.split("/")[0])
    return hosts


def _pull_secrets(t: Target) -> list[dict]:
    """The Secret the operator renders (credentialsSecretRef), then spec.image.pullSecrets, each once."""
    wanted = [names(t.name)["registry_secret"]] if t.spec["image"].get("credentialsSecretRef") else []
    for name in t.spec["image"].get("pullSecrets") or []:
        if name not in wanted:
            wanted.append(name)
    return [{"name": name} for name in wanted]


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _resources(spec_resources: dict) -> dict:
    return {k: dict(v) for k, v in spec_resources.items() if v}


def _scheduling(pod_spec: dict, component_spec: dict) -> None:
    if component_spec.get("nodeSelector"):
        pod_spec["nodeSelector"] = dict(component_spec["nodeSelector"])
    if component_spec.get("tolerations"):
        pod_spec["tolerations"] = [dict(x) for x in component_spec["tolerations"]]


def _token_env(t: Target, env_name: str, which: str) -> dict:
    return {"name": env_name, "valueFrom": {"secretKeyRef": {"name": tokens_secret_name(t), "key": TOKEN_KEYS[which]}}}


def _node_name_env() -> dict:
    return {"name": "WATCHER_NODE_NAME", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "spec.nodeName"}}}


def _http_probe(path: str, port: str, *, period: int, failures: int, delay: int = 5) -> dict:
    return {
        "httpGet": {"path": path, "port": port, "scheme": "HTTP"},
        "initialDelaySeconds": delay,
        "periodSeconds": period,
        "timeoutSeconds": 3,
        "failureThreshold": failures,
        "successThreshold": 1,
    }


def _restricted_container_security(*, run_as_root: bool, add: list[str] | None = None) -> dict:
    sc: dict = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}
    if add:
        sc["capabilities"]["add"] = list(add)
    if not run_as_root:
        sc["runAsNonRoot"] = True
    return sc


# --- children -----------------------------------------------------------------------------------------


def build_registry_secret(t: Target, username: str, password: str) -> dict:
    auth = _b64(f"{username}:{password}")
    config = {"auths": {host: {"username": username, "password": password, "auth": auth} for host in registry_hosts(t)}}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/dockerconfigjson",
        "metadata": metadata(t, names(t.name)["registry_secret"], "registry"),
        "data": {".dockerconfigjson": _b64(json.dumps(config, sort_keys=True, separators=(",", ":")))},
    }


def build_tokens_secret(t: Target, tokens: dict[str, str]) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": metadata(t, names(t.name)["tokens_secret"], "backend"),
        "data": {TOKEN_KEYS[k]: _b64(tokens[k]) for k in ("ingest", "read", "admin")},
    }


def build_notebook_key_secret(t: Target, key: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": metadata(t, names(t.name)["notebook_key_secret"], "notebook"),
        "data": {NOTEBOOK_KEY_KEY: _b64(key)},
    }


def build_hook_config(t: Target) -> dict:
    """The IPython startup file, for JCode's pod generator to mount into the student pods (as the old one)."""
    from watcher_core.notebook_cli import hook_source

    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(t, names(t.name)["hook_config"], "notebook"),
        "data": {HOOK_FILE_NAME: hook_source()},
    }


def build_pvc(t: Target, name: str, component: str, *, size: str, access_mode: str, storage_class: str | None) -> dict:
    # Data claims are not owned unless asked: deleting the WatcherDeployment must not delete student data.
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": metadata(t, name, component, owned=bool(t.spec["deleteClaimsOnDelete"])),
        "spec": {
            "accessModes": [access_mode],
            "storageClassName": storage_class or t.spec["storageClassName"],
            "volumeMode": "Filesystem",
            "resources": {"requests": {"storage": size}},
        },
    }


def build_backend_pvc(t: Target) -> dict:
    st = t.spec["backend"]["storage"]
    return build_pvc(
        t,
        names(t.name)["backend_pvc"],
        "backend",
        size=st["size"],
        access_mode=st["accessMode"],
        storage_class=st.get("storageClassName"),
    )


def build_filemon_pvc(t: Target) -> dict:
    st = t.spec["filemon"]["storage"]
    return build_pvc(
        t,
        names(t.name)["filemon_pvc"],
        "filemon",
        size=st["size"],
        access_mode=st["accessMode"],
        storage_class=st.get("storageClassName"),
    )


def build_workspace_pvc(t: Target) -> dict:
    ws = t.spec["workspace"]
    return build_pvc(
        t,
        ws["claimName"],
        "workspace",
        size=ws["size"],
        access_mode="ReadWriteMany",
        storage_class=ws.get("storageClassName"),
    )


def uses_sqlite(t: Target) -> bool:
    """No external database: the backend keeps SQLite on its claim <name>-backend-pvc."""
    return not t.spec["backend"].get("database")


def backend_replicas(t: Target) -> int:
    """SQLite allows one writer: without an external database the backend runs a single replica."""
    wanted = int(t.spec["backend"]["replicas"])
    return min(wanted, 1) if uses_sqlite(t) else wanted


def build_backend_deployment(t: Target) -> dict:
    b = t.spec["backend"]
    n = names(t.name)
    port = int(b["port"])
    args = ["backend", "--host", "0.0.0.0", "--port", str(port), "--snapshot-dir", SNAPSHOT_MOUNT]
    env: list[dict] = []
    # SQLite: a flag; PostgreSQL: an env var from the Secret. Never one env entry switching between `value`
    # and `valueFrom`: server-side apply merges env entries by name and would keep an empty valueFrom.
    if b.get("database"):
        ref = b["database"]["secretRef"]
        env.append(
            {
                "name": "WATCHER_DATABASE_URL",
                "valueFrom": {"secretKeyRef": {"name": ref["name"], "key": ref.get("key", "url")}},
            }
        )
    else:
        args += ["--database-url", SQLITE_URL]
    if platform_reads_from(t):
        env.append({"name": "WATCHER_LEGACY_READS_FROM", "value": platform_reads_from(t)})
    # Only when set: the backend's own default (no variable) is "keep everything".
    if b.get("retentionDays") is not None:
        env.append({"name": "WATCHER_RETENTION_DAYS", "value": str(int(b["retentionDays"]))})
    if b.get("workers") is not None:
        env.append({"name": "WATCHER_WORKERS", "value": str(int(b["workers"]))})
    if t.spec["notebook"]["enabled"]:
        env.append(
            {
                "name": "WATCHER_NOTEBOOK_KEY",
                "valueFrom": {"secretKeyRef": {"name": notebook_key_secret_name(t), "key": NOTEBOOK_KEY_KEY}},
            }
        )
    for field_name, variable in (
        ("legacySnapshotTimeZone", "WATCHER_LEGACY_SNAPSHOT_TZ"),
        ("legacyNaiveTimeZone", "WATCHER_LEGACY_NAIVE_TZ"),
    ):
        if b.get(field_name):
            env.append({"name": variable, "value": b[field_name]})
    container = {
        "name": "backend",
        "image": image(t, "backend"),
        "imagePullPolicy": t.spec["image"]["pullPolicy"],
        "args": args,
        "env": [
            *env,
            {"name": "WATCHER_SNAPSHOT_DIR", "value": SNAPSHOT_MOUNT},
            _token_env(t, "WATCHER_INGEST_TOKEN", "ingest"),
            _token_env(t, "WATCHER_READ_TOKEN", "read"),
            _token_env(t, "WATCHER_ADMIN_TOKEN", "admin"),
        ],
        "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
        # Liveness: the process answers (a database outage must not restart it). Readiness: the database
        # answers too, so a pod that cannot reach it leaves the Service and the WatcherDeployment is not Ready.
        "livenessProbe": _http_probe("/health", "http", period=10, failures=6, delay=10),
        "readinessProbe": _http_probe("/ready", "http", period=5, failures=3),
        "resources": _resources(b["resources"]),
        "securityContext": _restricted_container_security(run_as_root=False),
        "volumeMounts": [
            {"name": "data", "mountPath": BACKEND_DATA_MOUNT},
            {"name": "snapshots", "mountPath": SNAPSHOT_MOUNT, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    pod_spec: dict = {
        "automountServiceAccountToken": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": BACKEND_UID,
            "runAsGroup": BACKEND_UID,
            "fsGroup": BACKEND_UID,
            "fsGroupChangePolicy": "OnRootMismatch",
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": [
            # With PostgreSQL nothing is kept here, and a ReadWriteOnce claim would hold every replica
            # but the first on that claim's node (Multi-Attach): scaling out needs no claim at all.
            {"name": "data", "persistentVolumeClaim": {"claimName": n["backend_pvc"]}}
            if uses_sqlite(t)
            else {"name": "data", "emptyDir": {"sizeLimit": "64Mi"}},
            {"name": "snapshots", "persistentVolumeClaim": {"claimName": n["filemon_pvc"], "readOnly": True}},
            {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}},
        ],
        "terminationGracePeriodSeconds": 30,
    }
    if _pull_secrets(t):
        pod_spec["imagePullSecrets"] = _pull_secrets(t)
    _scheduling(pod_spec, b)
    # A ReadWriteOnce database volume cannot be attached to the old and the new pod at once.
    strategy = (
        {"type": "Recreate"}
        if b["storage"]["accessMode"] == "ReadWriteOnce" and not b.get("database")
        else {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
    )
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(t, n["backend"], "backend"),
        "spec": {
            "replicas": backend_replicas(t),
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": selector(t, "backend")},
            "strategy": strategy,
            "template": {"metadata": {"labels": labels(t, "backend")}, "spec": pod_spec},
        },
    }


def build_service(t: Target, name: str, component: str, port: int, port_name: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(t, name, component),
        "spec": {
            "type": "ClusterIP",
            "selector": selector(t, component),
            "ports": [{"name": port_name, "port": port, "targetPort": port_name, "protocol": "TCP"}],
        },
    }


def build_backend_service(t: Target) -> dict:
    return build_service(t, names(t.name)["backend_service"], "backend", int(t.spec["backend"]["port"]), "http")


def build_filemon_service(t: Target) -> dict:
    return build_service(t, names(t.name)["filemon"], "filemon", int(t.spec["filemon"]["metricsPort"]), "metrics")


def build_procmon_service(t: Target) -> dict:
    return build_service(t, names(t.name)["procmon"], "procmon", int(t.spec["procmon"]["metricsPort"]), "metrics")


def _daemonset(t: Target, component: str, pod_spec: dict) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": metadata(t, names(t.name)[component], component),
        "spec": {
            "selector": {"matchLabels": selector(t, component)},
            "revisionHistoryLimit": 5,
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
            "template": {"metadata": {"labels": labels(t, component)}, "spec": pod_spec},
        },
    }


def build_filemon_daemonset(t: Target) -> dict:
    f = t.spec["filemon"]
    n = names(t.name)
    port = int(f["metricsPort"])
    env = [
        _node_name_env(),
        _token_env(t, "WATCHER_INGEST_TOKEN", "ingest"),
        {"name": "WATCHER_DEBOUNCE_SECONDS", "value": f"{int(f['debounceMs']) / 1000:g}"},
        {"name": "WATCHER_MAX_FILE_SIZE", "value": str(f["maxFileSize"])},
        {"name": "WATCHER_SNAPSHOT_GC_INTERVAL_SECONDS", "value": str(int(f["snapshotGcIntervalSeconds"]))},
        {"name": "WATCHER_SNAPSHOT_GC_GRACE_SECONDS", "value": str(int(f["snapshotGcGraceSeconds"]))},
    ]
    if f.get("extensions"):
        env.append({"name": "WATCHER_EXTENSIONS", "value": ",".join(f["extensions"])})
    if node_local(t):
        pods = f["studentPods"]
        env += [
            {"name": "WATCHER_FILEMON_SCOPE", "value": "node"},
            {"name": "WATCHER_POD_NAMESPACE", "value": students_namespace(t)},
        ]
        if pods.get("labels"):
            selector = ",".join(f"{k}={v}" for k, v in sorted(pods["labels"].items()))
            env.append({"name": "WATCHER_POD_SELECTOR", "value": selector})
        if pods.get("workspacePattern"):
            env.append({"name": "WATCHER_POD_WORKSPACE_PATTERN", "value": pods["workspacePattern"]})
    workspace_mount = {"name": "workspace", "mountPath": WORKSPACE_MOUNT, "readOnly": True}
    if t.spec["workspace"].get("subPath"):
        workspace_mount["subPath"] = t.spec["workspace"]["subPath"]
    container = {
        "name": "filemon",
        "image": image(t, "filemon"),
        "imagePullPolicy": t.spec["image"]["pullPolicy"],
        "args": [
            "filemon",
            "--workspace-root",
            WORKSPACE_MOUNT,
            "--snapshot-dir",
            SNAPSHOT_MOUNT,
            "--state-dir",
            FILEMON_STATE_DIR,
            "--backend-url",
            backend_url(t),
            "--metrics-port",
            str(port),
            "--node-name",
            "$(WATCHER_NODE_NAME)",
        ],
        "env": env,
        "ports": [{"name": "metrics", "containerPort": port, "protocol": "TCP"}],
        "livenessProbe": _http_probe("/healthz", "metrics", period=10, failures=6, delay=10),
        "readinessProbe": _http_probe("/healthz", "metrics", period=10, failures=3),
        "resources": _resources(f["resources"]),
        # root without DAC_OVERRIDE: owns the root-created hostPath state dir and the snapshot claim, and
        # DAC_READ_SEARCH reads student files whatever their mode; it can still not write the workspace
        # (mounted read-only) nor anything it does not own.
        "securityContext": _restricted_container_security(run_as_root=True, add=["DAC_READ_SEARCH"]),
        "volumeMounts": [
            workspace_mount,
            {"name": "snapshots", "mountPath": SNAPSHOT_MOUNT},
            {"name": "state", "mountPath": FILEMON_STATE_DIR},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    pod_spec: dict = {
        # node scope reads pods through the API with its own account's token; otherwise no token at all
        "automountServiceAccountToken": node_local(t),
        "securityContext": {"runAsUser": 0, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container],
        "volumes": [
            {
                "name": "workspace",
                "persistentVolumeClaim": {"claimName": t.spec["workspace"]["claimName"], "readOnly": True},
            },
            {"name": "snapshots", "persistentVolumeClaim": {"claimName": n["filemon_pvc"]}},
            # per-node outbox and state store: a hostPath survives pod restarts and upgrades on the node
            {"name": "state", "hostPath": {"path": FILEMON_STATE_DIR, "type": "DirectoryOrCreate"}},
            {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
        ],
        "terminationGracePeriodSeconds": 30,
    }
    if node_local(t):
        pod_spec["serviceAccountName"] = n["filemon_account"]
        # the deprecated alias too, so server-side apply removes both when the scope goes back to volume:
        # the API server copies the name into it, and alone it would keep naming the pruned account
        pod_spec["serviceAccount"] = n["filemon_account"]
    if _pull_secrets(t):
        pod_spec["imagePullSecrets"] = _pull_secrets(t)
    _scheduling(pod_spec, f)
    return _daemonset(t, "filemon", pod_spec)


def node_local(t: Target) -> bool:
    """filemon watches only the folders of its node's student pods (spec.filemon.scope: node)."""
    return bool(t.spec["filemon"]["enabled"]) and t.spec["filemon"]["scope"] == "node"


def students_namespace(t: Target) -> str:
    return t.spec["filemon"]["studentPods"].get("namespace") or t.namespace


def child_namespace(t: Target, key: str) -> str:
    """Where a child named by ``names()[key]`` lives: the pod-reading Role and its binding are in the
    students' namespace, everything else in the resource's."""
    return students_namespace(t) if key == "filemon_pods_role" else t.namespace


def build_filemon_service_account(t: Target) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": metadata(t, names(t.name)["filemon_account"], "filemon"),
        # mounted only where asked: the DaemonSet's pod spec says so
        "automountServiceAccountToken": False,
    }


def _students_metadata(t: Target, name: str) -> dict:
    ns = students_namespace(t)
    # an owner reference cannot cross namespaces (the garbage collector would delete the child at once):
    # in another namespace the operator's pruning removes it
    meta = metadata(t, name, "filemon", owned=ns == t.namespace)
    meta["namespace"] = ns
    meta["labels"][OWNER_NAMESPACE_LABEL] = t.namespace
    return meta


def build_filemon_pods_role(t: Target) -> dict:
    """Exactly what the pod watch needs: read pods, in the students' namespace only."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": _students_metadata(t, names(t.name)["filemon_pods_role"]),
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}],
    }


def build_filemon_pods_binding(t: Target) -> dict:
    n = names(t.name)
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": _students_metadata(t, n["filemon_pods_role"]),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": n["filemon_pods_role"]},
        "subjects": [{"kind": "ServiceAccount", "name": n["filemon_account"], "namespace": t.namespace}],
    }


def build_procmon_daemonset(t: Target) -> dict:
    p = t.spec["procmon"]
    port = int(p["metricsPort"])
    caps = PROCMON_LEGACY_CAPABILITIES if p["legacyKernel"] else PROCMON_CAPABILITIES
    container = {
        "name": "procmon",
        "image": image(t, "procmon"),
        "imagePullPolicy": t.spec["image"]["pullPolicy"],
        "args": [
            "procmon",
            "--workspace-root",
            WORKSPACE_MOUNT,
            "--state-dir",
            PROCMON_STATE_DIR,
            "--backend-url",
            backend_url(t),
            "--metrics-port",
            str(port),
            "--node-name",
            "$(WATCHER_NODE_NAME)",
            "--mode",
            p["mode"],
        ],
        "env": [_node_name_env(), _token_env(t, "WATCHER_INGEST_TOKEN", "ingest")],
        "ports": [{"name": "metrics", "containerPort": port, "protocol": "TCP"}],
        "livenessProbe": _http_probe("/healthz", "metrics", period=10, failures=6, delay=10),
        "readinessProbe": _http_probe("/healthz", "metrics", period=10, failures=3),
        "resources": _resources(p["resources"]),
        "securityContext": _restricted_container_security(run_as_root=True, add=caps),
        "volumeMounts": [
            {"name": "modules", "mountPath": "/lib/modules", "readOnly": True},
            {"name": "usr-src", "mountPath": "/usr/src", "readOnly": True},
            {"name": "tracefs", "mountPath": "/sys/kernel/tracing", "readOnly": True},
            {"name": "debugfs", "mountPath": "/sys/kernel/debug", "readOnly": True},
            {"name": "state", "mountPath": PROCMON_STATE_DIR},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    pod_spec: dict = {
        "automountServiceAccountToken": False,
        # host PIDs: exec/exit events carry host pids, and /proc/<pid> must resolve them
        "hostPID": True,
        # the container runtime's default seccomp profile refuses bpf()/perf_event_open() on many runtimes
        "securityContext": {"runAsUser": 0, "seccompProfile": {"type": "Unconfined"}},
        "containers": [container],
        "volumes": [
            {"name": "modules", "hostPath": {"path": "/lib/modules", "type": "Directory"}},
            {"name": "usr-src", "hostPath": {"path": "/usr/src"}},
            {"name": "tracefs", "hostPath": {"path": "/sys/kernel/tracing"}},
            {"name": "debugfs", "hostPath": {"path": "/sys/kernel/debug"}},
            {"name": "state", "hostPath": {"path": PROCMON_STATE_DIR, "type": "DirectoryOrCreate"}},
            {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
        ],
        "terminationGracePeriodSeconds": 30,
    }
    if _pull_secrets(t):
        pod_spec["imagePullSecrets"] = _pull_secrets(t)
    _scheduling(pod_spec, p)
    return _daemonset(t, "procmon", pod_spec)


def network_peer(peer: dict) -> dict:
    """A spec peer ({namespaceSelector?, podSelector?} label maps) as a NetworkPolicyPeer. Without a
    namespaceSelector the peer is this namespace's pods; with neither, every pod of this namespace."""
    out: dict = {}
    if "namespaceSelector" in peer:
        out["namespaceSelector"] = {"matchLabels": dict(peer["namespaceSelector"] or {})}
    if "podSelector" in peer or not out:
        out["podSelector"] = {"matchLabels": dict(peer.get("podSelector") or {})}
    return out


def platform_peer(t: Target) -> dict | None:
    """spec.platform as a NetworkPolicy peer, or None when it selects nothing (not configured)."""
    p = t.spec.get("platform") or {}
    if "namespaceSelector" not in p and "podSelector" not in p:
        return None
    return network_peer({k: p[k] for k in ("namespaceSelector", "podSelector") if k in p})


def student_pods_peer(t: Target) -> dict | None:
    """spec.notebook.studentPods as a NetworkPolicy peer while notebooks are on; None otherwise."""
    nb = t.spec["notebook"]
    pods = nb.get("studentPods") or {}
    if not nb["enabled"] or ("namespaceSelector" not in pods and "podSelector" not in pods):
        return None
    return network_peer(pods)


def platform_reads_from(t: Target) -> str:
    """WATCHER_LEGACY_READS_FROM for the backend: the platform's token-less reads of the old API.
    Open to every address only behind the NetworkPolicy that admits exactly the platform's pods."""
    p = t.spec.get("platform") or {}
    if p.get("sourceCIDRs"):
        return ",".join(p["sourceCIDRs"])
    if platform_peer(t) is not None and t.spec["networkPolicy"]["enabled"]:
        return "0.0.0.0/0,::/0"
    return ""


def build_network_policy(t: Target) -> dict:
    peers: list[dict] = [
        {"podSelector": {"matchLabels": selector(t, "filemon")}},
        {"podSelector": {"matchLabels": selector(t, "procmon")}},
    ]
    # The backend ServiceMonitor (on by default) is scraped by Prometheus on the backend's port: without its
    # peer the policy would drop every scrape (the agents' policy below admits it to their metrics port).
    # Decided by the spec alone, not by whether the ServiceMonitor CRD exists yet, so the policy is stable.
    wanted = [t.spec["monitoring"]["prometheusPeer"]] if t.spec["monitoring"]["serviceMonitors"] else []
    platform, students = platform_peer(t), student_pods_peer(t)
    for peer in [
        *map(network_peer, wanted),
        *([platform] if platform else []),
        *([students] if students else []),
        *map(network_peer, t.spec["networkPolicy"]["allowFrom"]),
    ]:
        if peer not in peers:  # the same peer listed in allowFrom too: once is enough
            peers.append(peer)
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(t, names(t.name)["network_policy"], "backend"),
        "spec": {
            "podSelector": {"matchLabels": selector(t, "backend")},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": peers, "ports": [{"protocol": "TCP", "port": int(t.spec["backend"]["port"])}]}],
        },
    }


def build_agents_network_policy(t: Target) -> dict:
    """filemon and procmon serve only their metrics port, and only Prometheus (while the ServiceMonitors are
    on) and spec.networkPolicy.allowFrom need it: a student pod must not read a node's counts. The kubelet's
    probes come from the node, which NetworkPolicies always admit. They make no other connection inbound."""
    agents = [c for c in ("filemon", "procmon") if t.spec[c]["enabled"]]
    monitoring = t.spec["monitoring"]
    peers = [network_peer(monitoring["prometheusPeer"])] if monitoring["serviceMonitors"] else []
    for peer in map(network_peer, t.spec["networkPolicy"]["allowFrom"]):
        if peer not in peers:
            peers.append(peer)
    ports = sorted({int(t.spec[c]["metricsPort"]) for c in agents})
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(t, names(t.name)["agents_network_policy"], "agents"),
        "spec": {
            "podSelector": {
                "matchExpressions": [
                    {"key": "app", "operator": "In", "values": [selector(t, c)["app"] for c in agents]}
                ]
            },
            "policyTypes": ["Ingress"],
            # no peers: nothing reaches them (an empty `from` would admit everyone)
            "ingress": [{"from": peers, "ports": [{"protocol": "TCP", "port": p} for p in ports]}] if peers else [],
        },
    }


def build_service_monitor(t: Target, component: str, port_name: str) -> dict:
    mon = t.spec["monitoring"]
    meta = metadata(t, names(t.name)[f"{component}_monitor"], component)
    meta["labels"].update(mon.get("labels") or {})
    endpoint: dict = {"port": port_name, "path": "/metrics", "interval": mon["interval"]}
    if component != "backend":
        # one agent pod per node: its series say which node (the alerts and the dashboard group by it)
        endpoint["relabelings"] = [
            {"action": "replace", "sourceLabels": ["__meta_kubernetes_pod_node_name"], "targetLabel": "node"}
        ]
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": meta,
        "spec": {
            "selector": {"matchLabels": selector(t, component)},
            "namespaceSelector": {"matchNames": [t.namespace]},
            "endpoints": [endpoint],
        },
    }


def build_prometheus_rule(t: Target) -> dict:
    """The alerts (watcher_operator.alerts) for this resource's components, on the ServiceMonitors' series."""
    meta = metadata(t, names(t.name)["prometheus_rule"], "alerts")
    meta["labels"].update(t.spec["monitoring"].get("labels") or {})
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": meta,
        "spec": {"groups": [alerts.rule_group(t.name, t.namespace, t.spec)]},
    }


@functools.cache
def _dashboard_template() -> str:
    # generated at `make generate` time by watcher_operator.dashboard_build (grafana-foundation-sdk)
    return resources.files("watcher_operator").joinpath("dashboard.json").read_text()


def build_dashboard_config(t: Target) -> dict:
    """The Grafana dashboard for this resource's series, in a ConfigMap Grafana's sidecar loads."""
    board = json.loads(_dashboard_template())
    # unique per resource (Grafana keeps one dashboard per uid; at most 40 characters)
    board["uid"] = "jcode-watcher-" + hashlib.sha256(f"{t.namespace}/{t.name}".encode()).hexdigest()[:12]
    board["title"] = f"JCode Watcher {t.namespace}/{t.name}"
    for var in board["templating"]["list"]:
        if var["name"] in ("namespace", "instance"):
            var["query"] = t.namespace if var["name"] == "namespace" else t.name
    meta = metadata(t, names(t.name)["dashboard"], "dashboard")
    meta["labels"].update(DASHBOARD_LABEL)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": meta,
        # the sidecar writes every dashboard ConfigMap's keys into one folder: the key names the resource
        "data": {f"jcode-watcher-{t.namespace}-{t.name}.json": json.dumps(board, indent=2, sort_keys=True)},
    }


def agents_held(t: Target, inputs: Inputs) -> rollout.Hold | None:
    """The agent DaemonSets that keep their live spec this reconcile: backend first, then the agents."""
    wanted = {c: version_label(t, c) for c in inputs.agent_versions}
    return rollout.agents_held(
        image(t, "backend"), inputs.backend_rollout, inputs.agent_versions, wanted, names(t.name)["backend"]
    )


def build_children(resource: dict, inputs: Inputs | None = None) -> list[dict]:
    """Every child the resource asks for, in apply order (what others reference comes first)."""
    inputs = inputs or Inputs()
    t = target_from_resource(resource)
    s = t.spec
    out: list[dict] = []
    if s["image"].get("credentialsSecretRef") and inputs.registry_username is not None:
        out.append(build_registry_secret(t, inputs.registry_username, inputs.registry_password or ""))
    if not s["backend"].get("tokensSecretName") and inputs.tokens:
        out.append(build_tokens_secret(t, inputs.tokens))
    if s["notebook"]["enabled"]:
        if not s["notebook"].get("keySecretName") and inputs.notebook_key:
            out.append(build_notebook_key_secret(t, inputs.notebook_key))
        out.append(build_hook_config(t))
    if s["workspace"]["create"]:
        out.append(build_workspace_pvc(t))
    if uses_sqlite(t):  # an existing claim is kept (claims are never pruned) when a database is set later
        out.append(build_backend_pvc(t))
    out += [build_filemon_pvc(t), build_backend_service(t), build_backend_deployment(t)]
    if node_local(t):
        out += [build_filemon_service_account(t), build_filemon_pods_role(t), build_filemon_pods_binding(t)]
    if s["filemon"]["enabled"]:
        out += [build_filemon_service(t), build_filemon_daemonset(t)]
    if s["procmon"]["enabled"]:
        out += [build_procmon_service(t), build_procmon_daemonset(t)]
    if s["networkPolicy"]["enabled"]:
        out.append(build_network_policy(t))
        if s["filemon"]["enabled"] or s["procmon"]["enabled"]:
            out.append(build_agents_network_policy(t))
    if s["monitoring"]["serviceMonitors"] and inputs.service_monitors_available:
        out.append(build_service_monitor(t, "backend", "http"))
        if s["filemon"]["enabled"]:
            out.append(build_service_monitor(t, "filemon", "metrics"))
        if s["procmon"]["enabled"]:
            out.append(build_service_monitor(t, "procmon", "metrics"))
        # the rules select the ServiceMonitors' series, so they come with them
        if s["monitoring"]["prometheusRules"] and inputs.prometheus_rules_available:
            out.append(build_prometheus_rule(t))
    # a ConfigMap needs no CRD; its queries read the ServiceMonitors' series
    if s["monitoring"]["serviceMonitors"] and s["monitoring"]["grafanaDashboard"]:
        out.append(build_dashboard_config(t))
    return out


def managed_kinds() -> list[tuple[str, str, str]]:
    """(apiVersion, kind, name key) of every child the operator may create, for pruning."""
    return [
        ("v1", "Secret", "registry_secret"),
        ("v1", "ConfigMap", "hook_config"),
        ("v1", "ConfigMap", "dashboard"),
        ("v1", "Service", "filemon"),
        ("v1", "ServiceAccount", "filemon_account"),
        ("rbac.authorization.k8s.io/v1", "Role", "filemon_pods_role"),
        ("rbac.authorization.k8s.io/v1", "RoleBinding", "filemon_pods_role"),
        ("v1", "Service", "procmon"),
        ("v1", "Service", "backend_service"),
        ("apps/v1", "Deployment", "backend"),
        ("apps/v1", "DaemonSet", "filemon"),
        ("apps/v1", "DaemonSet", "procmon"),
        ("networking.k8s.io/v1", "NetworkPolicy", "network_policy"),
        ("networking.k8s.io/v1", "NetworkPolicy", "agents_network_policy"),
        ("monitoring.coreos.com/v1", "ServiceMonitor", "backend_monitor"),
        ("monitoring.coreos.com/v1", "ServiceMonitor", "filemon_monitor"),
        ("monitoring.coreos.com/v1", "ServiceMonitor", "procmon_monitor"),
        ("monitoring.coreos.com/v1", "PrometheusRule", "prometheus_rule"),
    ]
