"""Level-based reconcile of one WatcherDeployment: read the world, apply the difference, write status.

Called from the kopf handlers (create/update/resume/timer and child events). Idempotent: running it
twice in a row changes nothing the second time (children that already match are not written at all).
"""

from __future__ import annotations

import base64
import logging
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from kubernetes.utils import parse_quantity

from watcher_core import cell_tokens
from watcher_operator import builders
from watcher_operator.builders import Inputs, Target, build_children, names, target_from_resource
from watcher_operator.conditions import now_rfc3339
from watcher_operator.crd import API_VERSION, KIND
from watcher_operator.kubeapi import ApiError, Kube
from watcher_operator.rollout import BackendRollout, Hold
from watcher_operator.status import WAIT_REASON, Problem, compute_status, latest_event, pods_missing

log = logging.getLogger("watcher_operator")

SERVICE_MONITOR_CRD = "servicemonitors.monitoring.coreos.com"
PROMETHEUS_RULE_CRD = "prometheusrules.monitoring.coreos.com"
# Children of a CRD kind: made only while their CRD exists, and pruned only then (else there is nothing to list)
CRD_OF_KIND = {"ServiceMonitor": SERVICE_MONITOR_CRD, "PrometheusRule": PROMETHEUS_RULE_CRD}


@dataclass
class Outcome:
    actions: list[str] = field(default_factory=list)  # what was changed, one line each (-> Events)
    problems: list[Problem] = field(default_factory=list)
    status: dict | None = None
    gone: bool = False  # the resource no longer exists / is being deleted
    hold: Hold | None = None  # agent DaemonSets left at their old version until the backend has rolled out
    previous_degraded: str = ""  # the Degraded message before this reconcile

    @property
    def new_problems(self) -> list[Problem]:
        """Problems not already reported (events only for news, not on every resync)."""
        return [p for p in self.problems if p.message not in self.previous_degraded]

    @property
    def blocking(self) -> list[Problem]:
        return [p for p in self.problems if p.blocking]


def is_subset(desired, live) -> bool:
    """True when every field we set already has our value in the live object (server defaults ignored)."""
    if isinstance(desired, dict):
        return isinstance(live, dict) and all(k in live and is_subset(v, live[k]) for k, v in desired.items())
    if isinstance(desired, list):
        return (
            isinstance(live, list) and len(desired) == len(live) and all(is_subset(d, x) for d, x in zip(desired, live))
        )
    if desired == live:
        return True
    # the API server may normalise quantities ("0.5" -> "500m"); compare their values
    if isinstance(desired, (str, int)) and isinstance(live, (str, int)) and not isinstance(desired, bool):
        try:
            return parse_quantity(desired) == parse_quantity(live)
        except (ValueError, TypeError):
            return False
    return False


def _owned_by(obj: dict, uid: str) -> bool:
    return any(ref.get("uid") == uid for ref in obj["metadata"].get("ownerReferences") or [])


def _ours_elsewhere(obj: dict, t: Target) -> bool:
    """A child in another namespace (no owner reference possible): ours by its instance and manager labels."""
    labels = obj["metadata"].get("labels") or {}
    return (
        obj["metadata"].get("namespace") != t.namespace
        and labels.get("app.kubernetes.io/instance") == t.name
        and labels.get(builders.OWNER_NAMESPACE_LABEL) == t.namespace
        and labels.get("app.kubernetes.io/managed-by") == builders.MANAGER
    )


def _decode(secret: dict, key: str) -> str | None:
    raw = (secret.get("data") or {}).get(key)
    if raw is None:
        return None
    try:
        return base64.b64decode(raw).decode()
    except (ValueError, UnicodeDecodeError):
        return None


