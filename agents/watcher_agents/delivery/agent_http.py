"""The agent's own small HTTP server on the metrics port (default 9090): ``/metrics`` and ``/healthz``.

Each agent passes its own ``CollectorRegistry`` (not prometheus_client's global one), so tests can run
several agents in one process. Health is a set of named checks ("watch loop alive", "sender alive"),
each a callable returning True when fine; ``/healthz`` answers 200 ``{"status": "healthy", ...}`` or 503
naming the checks that failed. Kubernetes' liveness probe points at it.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = logging.getLogger(__name__)


class HealthChecks:
    def __init__(self) -> None:
        self._checks: dict[str, Callable[[], bool]] = {}
        self._details: dict[str, Callable[[], object]] = {}
        self._lock = threading.Lock()

    def register(self, name: str, check: Callable[[], bool]) -> None:
        with self._lock:
            self._checks[name] = check

    def add_detail(self, key: str, value: Callable[[], object]) -> None:
        """A top-level field of the /healthz answer that is not a check (e.g. procmon's ``"mode"``);
        ``value`` is called per request and must return something JSON can encode."""
        with self._lock:
            self._details[key] = value

    def details(self) -> dict[str, object]:
        with self._lock:
            details = dict(self._details)
        out = {}
        for key, value in details.items():
            try:
                out[key] = value()
            except Exception:  # a broken detail must not break the health answer
                log.exception("health detail %r raised", key)
                out[key] = None
        return out

    def evaluate(self) -> tuple[bool, dict[str, bool]]:
        with self._lock:
            checks = dict(self._checks)
        results = {}
        for name, check in checks.items():
            try:
                results[name] = bool(check())
            except Exception:  # a broken check means unhealthy, not a crashed server
                log.exception("health check %r raised", name)
                results[name] = False
        return all(results.values()), results


class AgentHTTPServer:
    """Serves /metrics and /healthz from a daemon thread. ``port=0`` picks a free port (tests)."""

    def __init__(
        self,
        registry: CollectorRegistry,
        health: HealthChecks,
        *,
        port: int = 9090,
        host: str = "0.0.0.0",
        agent: str = "agent",
    ) -> None:
        self.registry = registry
        self.health = health
        self.agent = agent
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 (stdlib name)
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._reply(200, generate_latest(server.registry), CONTENT_TYPE_LATEST)
                elif path in ("/healthz", "/health"):
                    ok, results = server.health.evaluate()
                    doc = {
                        "status": "healthy" if ok else "unhealthy",
                        "timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                        "agent": server.agent,
                        **server.health.details(),
                        "checks": results,
                    }
                    if not ok:
                        doc["failed"] = [name for name, good in results.items() if not good]
                    self._reply(200 if ok else 503, json.dumps(doc).encode(), "application/json")
                else:
                    self._reply(404, b'{"detail":"not found: try /metrics or /healthz"}', "application/json")

            def _reply(self, status: int, body: bytes, ctype: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, fmt, *args) -> None:  # scrapes every 15 s would flood the log
                log.debug("http: " + fmt, *args)

        self._httpd = ThreadingHTTPServer((host, port), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="metrics-http", daemon=True)

    def start(self) -> AgentHTTPServer:
        self._thread.start()
        log.info("metrics and health on port %d (/metrics, /healthz)", self.port)
        return self

    def stop(self) -> None:
        # shutdown() waits for serve_forever to notice; if start() never ran it would wait forever.
        if self._thread.is_alive():
            self._httpd.shutdown()
        self._httpd.server_close()
