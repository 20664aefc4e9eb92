"""The WatcherDeployment CustomResourceDefinition, as data.

This module is the single source of truth for the schema: `crds/watcherdeployments.watcher.jcode.io.yaml`,
the Helm chart's copy and the Python-side defaulting (`defaults.apply_defaults`) are all derived from
`build_crd()`. `python -m watcher_operator.crd` prints the YAML; a unit test fails when the files drift.

Constraints: apiextensions.k8s.io/v1, structural schema, no CEL (`x-kubernetes-validations`), so that
Kubernetes 1.20 and later accept it. Defaults sit on every sub-object (`default: {}`) so the API server
fills the nested defaults even when the user omits the whole block.
"""

from __future__ import annotations

import sys
from typing import Any

import yaml

GROUP = "watcher.jcode.io"
VERSION = "v1alpha1"
KIND = "WatcherDeployment"
PLURAL = "watcherdeployments"
SINGULAR = "watcherdeployment"
SHORT_NAMES = ["wd"]
CRD_NAME = f"{PLURAL}.{GROUP}"
API_VERSION = f"{GROUP}/{VERSION}"

DEFAULT_REGISTRY = "harbor.jbnu.ac.kr/jdevops"
DEFAULT_STORAGE_CLASS = "longhorn"
# kube-prometheus-stack's convention: Prometheus runs in `monitoring`, its pods carry this label (set by the
# Prometheus Operator). kubernetes.io/metadata.name is set on every namespace from Kubernetes 1.21 on.
DEFAULT_PROMETHEUS_PEER = {
    "namespaceSelector": {"kubernetes.io/metadata.name": "monitoring"},
    "podSelector": {"app.kubernetes.io/name": "prometheus"},
}

# What the backend's two legacy time-zone settings accept (watcher_backend.timezones.ZONE_NAMES; the operator
# image does not carry the backend, a unit test keeps the two equal).
LEGACY_TIME_ZONES = ("UTC", "KST", "Asia/Seoul")

# Kubernetes resource.Quantity, restricted to the forms people write for sizes, CPU and memory.
QUANTITY_PATTERN = r"^[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti|P|Pi|E|Ei)?$"
DNS_1035_PATTERN = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
MAX_NAME_LENGTH = 63 - len("-backend-service")
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"


def _str(description: str, **extra: Any) -> dict:
    return {"type": "string", "description": description, **extra}


def _int(description: str, **extra: Any) -> dict:
    return {"type": "integer", "description": description, **extra}


def _bool(description: str, default: bool) -> dict:
    return {"type": "boolean", "description": description, "default": default}


def _obj(description: str, properties: dict, *, default: Any = None, required: list[str] | None = None) -> dict:
    out: dict[str, Any] = {"type": "object", "description": description, "properties": properties}
    if default is not None:
        out["default"] = default
    if required:
        out["required"] = required
    return out


def _quantity(description: str, default: str | None = None) -> dict:
    out = {"type": "string", "description": description, "pattern": QUANTITY_PATTERN}
    if default is not None:
        out["default"] = default
    return out


def _name(description: str, **extra: Any) -> dict:
    return _str(description, pattern=DNS_SUBDOMAIN_PATTERN, maxLength=253, **extra)


def _string_map(description: str, default: dict | None = None) -> dict:
    out: dict[str, Any] = {"type": "object", "description": description, "additionalProperties": {"type": "string"}}
    if default is not None:
        out["default"] = default
    return out


def _resources(description: str, requests: dict, limits: dict) -> dict:
    quantity_map = {
        "type": "object",
        "additionalProperties": {
            "x-kubernetes-int-or-string": True,
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": QUANTITY_PATTERN,
        },
    }
    return _obj(
        description,
        {
            "requests": {**quantity_map, "description": "Minimum CPU/memory the scheduler reserves."},
            "limits": {**quantity_map, "description": "Maximum CPU/memory the container may use."},
        },
        default={"requests": requests, "limits": limits},
    )


def _tolerations() -> dict:
    return {
        "type": "array",
        "description": "Pod tolerations (core/v1 Toleration), e.g. to run on tainted worker nodes.",
        "items": {
            "type": "object",
            "properties": {
                "key": {"type": "string"},
                "operator": {"type": "string", "enum": ["Exists", "Equal"]},
                "value": {"type": "string"},
                "effect": {"type": "string", "enum": ["NoSchedule", "PreferNoSchedule", "NoExecute"]},
                "tolerationSeconds": {"type": "integer", "format": "int64"},
            },
        },
    }


