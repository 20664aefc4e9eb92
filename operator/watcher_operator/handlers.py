"""kopf wiring: thin handlers that call the Reconciler and report what happened as Events.

``register(registry, config)`` adds the handlers to a kopf registry with the operator's settings, which
``watcher operator`` has checked and passes in (nothing goes through the environment, and this module does
not import the CLI). Level-based: create, update, resume and a periodic timer all run the same full
reconcile; events on the children (a workload's status changed, a child was deleted by hand) refresh
status or repair at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

import kopf

from watcher_operator import loop_guard
from watcher_operator.builders import MANAGER
from watcher_operator.crd import API_VERSION, GROUP, KIND, PLURAL, VERSION
from watcher_operator.kubeapi import ApiError, Kube, load_config
from watcher_operator.metrics import OperatorMetrics
from watcher_operator.reconcile import Reconciler

log = logging.getLogger("watcher_operator")

MANAGED = {"app.kubernetes.io/managed-by": MANAGER}


@dataclass(frozen=True)
class HandlerConfig:
    """What the handlers need from the operator's settings (watcher_operator.cli.resolve)."""

    resync_seconds: float
    retry_seconds: float
    kubeconfig: str | None = None
    metrics: OperatorMetrics = field(default_factory=OperatorMetrics)  # served by the CLI on its metrics port


def _ref(namespace: str, name: str, uid: str | None = None) -> dict:
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"namespace": namespace, "name": name, "uid": uid}}


def _owner(body) -> tuple[str, str] | None:
    for ref in body.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("kind") == KIND and ref.get("apiVersion", "").startswith(GROUP + "/"):
            return body["metadata"]["namespace"], ref["name"]
    return None


def register(registry: kopf.OperatorRegistry, config: HandlerConfig) -> None:
    """Register every handler with ``registry``, bound to ``config``. Each keeps a fixed id (its name):
    kopf stores progress under it, and the log lines name it."""
    reconciler = Reconciler(Kube(load_config(config.kubeconfig)))

    @kopf.on.login(id="login", registry=registry)
    def login(**kwargs):
        # a registry of our own starts without kopf's default logins: the kubernetes client's, as before
        return kopf.login_via_client(**kwargs)

    @kopf.on.startup(id="configure", registry=registry)
    def configure(settings: kopf.OperatorSettings, **_) -> None:
        settings.posting.level = logging.INFO
        settings.watching.server_timeout = 300
        settings.watching.client_timeout = 330
        # keep kopf's own bookkeeping out of the way of `kubectl get` and GitOps diffs
        settings.persistence.progress_storage = kopf.StatusProgressStorage(field="status.kopf.progress")
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix="watcher.jcode.io", key="last-handled-configuration"
        )

    @kopf.on.startup(id="guard_event_loop", registry=registry)
    async def guard_event_loop(**_) -> None:
        # async so it runs in kopf's own event loop (sync handlers run in a thread)
        loop_guard.install(asyncio.get_running_loop())

    def run(namespace: str, name: str, uid: str | None, logger: logging.Logger) -> None:
        start = time.perf_counter()
        try:
            out = reconciler.reconcile(namespace, name)
        except ApiError as err:  # API server unreachable, RBAC missing...: one clear line, then kopf retries
            config.metrics.observe(namespace, name, "error", time.perf_counter() - start, time.time())
            logger.error("reconcile of %s/%s failed: %s", namespace, name, err)
            raise kopf.TemporaryError(f"Kubernetes API error: {err}", delay=config.retry_seconds) from None
        if out.gone:
            config.metrics.forget(namespace, name)
            return
        result = "blocked" if out.blocking else "ok"
        config.metrics.observe(namespace, name, result, time.perf_counter() - start, time.time())
        body = _ref(namespace, name, uid)
        for action in out.actions:
            logger.info(action)
            kopf.info(body, reason="Reconciled", message=action)
        for p in out.new_problems:
            logger.warning("%s: %s", p.reason, p.message)
            kopf.warn(body, reason=p.reason, message=p.message)
        if out.blocking:
            # a spec the schema accepts but the cluster cannot satisfy yet: say why (status + event), retry later
            raise kopf.TemporaryError("; ".join(p.message for p in out.blocking), delay=config.retry_seconds)

    @kopf.on.resume(GROUP, VERSION, PLURAL, id="reconcile_handler", registry=registry)
    @kopf.on.create(GROUP, VERSION, PLURAL, id="reconcile_handler", registry=registry)
    @kopf.on.update(GROUP, VERSION, PLURAL, id="reconcile_handler", registry=registry)
    def reconcile_handler(namespace: str, name: str, uid: str, logger: logging.Logger, **_) -> None:
        run(namespace, name, uid, logger)

    @kopf.timer(
        GROUP,
        VERSION,
        PLURAL,
        interval=config.resync_seconds,
        initial_delay=config.resync_seconds,
        id="resync",
        registry=registry,
    )
    def resync(namespace: str, name: str, uid: str, logger: logging.Logger, **_) -> None:
        """Drift repair even when no event arrives (e.g. a missed watch event)."""
        run(namespace, name, uid, logger)

    def on_child_event(event: dict, body, logger: logging.Logger) -> None:
        owner = _owner(body)
        if owner is None:
            return
        if event.get("type") == "DELETED":
            logger.info(
                "child %s %s was deleted: reconciling %s/%s", body.get("kind"), body["metadata"]["name"], *owner
            )
            try:
                run(owner[0], owner[1], None, logger)
            except kopf.TemporaryError as exc:
                logger.warning("reconcile after child deletion deferred: %s", exc)
        else:
            try:
                out = reconciler.refresh_status(*owner)
            except ApiError as err:
                logger.error("status refresh of %s/%s failed: %s", *owner, err)
                return
            for action in out.actions:  # agents released after the backend's rollout
                logger.info(action)
                kopf.info(_ref(*owner), reason="Reconciled", message=action)

    # Workloads: their status drives the conditions; any managed child deleted by hand is recreated at once.
    @kopf.on.event("apps", "v1", "deployments", labels=MANAGED, id="workload_event", registry=registry)
    @kopf.on.event("apps", "v1", "daemonsets", labels=MANAGED, id="workload_event", registry=registry)
    def workload_event(event: dict, body, logger: logging.Logger, **_) -> None:
        on_child_event(event, body, logger)

    @kopf.on.event("v1", "services", labels=MANAGED, id="child_event", registry=registry)
    @kopf.on.event("v1", "secrets", labels=MANAGED, id="child_event", registry=registry)
    @kopf.on.event("v1", "configmaps", labels=MANAGED, id="child_event", registry=registry)
    @kopf.on.event("networking.k8s.io", "v1", "networkpolicies", labels=MANAGED, id="child_event", registry=registry)
    @kopf.on.event("v1", "serviceaccounts", labels=MANAGED, id="child_event", registry=registry)
    @kopf.on.event("rbac.authorization.k8s.io", "v1", "roles", labels=MANAGED, id="child_event", registry=registry)
    @kopf.on.event(
        "rbac.authorization.k8s.io", "v1", "rolebindings", labels=MANAGED, id="child_event", registry=registry
    )
    def child_event(event: dict, body, logger: logging.Logger, **_) -> None:
        if event.get("type") == "DELETED":
            on_child_event(event, body, logger)
