"""Compute a WatcherDeployment's status from its live workloads and the reconcile's problems (pure)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from watcher_operator.builders import Target, backend_replicas, backend_url, tokens_secret_name
from watcher_operator.conditions import set_condition
from watcher_operator.rollout import Hold

# Progressing's reason while the agents are held at their old version (watcher_operator.rollout)
WAIT_REASON = "AgentsWaitForBackend"


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


# A workload whose controller cannot create its pods (Pod Security Admission, a quota...) says why only in
# a FailedCreate Event (DaemonSet) or a ReplicaFailure condition (Deployment): that text goes into the
# conditions. A FailedCreate Event counts while it is this recent: the controller retries a failing create
# at least every ~17 min (its work queue's backoff cap, 1000 s), and each retry refreshes the event.
FAILED_CREATE_FRESH_SECONDS = 30 * 60
# Without such an event (events expire after an hour by default; listing them may be forbidden), a
# DaemonSet with nodes but no pod at all for this long is still reported as unable to create them.
NO_PODS_SECONDS = 5 * 60
COMBINED_PREFIX = "(combined from similar events): "  # the event recorder's, when it aggregates


def privileged_label_command(namespace: str) -> str:
    # filemon and procmon use host paths, hostPID and capabilities beyond baseline: only `privileged` admits them
    return f"kubectl label namespace {namespace} pod-security.kubernetes.io/enforce=privileged"


def pod_security_hint(namespace: str, message: str) -> str:
    """The fix for a Pod Security Admission refusal ('violates PodSecurity "baseline:latest": ...'); ''
    for any other message."""
    if "violates PodSecurity" not in message:
        return ""
    return f"; the namespace's Pod Security level must be privileged: {privileged_label_command(namespace)}"


def _time(value: object) -> dt.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _seconds_since(then: object, now: object) -> float | None:
    a, b = _time(then), _time(now)
    return None if a is None or b is None else (b - a).total_seconds()


def event_time(event: dict) -> str:
    """When an Event last happened: core/v1 events fill lastTimestamp, events.k8s.io-style ones eventTime
    and series.lastObservedTime; creationTimestamp is always there."""
    candidates = [
        event.get("lastTimestamp"),
        (event.get("series") or {}).get("lastObservedTime"),
        event.get("eventTime"),
        (event.get("metadata") or {}).get("creationTimestamp"),
    ]
    dated = [(t, c) for c in candidates if (t := _time(c)) is not None]
    return max(dated)[1] if dated else ""


def latest_event(events: list[dict]) -> dict | None:
    dated = [(t, i) for i, e in enumerate(events) if (t := _time(event_time(e))) is not None]
    return events[max(dated)[1]] if dated else None


def pods_missing(ds: dict | None) -> bool:
    """A DaemonSet with fewer pods than nodes to run on; also desiredNumberScheduled 0, since controllers
    before Kubernetes 1.26/1.27 left a DaemonSet's status at zero when its pods could not be created."""
    if ds is None:
        return False
    st = ds.get("status") or {}
    desired = int(st.get("desiredNumberScheduled") or 0)
    return desired == 0 or int(st.get("currentNumberScheduled") or 0) < desired


def _failed_create(event: dict | None, now: str) -> str | None:
    """The message of a FailedCreate event that is still news, else None."""
    if not event or event.get("reason") != "FailedCreate":
        return None
    age = _seconds_since(event_time(event), now)
    if age is not None and age > FAILED_CREATE_FRESH_SECONDS:
        return None
    message = " ".join((event.get("message") or "").split())
    return message.removeprefix(COMBINED_PREFIX) or None


def _rollout_pending(obj: dict) -> bool:
    st = obj.get("status") or {}
    return int(st.get("observedGeneration") or 0) < int(obj["metadata"].get("generation") or 0)


def deployment_readiness(dep: dict | None, desired: int, what: str, namespace: str = "") -> Readiness:
    if dep is None:
        return Readiness(True, 0, desired, False, "Missing", f"Deployment {what} does not exist yet")
    st = dep.get("status") or {}
    ready = int(st.get("readyReplicas") or 0)
    updated = int(st.get("updatedReplicas") or 0)
    # the deployment controller copies its ReplicaSet's ReplicaFailure (reason FailedCreate) up here
    failure = next(
        (c for c in st.get("conditions") or [] if c.get("type") == "ReplicaFailure" and c.get("status") == "True"), None
    )
    if failure and ready < desired:
        message = " ".join((failure.get("message") or failure.get("reason") or "").split())
        return Readiness(
            True,
            ready,
            desired,
            False,
            "FailedCreate",
            f"Deployment {what} cannot create its pods: {message}{pod_security_hint(namespace, message)}",
        )
    if _rollout_pending(dep):
        return Readiness(
            True,
            ready,
            desired,
            False,
            "RolloutPending",
            f"Deployment {what}: the controller has not observed the latest spec yet",
        )
    if ready >= desired and updated >= desired:
        return Readiness(True, ready, desired, True, "Available", f"{ready}/{desired} replicas ready")
    return Readiness(
        True, ready, desired, False, "Progressing", f"{ready}/{desired} replicas ready, {updated} up to date"
    )


