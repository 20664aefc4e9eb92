"""The delivery runtime both agents share: outbox + sender + metrics/health server, started and stopped together.

An agent builds one ``AgentRuntime`` from its ``AgentSettings``, registers its own metrics on
``runtime.registry`` and its own health checks on ``runtime.health``, puts events into
``runtime.outbox``, and on SIGTERM calls ``runtime.shutdown(flush_timeout)``::

    rt = AgentRuntime(settings)
    rt.health.register("trace loop alive", loop.is_alive)
    rt.start()
    ...
    rt.outbox.put([event])
    ...
    rt.shutdown(flush_timeout=10)
"""

from __future__ import annotations

import logging
import signal
import threading

from prometheus_client import CollectorRegistry, Gauge

from watcher_agents.config import AgentSettings
from watcher_agents.delivery.agent_http import AgentHTTPServer, HealthChecks
from watcher_agents.delivery.outbox import Outbox
from watcher_agents.delivery.sender import Sender
from watcher_core.standard_metrics import register_standard_metrics

log = logging.getLogger(__name__)


class AgentRuntime:
    def __init__(
        self,
        settings: AgentSettings,
        *,
        registry: CollectorRegistry | None = None,
        metrics_host: str = "0.0.0.0",
        sender_options: dict | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry or CollectorRegistry()
        register_standard_metrics(self.registry, settings.agent)
        self.health = HealthChecks()
        self.outbox = Outbox(
            settings.outbox_path,
            max_events=settings.outbox_max_events,
            max_bytes=settings.outbox_max_bytes,
            synchronous=settings.outbox_sync,
        )
        self.sender = Sender(
            self.outbox,
            settings.backend_url,
            settings.token,
            self.registry,
            batch_size=settings.batch_size,
            name=f"{settings.agent}-sender",
            node=settings.node_name,
            source=settings.agent,
            **(sender_options or {}),
        )
        self.health.register("sender alive", self.sender.alive)
        up = Gauge(
            "watcher_agent_info", "Agent identity (value is always 1)", ["agent", "node"], registry=self.registry
        )
        up.labels(settings.agent, settings.node_name).set(1)
        self.http = AgentHTTPServer(
            self.registry, self.health, port=settings.metrics_port, host=metrics_host, agent=settings.agent
        )
        self.stopping = threading.Event()

    def start(self) -> AgentRuntime:
        self.sender.start()
        self.http.start()
        return self

    def install_signal_handlers(self) -> None:
        """SIGTERM / SIGINT set ``stopping``; the agent's main loop waits on it and then shuts down."""

        def _handler(signum, _frame):
            log.info("received %s, shutting down", signal.Signals(signum).name)
            self.stopping.set()

        signal.signal(signal.SIGTERM, _handler)
        signal.signal(signal.SIGINT, _handler)

    def shutdown(self, flush_timeout: float = 10.0) -> bool:
        """Flush the outbox for at most ``flush_timeout`` s, then stop everything. True if all was sent."""
        flushed = self.sender.flush(flush_timeout)
        if not flushed:
            log.warning(
                "shutdown: %d events still in the outbox; they are kept on disk and sent on the next start",
                self.outbox.depth(),
            )
        self.sender.stop()
        self.http.stop()
        self.outbox.close()
        return flushed
