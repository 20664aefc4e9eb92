"""Compute a WatcherDeployment's status from its live workloads and the reconcile's problems (pure)."""
from __future__ import annotations

from dataclasses import dataclass

from watcher_operator.builders import Target, backend_replicas, backend_url, tokens_secret_name
from watcher_operator.conditions import set_condition


@dataclass(frozen=True)
class Problem:
    """Something the operator could not do. `blocking`: the children could not be (fully) applied."""

    reason: str  # CamelCase, e.g. CredentialsSecretMissing
    message: str
    blocking: bool = False


@dataclass(frozen=True)
class Readiness:
    enabled: bool
    ready: int
    desired: int
    ok: bool
    reason: str
    message: str

    @property
    def column(self) -> str:
        return f"{self.ready}/{self.desired}" if self.enabled else "disabled"


def _rollout_pending(obj: dict) -> bool:
    st = obj.get("status") or {}
    return int(st.get("observedGeneration") or 0) < int(obj["metadata"].get("generation") or 0)


def deployment_readiness(dep: dict | None, desired: int, what: str) -> Readiness:
    if dep is None:
        return Readiness(True, 0, desired, False, "Missing", f"Deployment {what} does not exist yet")
    st = dep.get("status") or {}
    ready = int(st.get("readyReplicas") or 0)
    updated = int(st.get("updatedReplicas") or 0)
    if _rollout_pending(dep):
        return Readiness(True, ready, desired, False, "RolloutPending",
                         f"Deployment {what}: the controller has not observed the latest spec yet")
    if ready >= desired and updated >= desired:
        return Readiness(True, ready, desired, True, "Available", f"{ready}/{desired} replicas ready")
    return Readiness(True, ready, desired, False, "Progressing", f"{ready}/{desired} replicas ready, "
                     f"{updated} up to date")


def daemonset_readiness(ds: dict | None, what: str) -> Readiness:
    if ds is None:
        return Readiness(True, 0, 0, False, "Missing", f"DaemonSet {what} does not exist yet")
    st = ds.get("status") or {}
    desired = int(st.get("desiredNumberScheduled") or 0)
    ready = int(st.get("numberReady") or 0)
    updated = int(st.get("updatedNumberScheduled") or 0)
    if _rollout_pending(ds):
        return Readiness(True, ready, desired, False, "RolloutPending",
                         f"DaemonSet {what}: the controller has not observed the latest spec yet")
    if desired == 0:
        return Readiness(True, 0, 0, False, "NoNodes",
                         f"DaemonSet {what} is scheduled on no node: check nodeSelector and tolerations")
    if ready >= desired and updated >= desired:
        return Readiness(True, ready, desired, True, "Available", f"{ready}/{desired} nodes ready")
    return Readiness(True, ready, desired, False, "Progressing", f"{ready}/{desired} nodes ready, "
                     f"{updated} up to date")


def disabled() -> Readiness:
    return Readiness(False, 0, 0, True, "Disabled", "disabled in the spec")


def compute_status(t: Target, workloads: dict[str, dict | None], problems: list[Problem],
                   previous: dict | None, now: str) -> dict:
    """`workloads`: live 'backend' Deployment, 'filemon'/'procmon' DaemonSets (None = absent)."""
    previous = previous or {}
    names = {"backend": f"{t.name}-backend", "filemon": f"{t.name}-filemon", "procmon": f"{t.name}-procmon"}
    parts = {
        "backend": deployment_readiness(workloads.get("backend"), backend_replicas(t), names["backend"]),
        "filemon": daemonset_readiness(workloads.get("filemon"), names["filemon"])
        if t.spec["filemon"]["enabled"] else disabled(),
        "procmon": daemonset_readiness(workloads.get("procmon"), names["procmon"])
        if t.spec["procmon"]["enabled"] else disabled(),
    }
    conds = previous.get("conditions") or []
    g = t.generation
    for comp, type_ in (("backend", "BackendReady"), ("filemon", "FilemonReady"), ("procmon", "ProcmonReady")):
        r = parts[comp]
        conds = set_condition(conds, type_, r.ok, r.reason, r.message, g, now)
    blocking = [p for p in problems if p.blocking]
    not_ready = [c for c in ("backend", "filemon", "procmon") if not parts[c].ok]
    if blocking:
        conds = set_condition(conds, "Ready", False, blocking[0].reason, blocking[0].message, g, now)
    elif not_ready:
        reason = "".join(c.capitalize() for c in not_ready[:1]) + "NotReady"
        msg = "; ".join(f"{c}: {parts[c].message}" for c in not_ready)
        conds = set_condition(conds, "Ready", False, reason, msg, g, now)
    else:
        conds = set_condition(conds, "Ready", True, "AllComponentsReady",
                              "backend, filemon and procmon are ready", g, now)
    if problems:
        conds = set_condition(conds, "Degraded", True, problems[0].reason,
                              "; ".join(p.message for p in problems), g, now)
    else:
        conds = set_condition(conds, "Degraded", False, "AsExpected", "every child matches the spec", g, now)
    return {
        "observedGeneration": g,
        "conditions": conds,
        "backend": parts["backend"].column,
        "filemon": parts["filemon"].column,
        "procmon": parts["procmon"].column,
        "components": {c: {"ready": r.ready, "desired": r.desired, "enabled": r.enabled} for c, r in parts.items()},
        "backendURL": backend_url(t),
        "tokensSecretName": tokens_secret_name(t),
    }
