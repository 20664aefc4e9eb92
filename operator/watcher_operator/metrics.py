"""The operator's own metrics, served on its metrics port (``--metrics-port``, 9090; ``/metrics``).

Reconciles of a WatcherDeployment by result, their duration, and when each resource was last reconciled
with everything applied; plus the metrics every component has (watcher_core.standard_metrics).
"""

from __future__ import annotations

from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from watcher_core.standard_metrics import register_standard_metrics

# ok: everything applied; blocked: a spec the cluster cannot satisfy yet (the conditions say why, retried);
# error: a Kubernetes API error (retried)
RESULTS = ("ok", "blocked", "error")


class OperatorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        register_standard_metrics(self.registry, "operator")
        self.reconciles = Counter(
            "watcher_operator_reconciles_total",
            "Reconciles of WatcherDeployments by result: ok (everything applied), blocked (a spec the cluster "
            "cannot satisfy yet; see the resource's conditions), error (a Kubernetes API error); both retried",
            ["result"],
            registry=self.registry,
        )
        for result in RESULTS:
            self.reconciles.labels(result)
        self.duration = Histogram(
            "watcher_operator_reconcile_duration_seconds",
            "Duration of one reconcile of a WatcherDeployment (reading the cluster, applying, writing status)",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=self.registry,
        )
        self.last_success = Gauge(
            "watcher_operator_last_success_timestamp_seconds",
            "Unix time of the last reconcile of this WatcherDeployment that applied everything",
            ["namespace", "name"],
            registry=self.registry,
        )

    def observe(self, namespace: str, name: str, result: str, seconds: float, now: float) -> None:
        self.reconciles.labels(result).inc()
        self.duration.observe(seconds)
        if result == "ok":
            self.last_success.labels(namespace, name).set(now)

    def forget(self, namespace: str, name: str) -> None:
        """The resource is gone: its series go too (labels stay bounded by the live resources)."""
        try:
            self.last_success.remove(namespace, name)
        except KeyError:
            pass

    def serve(self, port: int, host: str = "0.0.0.0") -> WSGIServer:
        """Serve /metrics from a daemon thread (port 0 picks a free one: ``.server_port``); ``shutdown()``
        and ``server_close()`` stop it."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        return server