def _image_override(component: str) -> dict:
    return _obj(
        f"Per-component image override; unset fields fall back to spec.image. "
        f"The image is <registry>/<name>:<tag>, name defaults to watcher-{component}.",
        {
            "registry": _str("Registry and project, e.g. harbor.jbnu.ac.kr/jdevops.", minLength=1),
            "name": _str(f"Repository name (default watcher-{component}).", pattern=r"^[a-z0-9][a-z0-9._/-]*$"),
            "tag": _str("Image tag.", pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"),
        },
        default={},
    )


def _peer_properties() -> dict:
    """A NetworkPolicy peer by labels, as builders.network_peer reads it (allowFrom and prometheusPeer)."""
    return {
        "namespaceSelector": _string_map(
            "matchLabels for namespaces (empty = all namespaces; unset = this namespace only)."
        ),
        "podSelector": _string_map("matchLabels for pods (empty or unset = all pods of the selected namespaces)."),
    }


def _port(description: str, default: int) -> dict:
    return _int(description, minimum=1, maximum=65535, default=default)


def _storage(description: str, size: str, access_mode: str) -> dict:
    return _obj(
        description,
        {
            "size": _quantity(
                "Requested size. Growing it expands the claim when the storage class allows "
                "volume expansion; shrinking is refused and reported as a condition.",
                size,
            ),
            "accessMode": _str(
                "Access mode. Immutable after creation: a change is reported, not applied.",
                enum=["ReadWriteOnce", "ReadWriteMany"],
                default=access_mode,
            ),
            "storageClassName": _name("Storage class; defaults to spec.storageClassName."),
        },
        default={},
    )


def spec_schema() -> dict:
    return _obj(
        "Desired state of a JCode Watcher installation in this namespace.",
        {
            "image": _obj(
                "Where the images come from.",
                {
                    "registry": _str("Registry and project for all images.", default=DEFAULT_REGISTRY, minLength=1),
                    "tag": _str(
                        "Image tag for all components (pin a version; there is no 'latest' default).",
                        pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$",
                    ),
                    "pullPolicy": _str(
                        "Image pull policy.", enum=["Always", "IfNotPresent", "Never"], default="IfNotPresent"
                    ),
                    "credentialsSecretRef": _obj(
                        "A Secret in this namespace with keys `username` and `password` for the registry. The operator "
                        "renders <name>-harbor-registry-secret (kubernetes.io/dockerconfigjson) from it and uses it "
                        "as imagePullSecret. Omit for a public registry.",
                        {"name": _name("Secret name.")},
                        required=["name"],
                    ),
                    "pullSecrets": {
                        "type": "array",
                        "maxItems": 20,
                        "default": [],
                        "description": "Names of existing registry Secrets (kubernetes.io/dockerconfigjson) in this "
                        "namespace, added to every pod's imagePullSecrets after the one the operator renders from "
                        "credentialsSecretRef, e.g. for a component image from another registry. A missing one is "
                        "reported in the Degraded condition (PullSecretMissing).",
                        "items": _name("Secret name."),
                    },
                },
                required=["tag"],
            ),
            "storageClassName": _name(
                "Default storage class of every claim the operator creates.", default=DEFAULT_STORAGE_CLASS
            ),
            "paused": _bool(
                "Stop reconciling, e.g. while debugging or repairing a child by hand: the operator creates, "
                "changes and deletes nothing and says so in the Degraded condition (reason Paused) until this "
                "is false again. Status keeps following the workloads.",
                False,
            ),
            "deleteClaimsOnDelete": _bool(
                "Delete the data claims (backend database, snapshots, a created workspace) together with this "
                "resource. Default false: deleting a WatcherDeployment never deletes student data.",
                False,
            ),
            "workspace": _obj(
                "The students' shared workspace volume (the code-server homes), mounted read-only "
                "by filemon at /watcher/codes.",
                {
                    "claimName": _name("PersistentVolumeClaim holding the workspaces.", default="jcode-vol-pvc"),
                    "subPath": _str(
                        "Sub-directory of the claim that holds the student directories "
                        "(e.g. `workspace`); unset = the claim root.",
                        pattern=r"^([^/.][^/]*(/[^/]+)*)?$",
                    ),
                    "create": _bool("Create the claim (ReadWriteMany) instead of using an existing one.", False),
                    "size": _quantity("Size when created.", "10Gi"),
                    "storageClassName": _name("Storage class when created; defaults to spec.storageClassName."),
                },
                default={},
            ),
            "backend": _obj(
                "The central API server (Deployment <name>-backend, Service <name>-backend-service).",
                {
                    "replicas": _int(
                        "Replicas. With the default SQLite database only 1 is safe: more are reported "
                        "and run as 1; use `database` (PostgreSQL) to scale.",
                        minimum=0,
                        maximum=10,
                        default=1,
                    ),
                    "port": _port("HTTP port of the API, health and metrics.", 3000),
                    "image": _image_override("backend"),
                    "storage": _storage(
                        "Claim <name>-backend-pvc for the SQLite database, mounted at /app/data. Not made "
                        "with `database` (PostgreSQL): the replicas then need no claim.",
                        "10Gi",
                        "ReadWriteOnce",
                    ),
                    "database": _obj(
                        "Use an external database (PostgreSQL) instead of SQLite.",
                        {
                            "secretRef": _obj(
                                "Secret holding the database URL.",
                                {
                                    "name": _name("Secret name."),
                                    "key": _str(
                                        "Key holding the URL (postgresql+psycopg://...).", default="url", minLength=1
                                    ),
                                },
                                required=["name"],
                            ),
                        },
                    ),
                    "tokensSecretName": _name(
                        "Existing Secret with keys `ingest-token`, `read-token` and `admin-token`. "
                        "Unset: the operator generates <name>-tokens once and keeps it."
                    ),
                    "retentionDays": _int(
                        "Purge events (and queue their snapshot contents for filemon to remove) once "
                        "they are older than this many days (the backend's WATCHER_RETENTION_DAYS); "
                        "unset = keep everything.",
                        minimum=1,
                        maximum=36500,
                    ),
                    "workers": _int(
                        "Server processes in the backend pod, sharing its port (the backend's WATCHER_WORKERS): "
                        "one Python process serves about one core's worth of requests, so about one per core "
                        "its resources allow. Unset = 1. Unlike replicas, this is fine with SQLite.",
                        minimum=1,
                        maximum=64,
                    ),
                    "legacySnapshotTimeZone": _str(
                        "Zone of the YYYYMMDD_HHMMSS times old filemons put in the old API's snapshot URLs (the "
                        "backend's WATCHER_LEGACY_SNAPSHOT_TZ). Unset = UTC, the old agents' container clock. See "
                        "docs/legacy-api.md#time-zones.",
                        enum=list(LEGACY_TIME_ZONES),
                    ),
                    "legacyNaiveTimeZone": _str(
                        "Zone of old-API log times without an offset, from the old procmon and the notebook hook "
                        "(WATCHER_LEGACY_NAIVE_TZ). Unset = UTC, the old agents' container clock. See "
                        "docs/legacy-api.md#time-zones.",
                        enum=list(LEGACY_TIME_ZONES),
                    ),
                    "resources": _resources(
                        "Container resources.", {"cpu": "100m", "memory": "256Mi"}, {"memory": "1Gi"}
                    ),
                    "nodeSelector": _string_map("Node labels the backend pod must match."),
                    "tolerations": _tolerations(),
                },
                default={},
            ),
            "filemon": _obj(
                "The per-node file monitor (DaemonSet <name>-filemon).",
                {
                    "enabled": _bool("Run filemon.", True),
                    "metricsPort": _port("Port of /metrics and /healthz.", 9090),
                    "image": _image_override("filemon"),
                    "storage": _storage(
                        "Claim <name>-filemon-storage-pvc for snapshot contents, mounted by filemon at "
                        "/watcher/snapshots and read-only by the backend.",
                        "30Gi",
                        "ReadWriteMany",
                    ),
                    "debounceMs": _int(
                        "Quiet time after the last write before a file is snapshotted, in milliseconds "
                        "(filemon's WATCHER_DEBOUNCE_SECONDS).",
                        minimum=1,
                        maximum=60000,
                        default=300,
                    ),
                    "maxFileSize": _int(
                        "Files larger than this many bytes are not snapshotted.",
                        minimum=1,
                        maximum=104857600,
                        default=1048576,
                    ),
                    "extensions": {
                        "type": "array",
                        "description": "Tracked file extensions (with the dot). "
                        "Unset: the built-in list (.c .h .cc .cpp .hpp .py .ipynb).",
                        "items": {"type": "string", "pattern": r"^\.[A-Za-z0-9_+-]{1,16}$"},
                        "maxItems": 64,
                    },
                    "snapshotGcIntervalSeconds": _int(
                        "How often filemon removes from the snapshot store the erased contents (of erased students or "
                        "purged events) that no event refers to any more, in seconds; 0 = never "
                        "(filemon's WATCHER_SNAPSHOT_GC_INTERVAL_SECONDS).",
                        minimum=0,
                        maximum=604800,
                        default=600,
                    ),
                    "snapshotGcGraceSeconds": _int(
                        "An erased content saved within this many seconds is kept for a later run, since an event "
                        "referring to it may still be on its way (filemon's WATCHER_SNAPSHOT_GC_GRACE_SECONDS).",
                        minimum=0,
                        maximum=31536000,
                        default=86400,
                    ),
                    "resources": _resources(
                        "Container resources.", {"cpu": "50m", "memory": "128Mi"}, {"memory": "512Mi"}
                    ),
                    "nodeSelector": _string_map("Node labels selecting the worker nodes that run student pods."),
                    "tolerations": _tolerations(),
                    "scope": _str(
                        "What each filemon pod watches: `volume`, every student folder of the workspace volume; "
                        "`node`, only the folders of the student pods on its own node (a pod watch on the "
                        "Kubernetes API: the operator adds ServiceAccount <name>-filemon and, in the students' "
                        "namespace, Role and RoleBinding <name>-filemon-pods granting pods get/list/watch only). "
                        "inotify watches per node then follow the node's students, not the class "
                        "(filemon's WATCHER_FILEMON_SCOPE).",
                        enum=["volume", "node"],
                        default="volume",
                    ),
                    "studentPods": _obj(
                        "Node scope: which pods are the students' and how each names its workspace folder.",
                        {
                            "namespace": _str(
                                "The students' namespace (default: this resource's). The operator must be "
                                "allowed to manage Roles there (watch it, or all namespaces).",
                                pattern=DNS_1035_PATTERN,
                                maxLength=63,
                            ),
                            "labels": _string_map(
                                "Labels every student pod has (filemon's WATCHER_POD_SELECTOR); unset: every "
                                "pod of the namespace whose name maps to a folder."
                            ),
                            "workspacePattern": _str(
                                "A regex on the pod name whose group `workspace` (else its first group) is the "
                                "pod's folder below the workspace root (filemon's WATCHER_POD_WORKSPACE_PATTERN). "
                                "Unset: the platform's names, jcode-{course}-{section}-{student_id} with a "
                                "Deployment's suffix. A pod's annotation watcher.jcode.io/workspace wins.",
                                minLength=1,
                                maxLength=512,
                            ),
                        },
                        default={},
                    ),
                },
                default={},
            ),
            "procmon": _obj(
                "The per-node process monitor (DaemonSet <name>-procmon, eBPF).",
                {
                    "enabled": _bool("Run procmon.", True),
                    "metricsPort": _port("Port of /metrics and /healthz.", 9090),
                    "image": _image_override("procmon"),
                    "mode": _str(
                        "Tracing back end: `auto` tries eBPF and falls back to the netlink process "
                        "connector; `ebpf` or `proc-connector` force one.",
                        enum=["auto", "ebpf", "proc-connector"],
                        default="auto",
                    ),
                    "legacyKernel": _bool(
                        "Nodes run a kernel older than 5.8 (no CAP_BPF/CAP_PERFMON): grant "
                        "CAP_SYS_ADMIN instead. Leave false on current kernels.",
                        False,
                    ),
                    "resources": _resources(
                        "Container resources.", {"cpu": "50m", "memory": "128Mi"}, {"memory": "512Mi"}
                    ),
                    "nodeSelector": _string_map("Node labels selecting the worker nodes that run student pods."),
                    "tolerations": _tolerations(),
                },
                default={},
            ),
            "monitoring": _obj(
                "Prometheus Operator integration.",
                {
                    "serviceMonitors": _bool(
                        "Create a ServiceMonitor per component when the cluster has the "
                        "monitoring.coreos.com ServiceMonitor CRD.",
                        True,
                    ),
                    "prometheusRules": _bool(
                        "Create PrometheusRule <name>-alerts (the alerts of docs/operator.md#alerts, on the "
                        "ServiceMonitors' series) when serviceMonitors is true and the cluster has the "
                        "monitoring.coreos.com PrometheusRule CRD.",
                        True,
                    ),
                    "grafanaDashboard": _bool(
                        "Create ConfigMap <name>-dashboard with the Grafana dashboard of docs/operator.md#dashboard "
                        '(label grafana_dashboard: "1", which kube-prometheus-stack\'s Grafana sidecar loads from '
                        "the namespaces in its sidecar.dashboards.searchNamespace) while serviceMonitors is true.",
                        True,
                    ),
                    "interval": _str("Scrape interval.", pattern=r"^[0-9]+(ms|s|m|h)$", default="30s"),
                    "labels": _string_map(
                        "Labels on the ServiceMonitors and the PrometheusRule (what your Prometheus selects on).",
                        default={"release": "prometheus"},
                    ),
                    "prometheusPeer": _obj(
                        "The Prometheus that scrapes the ServiceMonitors: while serviceMonitors is true the NetworkPolicies "
                        "admit it to the backend's port and the agents' metrics ports. Default: kube-prometheus-stack's Prometheus pods in the "
                        "namespace `monitoring`.",
                        _peer_properties(),
                        default={k: dict(v) for k, v in DEFAULT_PROMETHEUS_PEER.items()},
                    ),
                },
                default={},
            ),
            "platform": _obj(
                "The JCode platform backend, which reads the old API (/api/...) without a token: it sends none and has "
                "no setting for one. When a selector is set, the NetworkPolicy admits these pods to the backend and the "
                "backend accepts token-less GETs of the old API (never writes, /api/v1 or admin) from sourceCIDRs, or "
                "from every address when none are listed (the NetworkPolicy is then the gate; without it the "
                "operator keeps tokens required and says so in the conditions). See docs/legacy-api.md.",
                {
                    **_peer_properties(),
                    "sourceCIDRs": {
                        "type": "array",
                        "default": [],
                        "description": "Source addresses or CIDRs the backend also checks (its "
                        "WATCHER_LEGACY_READS_FROM), e.g. the platform pods' IP pool.",
                        "items": {"type": "string", "pattern": r"^[0-9a-fA-F.:]+(/[0-9]{1,3})?$"},
                    },
                },
                default={},
            ),
            "notebook": _obj(
                "Notebook cell runs (notebook.cell events) from the IPython hook in the students' pods (docs/notebook.md). "
                "When enabled the operator renders ConfigMap <name>-hook-config with the hook (key "
                "00-jcode-watcher.py), for JCode's pod "
                "generator to mount at /home/coder/.ipython/profile_default/startup/ as before, and gives the backend "
                "the key the students' tokens are derived from.",
                {
                    "enabled": _bool("Record notebook cell runs.", False),
                    "keySecretName": _name(
                        "Existing Secret with key `notebook-key` (at least 32 characters) that the "
                        "per-student tokens are derived from; the pod generator needs it too. Unset: "
                        "the operator generates <name>-notebook-key once and keeps it (also when notebooks "
                        "are turned off again, so tokens already handed out stay valid)."
                    ),
                    "studentPods": _obj(
                        "The student pods whose kernels post their cells: the NetworkPolicy admits "
                        "them to the backend's port (their tokens admit nothing but their own cells).",
                        _peer_properties(),
                    ),
                },
                default={},
            ),
            "networkPolicy": _obj(
                "NetworkPolicy <name>-backend: only the agents, monitoring.prometheusPeer (while "
                "monitoring.serviceMonitors is true), spec.platform, spec.notebook.studentPods and the listed peers may reach the backend. "
                "NetworkPolicy <name>-agents: only monitoring.prometheusPeer (likewise) and the listed peers reach the agents' metrics ports.",
                {
                    "enabled": _bool("Create the NetworkPolicies.", True),
                    "allowFrom": {
                        "type": "array",
                        "description": "Extra peers allowed to reach the backend (and the agents' metrics ports), e.g. "
                        "the JCode platform's namespace. Each peer selects namespaces and/or pods by labels.",
                        "default": [],
                        "items": {"type": "object", "properties": _peer_properties()},
                    },
                },
                default={},
            ),
        },
        required=["image"],
    )


def _condition_schema() -> dict:
    return {
        "type": "object",
        "required": ["type", "status"],
        "description": "One aspect of the state, per the Kubernetes API conventions (docs/operator.md, Status).",
        "properties": {
            "type": {"type": "string", "description": "Ready, Progressing or Degraded."},
            "status": {"type": "string", "enum": ["True", "False", "Unknown"], "description": "Whether it holds."},
            "observedGeneration": {
                "type": "integer",
                "format": "int64",
                "description": "The metadata.generation of the spec this condition describes.",
            },
            "lastTransitionTime": {
                "type": "string",
                "format": "date-time",
                "description": "When status last changed.",
            },
            "reason": {
                "type": "string",
                "description": "Why, as one CamelCase word (e.g. CredentialsSecretMissing, DaemonSetNotReady).",
            },
            "message": {"type": "string", "description": "Why, in words: what is wrong and what to do."},
        },
    }


def _component_status() -> dict:
    return {
        "type": "object",
        "description": "Pods of one component.",
        "properties": {
            "ready": {"type": "integer", "description": "Pods ready."},
            "desired": {"type": "integer", "description": "Pods wanted."},
            "enabled": {"type": "boolean", "description": "Whether the spec runs this component."},
        },
    }


def status_schema() -> dict:
    return {
        "type": "object",
        "description": "Observed state, written by the operator.",
        "properties": {
            "observedGeneration": {
                "type": "integer",
                "format": "int64",
                "description": "The metadata.generation the operator last reconciled.",
            },
            "conditions": {
                "type": "array",
                "description": "Ready, Progressing and Degraded, one each.",
                "items": _condition_schema(),
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["type"],
            },
            "backend": {"type": "string", "description": "ready/desired backend pods"},
            "filemon": {"type": "string", "description": "ready/desired filemon pods"},
            "procmon": {"type": "string", "description": "ready/desired procmon pods"},
            "components": {
                "type": "object",
                "description": "Ready and desired pods per component, as numbers.",
                "properties": {
                    "backend": _component_status(),
                    "filemon": _component_status(),
                    "procmon": _component_status(),
                },
            },
            "backendURL": {"type": "string", "description": "The backend's address inside the cluster."},
            "tokensSecretName": {
                "type": "string",
                "description": "The Secret holding the ingest, read and admin tokens.",
            },
            # kopf keeps its handler progress here; without this the API server would prune it.
            "kopf": {
                "type": "object",
                "x-kubernetes-preserve-unknown-fields": True,
                "description": "kopf's handler progress (internal).",
            },
        },
    }


def printer_columns() -> list[dict]:
    return [
        {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
        {"name": "Backend", "type": "string", "jsonPath": ".status.backend"},
        {"name": "Filemon", "type": "string", "jsonPath": ".status.filemon"},
        {"name": "Procmon", "type": "string", "jsonPath": ".status.procmon"},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        # kubectl get wd -o wide: why it is not Ready, without kubectl describe
        {
            "name": "Reason",
            "type": "string",
            "priority": 1,
            "jsonPath": '.status.conditions[?(@.type=="Ready")].reason',
        },
        {
            "name": "Message",
            "type": "string",
            "priority": 1,
            "jsonPath": '.status.conditions[?(@.type=="Ready")].message',
        },
    ]


def build_crd() -> dict:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": CRD_NAME, "labels": {"app.kubernetes.io/part-of": "jcode-watcher"}},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": SHORT_NAMES,
                "listKind": f"{KIND}List",
                "categories": ["watcher"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": printer_columns(),
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "A JCode Watcher installation: backend, filemon and procmon in one namespace.",
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                # The longest child name is <name>-backend-service, a Service name (DNS-1035 label, at
                                # most 63 characters): so at most 47 here. Checked by the API server, not the operator.
                                "metadata": {
                                    "type": "object",
                                    "properties": {
                                        "name": {
                                            "type": "string",
                                            "maxLength": MAX_NAME_LENGTH,
                                            "pattern": DNS_1035_PATTERN,
                                        }
                                    },
                                },
                                "spec": spec_schema(),
                                "status": status_schema(),
                            },
                        }
                    },
                }
            ],
        },
    }


def crd_yaml() -> str:
    header = (
        "# Generated from operator/watcher_operator/crd.py (python -m watcher_operator.crd); do not edit.\n"
        "# Accepted by Kubernetes 1.20 and later (apiextensions.k8s.io/v1, structural, no CEL).\n"
    )
    return header + yaml.safe_dump(build_crd(), sort_keys=False, width=120)


def main() -> int:
    sys.stdout.write(crd_yaml())
    return 0


if __name__ == "__main__":
    sys.exit(main())
