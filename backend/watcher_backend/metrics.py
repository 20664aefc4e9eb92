"""Prometheus metrics with bounded labels.

``endpoint`` is the matched route template (``/api/v1/snapshots/{sha256}``), never the raw path; requests
that match no route share the label ``<unmatched>``. Each app gets its own registry, so several apps in
one process (tests) do not collide.

With several workers (``--workers``, workers.py) every worker writes its values to files in
``PROMETHEUS_MULTIPROC_DIR`` (prometheus_client's multiprocess mode, chosen when it is imported), and a
scrape, whichever worker answers it, sums the counters and histograms of all of them; ``process_*`` then
describe the worker that answered.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, disable_created_metrics
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from watcher_core import wire
from watcher_core.standard_metrics import register_standard_metrics

UNMATCHED = "<unmatched>"
# From an event's time to its row being stored: seconds for a live agent, hours after an outage.
QUERYABLE_DELAY_BUCKETS = (0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600, 21600, 86400)
# The event types with an outcome (a compile, a run, a notebook cell succeeded or failed).
OUTCOME_TYPES = tuple(t for t, model in wire.MODELS.items() if getattr(model, "succeeded_from", None))
disable_created_metrics()  # the *_created series double the output and say nothing useful here


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        register_standard_metrics(self.registry, "backend")
        self.requests = Counter(
            "http_requests_total",
            "HTTP requests by method, route template and status",
            ["method", "endpoint", "http_status"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "http_request_duration_seconds",
            "HTTP request duration by method and route template",
            ["method", "endpoint"],
            registry=self.registry,
        )
        self.events = Counter(
            "watcher_events_ingested_total",
            "Events posted to /api/v1/events by type and result (accepted, duplicate, rejected)",
            ["type", "result"],
            registry=self.registry,
        )
        self.retention_purged = Counter(
            "watcher_retention_purged_total", "Events deleted by the retention policy", registry=self.registry
        )
        self.retention_runs = Counter(
            "watcher_retention_runs_total", "Retention purges by result", ["result"], registry=self.registry
        )
        self.students_deleted = Counter(
            "watcher_student_records_deleted_total", "Rows deleted by student erasure requests", registry=self.registry
        )
        self.erased_contents_removed = Counter(
            "watcher_erased_contents_removed_total",
            "Erased snapshot contents filemon reported removed from the store",
            registry=self.registry,
        )
        self.db_errors = Counter(
            "watcher_database_errors_total", "Requests answered 503 because the database failed", registry=self.registry
        )
        self.checkpoint_errors = Counter(
            "watcher_sqlite_checkpoint_errors_total",
            "Background SQLite checkpoints that failed (the write-ahead log grows until one works)",
            registry=self.registry,
        )
        self.fields_ignored = Counter(
            "watcher_events_unknown_fields_total",
            "Stored events that carried fields this backend does not know (from a newer agent), stored without them",
            registry=self.registry,
        )
        self.legacy_tokenless_reads = Counter(
            "watcher_legacy_tokenless_reads_total",
            "Old-API reads accepted without a token from WATCHER_LEGACY_READS_FROM (the platform)",
            registry=self.registry,
        )
        self.ready = Gauge(
            "watcher_backend_ready",
            "1 when the last readiness check reached the database",
            registry=self.registry,
            multiprocess_mode="mostrecent",  # with several workers: the latest check of any of them
        )
        self.queryable_delay = Histogram(
            "watcher_event_queryable_delay_seconds",
            "From an event's timestamp (when it happened) to its row being stored and queryable, by type "
            "(new events only, not resends)",
            ["type"],
            buckets=QUERYABLE_DELAY_BUCKETS,
            registry=self.registry,
        )
        self.outcomes = Counter(
            "watcher_event_outcomes_total",
            "Stored compiles, runs and notebook cells by outcome (succeeded: exit 0 and no signal)",
            ["type", "outcome"],
            registry=self.registry,
        )
        for t in OUTCOME_TYPES:
            for outcome in ("succeeded", "failed"):
                self.outcomes.labels(t, outcome)

        self._scraped = self.registry
        shared = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if shared:  # several workers: a scrape reads every worker's files
            from prometheus_client import multiprocess

            self._scraped = CollectorRegistry()
            multiprocess.MultiProcessCollector(self._scraped, path=shared)
            ProcessCollector(registry=self._scraped)

    def observe_stored(
        self, events: Iterable[wire.Event], duplicates_by_type: Mapping[str, int], now: float | None = None
    ) -> None:
        """Delay and outcome of events just stored. Of a type with duplicates in the batch it is not known
        which ones were new, so that type is left out of this batch (a resend is not a new delay)."""
        now = time.time() if now is None else now
        delays: dict[str, list[float]] = {}
        outcomes: dict[tuple[str, str], int] = {}
        for ev in events:
            if duplicates_by_type.get(ev.type):
                continue
            delays.setdefault(ev.type, []).append(max(0.0, now - ev.timestamp.timestamp()))
            if ev.type in OUTCOME_TYPES:
                key = (ev.type, "succeeded" if wire.succeeded_from(ev.type, ev.__dict__) else "failed")
                outcomes[key] = outcomes.get(key, 0) + 1
        # one label lookup per type and batch (the ingest path is hot: thousands of events a second)
        for type_, values in delays.items():
            child = self.queryable_delay.labels(type_)
            for value in values:
                child.observe(value)
        for (type_, outcome), n in outcomes.items():
            self.outcomes.labels(type_, outcome).inc(n)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self._scraped), CONTENT_TYPE_LATEST


KNOWN_TYPES = frozenset(wire.EVENT_TYPES)


def type_label(value: object) -> str:
    """Event types from clients are free text until validated; only known ones become label values."""
    return value if isinstance(value, str) and value in KNOWN_TYPES else "unknown"


class MetricsMiddleware:
    """Pure ASGI middleware: counts and times every HTTP request by route template."""

    def __init__(self, app, metrics: Metrics):
        self.app = app
        self.metrics = metrics
        self._series: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status_holder = {"code": 500}

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                status_holder["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            endpoint = getattr(route, "path_format", None) or getattr(route, "path", None) or UNMATCHED
            method = scope.get("method", "GET")
            if method not in ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"):
                method = "OTHER"
            key = (method, endpoint, status_holder["code"])
            series = self._series.get(key)
            if series is None:  # label lookups cost more than the update itself; the keys are few (routes)
                series = self._series[key] = (
                    self.metrics.requests.labels(method, endpoint, str(key[2])),
                    self.metrics.duration.labels(method, endpoint),
                )
            series[0].inc()
            series[1].observe(time.perf_counter() - start)