def daemonset_readiness(
    ds: dict | None,
    what: str,
    failed_create: dict | None = None,
    *,
    namespace: str = "",
    not_ready_for: float | None = None,
    now: str = "",
) -> Readiness:
    """`failed_create`: the DaemonSet's latest FailedCreate Event, if any; `not_ready_for`: seconds this
    component has been not ready (from the previous condition), None if unknown."""
    if ds is None:
        return Readiness(True, 0, 0, False, "Missing", f"DaemonSet {what} does not exist yet")
    st = ds.get("status") or {}
    desired = int(st.get("desiredNumberScheduled") or 0)
    ready = int(st.get("numberReady") or 0)
    updated = int(st.get("updatedNumberScheduled") or 0)
    current = int(st.get("currentNumberScheduled") or 0)
    # before RolloutPending and NoNodes: an old controller that fails to create pods shows exactly those
    failure = _failed_create(failed_create, now) if pods_missing(ds) else None
    if failure:
        return Readiness(
            True,
            ready,
            desired,
            False,
            "FailedCreate",
            f"DaemonSet {what} cannot create its pods: {failure}{pod_security_hint(namespace, failure)}",
        )
    if (
        desired > 0
        and current == 0
        and not_ready_for is not None
        and not_ready_for >= NO_PODS_SECONDS
        and not _rollout_pending(ds)
    ):
        return Readiness(
            True,
            ready,
            desired,
            False,
            "FailedCreate",
            f"DaemonSet {what} has no pod on any of its {desired} nodes after "
            f"{int(not_ready_for // 60)} min: kubectl -n {namespace} describe daemonset {what} says "
            f"why; if Pod Security refuses them: {privileged_label_command(namespace)}",
        )
    if _rollout_pending(ds):
        return Readiness(
            True,
            ready,
            desired,
            False,
            "RolloutPending",
            f"DaemonSet {what}: the controller has not observed the latest spec yet",
        )
    if desired == 0:
        return Readiness(
            True,
            0,
            0,
            False,
            "NoNodes",
            f"DaemonSet {what} is scheduled on no node: check nodeSelector and tolerations",
        )
    if ready >= desired and updated >= desired:
        return Readiness(True, ready, desired, True, "Available", f"{ready}/{desired} nodes ready")
    return Readiness(True, ready, desired, False, "Progressing", f"{ready}/{desired} nodes ready, {updated} up to date")


def disabled() -> Readiness:
    return Readiness(False, 0, 0, True, "Disabled", "disabled in the spec")


def _not_ready_for(conditions: list[dict], type_: str, now: str) -> float | None:
    c = next((c for c in conditions if c.get("type") == type_), None)
    return _seconds_since(c.get("lastTransitionTime"), now) if c and c.get("status") == "False" else None


def compute_status(
    t: Target,
    workloads: dict[str, dict | None],
    problems: list[Problem],
    previous: dict | None,
    now: str,
    failed_creates: dict[str, dict | None] | None = None,
    hold: Hold | None = None,
) -> dict:
    """`workloads`: live 'backend' Deployment, 'filemon'/'procmon' DaemonSets (None = absent);
    `failed_creates`: the latest FailedCreate Event of the 'filemon'/'procmon' DaemonSet, if read;
    `hold`: the agents this reconcile kept at their old version until the backend has rolled out."""
    previous = previous or {}
    failed_creates = failed_creates or {}
    conds = previous.get("conditions") or []
    names = {"backend": f"{t.name}-backend", "filemon": f"{t.name}-filemon", "procmon": f"{t.name}-procmon"}

    def agent(comp: str, type_: str) -> Readiness:
        if not t.spec[comp]["enabled"]:
            return disabled()
        return daemonset_readiness(
            workloads.get(comp),
            names[comp],
            failed_creates.get(comp),
            namespace=t.namespace,
            not_ready_for=_not_ready_for(conds, type_, now),
            now=now,
        )

    parts = {
        "backend": deployment_readiness(workloads.get("backend"), backend_replicas(t), names["backend"], t.namespace),
        "filemon": agent("filemon", "FilemonReady"),
        "procmon": agent("procmon", "ProcmonReady"),
    }
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
        conds = set_condition(
            conds, "Ready", True, "AllComponentsReady", "backend, filemon and procmon are ready", g, now
        )
    rolling = [c for c in ("backend", "filemon", "procmon") if parts[c].reason in ("Progressing", "RolloutPending")]
    if hold:
        conds = set_condition(conds, "Progressing", True, WAIT_REASON, hold.message, g, now)
    elif rolling:
        msg = "; ".join(f"{c}: {parts[c].message}" for c in rolling)
        conds = set_condition(conds, "Progressing", True, "RollingOut", msg, g, now)
    else:
        conds = set_condition(conds, "Progressing", False, "RolloutComplete", "no rollout under way", g, now)
    if problems:
        conds = set_condition(
            conds, "Degraded", True, problems[0].reason, "; ".join(p.message for p in problems), g, now
        )
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