class Reconciler:
    def __init__(
        self,
        kube: Kube,
        *,
        now: Callable[[], str] = now_rfc3339,
        token_factory: Callable[[], str] = lambda: secrets.token_urlsafe(32),
    ):
        self.kube = kube
        self.now = now
        self.token_factory = token_factory
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    def _lock(self, namespace: str, name: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(f"{namespace}/{name}", threading.Lock())

    def _fresh(self, namespace: str, name: str) -> dict | None:
        obj = self.kube.get(API_VERSION, KIND, namespace, name)
        if obj is None or obj["metadata"].get("deletionTimestamp"):
            return None
        return obj

    # --- entry points ---------------------------------------------------------------------------------
    def reconcile(self, namespace: str, name: str) -> Outcome:
        with self._lock(namespace, name):
            return self._reconcile_locked(namespace, name)

    def _reconcile_locked(self, namespace: str, name: str) -> Outcome:
        resource = self._fresh(namespace, name)
        if resource is None:
            return Outcome(gone=True)
        t = target_from_resource(resource)
        out = Outcome()
        for c in (resource.get("status") or {}).get("conditions") or []:
            if c.get("type") == "Degraded" and c.get("status") == "True":
                out.previous_degraded = c.get("message", "")
        if t.spec["paused"]:
            out.problems.append(
                Problem(
                    "Paused",
                    "spec.paused is true: the operator creates, changes and deletes nothing until it is false",
                )
            )
            out.status = self._write_status(t, resource, out.problems)
            return out
        inputs = self._gather_inputs(t, out)
        if not out.blocking:
            desired = build_children(resource, inputs)
            out.hold = builders.agents_held(t, inputs)
            self._apply_all(t, desired, out)
            self._prune(t, desired, out)
        out.status = self._write_status(t, resource, out.problems, out.hold)
        return out

    def refresh_status(self, namespace: str, name: str) -> Outcome:
        """Recompute status only (a child's status changed); problems seen by the last reconcile stay.
        While agents wait for the backend's rollout, a full reconcile instead: the backend's status
        changing is what releases them."""
        with self._lock(namespace, name):
            # read under the lock: a reconcile that has just put the agents on hold must not be undone
            # by a status written from what was read before it
            resource = self._fresh(namespace, name)
            if resource is None:
                return Outcome(gone=True)
            progressing = next(
                (c for c in (resource.get("status") or {}).get("conditions") or [] if c.get("type") == "Progressing"),
                None,
            )
            if progressing and progressing.get("reason") == WAIT_REASON and progressing.get("status") == "True":
                return self._reconcile_locked(namespace, name)
            t = target_from_resource(resource)
            degraded = next(
                (c for c in (resource.get("status") or {}).get("conditions") or [] if c.get("type") == "Degraded"), None
            )
            problems = []
            ready = next(
                (c for c in (resource.get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"), None
            )
            if degraded and degraded.get("status") == "True":
                blocking = bool(ready and ready.get("reason") == degraded.get("reason"))
                problems.append(Problem(degraded.get("reason", "Degraded"), degraded.get("message", ""), blocking))
            return Outcome(status=self._write_status(t, resource, problems), problems=problems)

    # --- steps ----------------------------------------------------------------------------------------
    def _gather_inputs(self, t: Target, out: Outcome) -> Inputs:
        spec, ns = t.spec, t.namespace
        username = password = None
        ref = spec["image"].get("credentialsSecretRef")
        if ref:
            secret = self.kube.get("v1", "Secret", ns, ref["name"])
            hint = (
                f"create it: kubectl -n {ns} create secret generic {ref['name']} "
                f"--from-literal=username=<user> --from-literal=password=<password>"
            )
            if secret is None:
                out.problems.append(
                    Problem(
                        "CredentialsSecretMissing",
                        f"registry credentials Secret {ns}/{ref['name']} not found; {hint}",
                        True,
                    )
                )
            else:
                username, password = _decode(secret, "username"), _decode(secret, "password")
                if not username or password is None:
                    out.problems.append(
                        Problem(
                            "CredentialsSecretInvalid",
                            f"Secret {ns}/{ref['name']} needs the keys `username` and `password`; {hint}",
                            True,
                        )
                    )
        for name in spec["image"].get("pullSecrets") or []:
            if self.kube.get("v1", "Secret", ns, name) is None:
                out.problems.append(
                    Problem(
                        "PullSecretMissing",
                        f"image pull Secret {ns}/{name} (spec.image.pullSecrets) not found: pods that need it "
                        f"cannot pull their image; create it (kubectl -n {ns} create secret docker-registry "
                        f"{name} ...) or remove it from the list",
                    )
                )
        db = spec["backend"].get("database")
        if db:
            secret = self.kube.get("v1", "Secret", ns, db["secretRef"]["name"])
            key = db["secretRef"].get("key", "url")
            if secret is None or key not in (secret.get("data") or {}):
                out.problems.append(
                    Problem(
                        "DatabaseSecretMissing",
                        f"database Secret {ns}/{db['secretRef']['name']} with key `{key}` not found",
                        True,
                    )
                )
        if int(spec["backend"]["replicas"]) > 1 and not db:
            out.problems.append(
                Problem(
                    "SingleWriterDatabase",
                    f"backend.replicas is {spec['backend']['replicas']} but SQLite allows a single "
                    f"writer: running 1 replica; set backend.database (PostgreSQL) to scale",
                )
            )
        platform = spec.get("platform") or {}
        if (
            ("namespaceSelector" in platform or "podSelector" in platform)
            and not platform.get("sourceCIDRs")
            and not spec["networkPolicy"]["enabled"]
        ):
            out.problems.append(
                Problem(
                    "PlatformReadsNeedNetworkPolicy",
                    "spec.platform is set but spec.networkPolicy.enabled is false: token-less "
                    "reads of the old API stay off, as they would be open to every pod; enable "
                    "the NetworkPolicy or list spec.platform.sourceCIDRs",
                )
            )
        tokens = self._tokens(t, out)
        notebook_key = self._notebook_key(t, out)
        self._check_storage_classes(t, out)
        if not spec["workspace"]["create"]:
            claim = spec["workspace"]["claimName"]
            if self.kube.get("v1", "PersistentVolumeClaim", ns, claim) is None and spec["filemon"]["enabled"]:
                out.problems.append(
                    Problem(
                        "WorkspaceClaimMissing",
                        f"workspace claim {ns}/{claim} not found: filemon pods cannot start "
                        f"(create it, or set spec.workspace.create: true)",
                    )
                )
        monitors = rules = False
        if spec["monitoring"]["serviceMonitors"]:
            monitors = self._crd_available(SERVICE_MONITOR_CRD, "ServiceMonitorCheckFailed", out)
            if spec["monitoring"]["prometheusRules"]:
                rules = self._crd_available(PROMETHEUS_RULE_CRD, "PrometheusRuleCheckFailed", out)
        backend = self.kube.get("apps/v1", "Deployment", ns, names(t.name)["backend"])
        agent_versions: dict[str, str | None] = {}
        for comp in ("filemon", "procmon"):
            live = self.kube.get("apps/v1", "DaemonSet", ns, names(t.name)[comp])
            if live is not None:
                agent_versions[comp] = (live["metadata"].get("labels") or {}).get(builders.rollout.VERSION_LABEL)
        return Inputs(
            backend_rollout=BackendRollout.from_deployment(backend) if backend is not None else None,
            agent_versions=agent_versions,
            registry_username=username,
            registry_password=password,
            tokens=tokens,
            notebook_key=notebook_key,
            service_monitors_available=monitors,
            prometheus_rules_available=rules,
        )

    def _crd_available(self, crd: str, reason: str, out: Outcome) -> bool:
        try:
            return self.kube.crd_exists(crd)
        except ApiError as err:  # no permission to read CRDs: behave as if absent, but say so
            out.problems.append(Problem(reason, f"cannot check for {crd}: {err}"))
            return False

    def _notebook_key(self, t: Target, out: Outcome) -> str | None:
        nb, ns = t.spec["notebook"], t.namespace
        if not nb["enabled"]:
            return None
        if nb.get("studentPods") is None and t.spec["networkPolicy"]["enabled"]:
            out.problems.append(
                Problem(
                    "NotebookStudentPodsUnset",
                    "spec.notebook is enabled but spec.notebook.studentPods is unset: the "
                    "NetworkPolicy drops the student kernels' cell posts; select the student pods",
                )
            )
        if nb.get("keySecretName"):
            name = nb["keySecretName"]
            key = _decode(self.kube.get("v1", "Secret", ns, name) or {}, builders.NOTEBOOK_KEY_KEY) or ""
            if len(key.strip()) < cell_tokens.MIN_KEY_LENGTH:
                out.problems.append(
                    Problem(
                        "NotebookKeySecretInvalid",
                        f"notebook key Secret {ns}/{name} must exist with key "
                        f"`{builders.NOTEBOOK_KEY_KEY}` of at least {cell_tokens.MIN_KEY_LENGTH} "
                        f"characters (e.g. openssl rand -hex 32)",
                        True,
                    )
                )
            return None
        # generated once, then read back: a new key would invalidate every token the pods were given
        live = self.kube.get("v1", "Secret", ns, names(t.name)["notebook_key_secret"])
        return (_decode(live, builders.NOTEBOOK_KEY_KEY) if live else None) or secrets.token_hex(32)

    def _tokens(self, t: Target, out: Outcome) -> dict[str, str] | None:
        ns = t.namespace
        if t.spec["backend"].get("tokensSecretName"):
            name = t.spec["backend"]["tokensSecretName"]
            secret = self.kube.get("v1", "Secret", ns, name)
            missing = [k for k in builders.TOKEN_KEYS.values() if k not in ((secret or {}).get("data") or {})]
            if secret is None or missing:
                out.problems.append(
                    Problem(
                        "TokensSecretInvalid",
                        f"tokens Secret {ns}/{name} must exist with keys {', '.join(builders.TOKEN_KEYS.values())}",
                        True,
                    )
                )
            return None
        # generated once, then read back: a reconcile never rotates tokens the agents already use
        live = self.kube.get("v1", "Secret", ns, names(t.name)["tokens_secret"])
        tokens = {}
        for which, key in builders.TOKEN_KEYS.items():
            value = _decode(live, key) if live else None
            tokens[which] = value or self.token_factory()
        return tokens

    def _check_storage_classes(self, t: Target, out: Outcome) -> None:
        spec, n = t.spec, names(t.name)
        wanted = [
            (n["filemon_pvc"], spec["filemon"]["storage"].get("storageClassName") or spec["storageClassName"]),
        ]
        if builders.uses_sqlite(t):
            wanted.insert(
                0, (n["backend_pvc"], spec["backend"]["storage"].get("storageClassName") or spec["storageClassName"])
            )
        if spec["workspace"]["create"]:
            wanted.append(
                (spec["workspace"]["claimName"], spec["workspace"].get("storageClassName") or spec["storageClassName"])
            )
        seen: dict[str, bool] = {}
        for claim, sc in wanted:
            if self.kube.get("v1", "PersistentVolumeClaim", t.namespace, claim) is not None:
                continue  # the class of an existing claim is whatever it was created with
            if sc not in seen:
                try:
                    seen[sc] = self.kube.get("storage.k8s.io/v1", "StorageClass", None, sc) is not None
                except ApiError as err:
                    log.warning("cannot read StorageClass %s (%s); assuming it exists", sc, err)
                    seen[sc] = True
            if not seen[sc]:
                out.problems.append(
                    Problem(
                        "StorageClassNotFound",
                        f"StorageClass {sc!r} (for claim {claim}) does not exist; install it "
                        f"(e.g. Longhorn) or set spec.storageClassName",
                        True,
                    )
                )

    def _apply_all(self, t: Target, desired: list[dict], out: Outcome) -> None:
        held = {names(t.name)[c] for c in out.hold.components} if out.hold else set()
        for obj in desired:
            kind, name = obj["kind"], obj["metadata"]["name"]
            if kind == "DaemonSet" and name in held:
                continue  # kept at its old version: the backend goes first (Progressing says so)
            try:
                if kind == "PersistentVolumeClaim":
                    self._ensure_claim(t, obj, out)
                    continue
                live = self.kube.get(obj["apiVersion"], kind, obj["metadata"]["namespace"], name)
                if live is not None and is_subset(obj, live):
                    continue
                self.kube.apply(obj)
                out.actions.append(f"{'updated' if live else 'created'} {kind} {name}")
            except ApiError as err:
                out.problems.append(Problem("ApplyFailed", f"{kind} {name}: {err}"))

    def _ensure_claim(self, t: Target, obj: dict, out: Outcome) -> None:
        """Claims are created once; afterwards only the size may grow (volume expansion)."""
        name = obj["metadata"]["name"]
        live = self.kube.get("v1", "PersistentVolumeClaim", t.namespace, name)
        if live is None:
            self.kube.apply(obj)
            out.actions.append(f"created PersistentVolumeClaim {name}")
            return
        want_modes, have_modes = obj["spec"]["accessModes"], live["spec"].get("accessModes")
        if want_modes != have_modes:
            out.problems.append(
                Problem(
                    "AccessModeImmutable",
                    f"claim {name} is {','.join(have_modes or [])} but the spec asks "
                    f"{','.join(want_modes)}; access modes cannot change on a claim: copy the "
                    f"data to a new claim, or revert the spec",
                )
            )
        want = obj["spec"]["resources"]["requests"]["storage"]
        have = live["spec"].get("resources", {}).get("requests", {}).get("storage", "0")
        if parse_quantity(want) < parse_quantity(have):
            out.problems.append(Problem("ShrinkRefused", f"claim {name} is {have}; it cannot shrink to {want}"))
        elif parse_quantity(want) > parse_quantity(have):
            try:
                self.kube.merge_patch(
                    "v1",
                    "PersistentVolumeClaim",
                    t.namespace,
                    name,
                    {"spec": {"resources": {"requests": {"storage": want}}}},
                )
                out.actions.append(f"expanding PersistentVolumeClaim {name} from {have} to {want}")
            except ApiError as err:
                out.problems.append(
                    Problem(
                        "ExpansionFailed",
                        f"claim {name} cannot grow from {have} to {want}: {(err.message or str(err)).splitlines()[0]}",
                    )
                )
        # ownership follows spec.deleteClaimsOnDelete; labels are ours to keep
        refs = [r for r in live["metadata"].get("ownerReferences") or [] if r.get("uid") != t.uid]
        wanted_refs = refs + obj["metadata"].get("ownerReferences", [])
        labels_ok = is_subset(obj["metadata"]["labels"], live["metadata"].get("labels") or {})
        if wanted_refs != (live["metadata"].get("ownerReferences") or []) or not labels_ok:
            self.kube.merge_patch(
                "v1",
                "PersistentVolumeClaim",
                t.namespace,
                name,
                {"metadata": {"labels": obj["metadata"]["labels"], "ownerReferences": wanted_refs or None}},
            )
            out.actions.append(f"updated PersistentVolumeClaim {name} metadata")

    def _prune(self, t: Target, desired: list[dict], out: Outcome) -> None:
        wanted = {(o["kind"], o["metadata"]["name"]) for o in desired}
        n = names(t.name)
        crd_known: dict[str, bool] = {}
        for api_version, kind, key in builders.managed_kinds():
            name = n[key]
            if (kind, name) in wanted:
                continue
            if kind in CRD_OF_KIND:
                crd = CRD_OF_KIND[kind]
                if crd not in crd_known:
                    try:
                        crd_known[crd] = self.kube.crd_exists(crd)
                    except ApiError:
                        crd_known[crd] = False
                if not crd_known[crd]:
                    continue
            ns = builders.child_namespace(t, key)
            try:
                live = self.kube.get(api_version, kind, ns, name)
                if live is not None and (_owned_by(live, t.uid) or _ours_elsewhere(live, t)):
                    self.kube.delete(api_version, kind, ns, name)
                    out.actions.append(f"deleted {kind} {name} (no longer in the spec)")
            except ApiError as err:
                out.problems.append(Problem("PruneFailed", f"{kind} {name}: {err}"))

    def _latest_failed_create(self, ds: dict) -> dict | None:
        meta = ds["metadata"]
        if not meta.get("uid"):
            return None
        try:  # by uid: not the events of a deleted DaemonSet of the same name
            events = self.kube.list_objects(
                "v1", "Event", meta["namespace"], field_selector=f"involvedObject.uid={meta['uid']},reason=FailedCreate"
            )
        except ApiError as err:  # e.g. the RBAC of an older chart cannot list events: the status says less
            log.debug("cannot read the FailedCreate events of DaemonSet %s: %s", meta["name"], err)
            return None
        return latest_event(events)

    def _write_status(self, t: Target, resource: dict, problems: list[Problem], hold: Hold | None = None) -> dict:
        n = names(t.name)
        workloads = {
            "backend": self.kube.get("apps/v1", "Deployment", t.namespace, n["backend"]),
            "filemon": self.kube.get("apps/v1", "DaemonSet", t.namespace, n["filemon"]),
            "procmon": self.kube.get("apps/v1", "DaemonSet", t.namespace, n["procmon"]),
        }
        # why a DaemonSet has no pods is only in its FailedCreate Events: read them only then
        failed_creates = {
            comp: self._latest_failed_create(workloads[comp])
            for comp in ("filemon", "procmon")
            if t.spec[comp]["enabled"] and pods_missing(workloads[comp])
        }
        previous = resource.get("status") or {}
        status = compute_status(t, workloads, problems, previous, self.now(), failed_creates, hold)
        current = {k: previous.get(k) for k in status}
        if current != status:
            self.kube.merge_patch(API_VERSION, KIND, t.namespace, t.name, {"status": status}, subresource="status")
        return status
