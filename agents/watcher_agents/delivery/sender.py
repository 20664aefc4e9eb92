"""The sender: ships batches from the outbox to ``POST {backend}/api/v1/events`` until they are stored.

One background thread, one keep-alive HTTP connection (httpx). Each batch is the outbox's next events
in its delivery order: students in turn, each student's events oldest first (``outbox.py``), so one
student's flood does not hold up the others' events. The backend answers with a ``wire.BatchResult``:

* 200 / 422 with a BatchResult: accepted and duplicate events are acknowledged (removed), rejected
  ones (named by index) go to the dead-letter table: the backend will never take them, retrying would
  block the queue forever.
* 422 without a BatchResult (the body as a whole was refused): the batch is split in half until the
  offending event is alone, then that one is dead-lettered.
* 413: the batch is too big; halve it (down to one event, which is then dead-lettered).
* 401 / 403: the token is wrong. One clear log line, then back off and retry: never drop events over a
  configuration mistake.
* connection errors, timeouts, 5xx, 429 and any other answer: back off and retry.

Backoff is exponential with full jitter (sleep uniformly in [0, min(cap, base * 2^attempt)]), so
hundreds of agents coming back after an outage do not hammer the backend in lockstep.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from dataclasses import dataclass

import httpx
from prometheus_client import CollectorRegistry, Counter, Gauge
from pydantic import ValidationError

from watcher_agents.delivery.outbox import Outbox
from watcher_core import wire

log = logging.getLogger(__name__)

EVENTS_PATH = "/api/v1/events"
DEFAULT_BATCH_SIZE = 500
BACKOFF_BASE = 0.5
BACKOFF_CAP = 30.0
OUTBOX_WARN_RATIO = 0.8


class SenderMetrics:
    """The delivery metrics every agent exposes (same names in filemon and procmon)."""

    def __init__(self, registry: CollectorRegistry, outbox: Outbox) -> None:
        self.sent = Counter(
            "watcher_events_sent_total", "Events the backend acknowledged (stored or duplicate)", registry=registry
        )
        self.duplicates = Counter(
            "watcher_events_duplicate_total", "Acknowledged events the backend already had (resends)", registry=registry
        )
        self.failures = Counter(
            "watcher_send_failures_total", "Failed POSTs to the backend, by reason", ["reason"], registry=registry
        )
        self.batches = Counter("watcher_send_batches_total", "Batches the backend answered", registry=registry)
        self.retries = Counter("watcher_send_retries_total", "Batches sent again after a failure", registry=registry)
        self.dead_letters = Counter(
            "watcher_dead_letters_total",
            "Events the backend rejected permanently (kept in the dead-letter table)",
            registry=registry,
        )
        depth = Gauge("watcher_outbox_events", "Events waiting in the outbox", registry=registry)
        depth.set_function(outbox.depth)
        size = Gauge("watcher_outbox_bytes", "Bytes of event JSON waiting in the outbox", registry=registry)
        size.set_function(outbox.bytes)
        age = Gauge("watcher_outbox_oldest_age_seconds", "Age of the oldest unsent event", registry=registry)
        age.set_function(outbox.oldest_age_seconds)
        fill = Gauge("watcher_outbox_fill_ratio", "Outbox use relative to its bound (1 = full)", registry=registry)
        fill.set_function(outbox.fill_ratio)
        dead = Gauge("watcher_dead_letters_stored", "Events stored in the dead-letter table", registry=registry)
        dead.set_function(outbox.dead_letter_count)


@dataclass
class _Outcome:
    ok: bool
    reason: str = ""
    retry_after: float | None = None


class Sender:
    def __init__(
        self,
        outbox: Outbox,
        backend_url: str,
        token: str | None,
        registry: CollectorRegistry,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_batch_bytes: int = wire.MAX_BATCH_BYTES - 64 * 1024,
        timeout: float = 20.0,
        backoff_base: float = BACKOFF_BASE,
        backoff_cap: float = BACKOFF_CAP,
        idle_wait: float = 1.0,
        name: str = "sender",
        node: str | None = None,
        source: str | None = None,
        heartbeat_interval: float = 30.0,
    ) -> None:
        self.outbox = outbox
        self.url = backend_url.rstrip("/") + EVENTS_PATH
        self.batch_size = max(1, min(batch_size, wire.MAX_BATCH_EVENTS))
        self._current_batch = self.batch_size
        self._ignored_logged = False  # unknown fields are logged once: the cause is one version skew
        self.max_batch_bytes = max_batch_bytes
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.idle_wait = idle_wait
        self.metrics = SenderMetrics(registry, outbox)
        headers = {"Content-Type": "application/json", "User-Agent": f"watcher-{name}"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        # The backend shows which agents report (``watcher status``): every POST names the node and
        # agent and carries the backlog; an empty POST when idle is the heartbeat.
        if node:
            headers["X-Watcher-Node"] = node
        if source:
            headers["X-Watcher-Source"] = source
        self.heartbeat_interval = heartbeat_interval if (node and source) else None
        self._last_post = 0.0
        self._client = httpx.Client(headers=headers, timeout=timeout)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._attempt = 0
        self._auth_logged = False
        self._last_problem: str | None = None
        self._outbox_warned = False
        self.last_success: float | None = None

    @property
    def client(self) -> httpx.Client:
        """The HTTP client to the backend (token, node and agent headers), for the agent's other exchanges
        with it (filemon's snapshot collector). httpx clients may be shared by threads; closed by stop()."""
        return self._client

    # --- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> Sender:
        self._thread.start()
        return self

    def alive(self) -> bool:
        return self._thread.is_alive()

    def wake(self) -> None:
        """Skip the current backoff sleep (used by flush)."""
        self._wake.set()

    def flush(self, timeout: float) -> bool:
        """Wait until the outbox is empty (True) or ``timeout`` seconds pass (False)."""
        deadline = time.monotonic() + timeout
        self._attempt = 0
        self.wake()
        while time.monotonic() < deadline:
            if self.outbox.depth() == 0:
                return True
            if not self.alive():
                return False
            time.sleep(0.05)
        return self.outbox.depth() == 0

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._client.close()

    # --- loop --------------------------------------------------------------------------------------

    def _run(self) -> None:
        log.info("sender started: posting batches of up to %d events to %s", self.batch_size, self.url)
        while not self._stop.is_set():
            try:
                self._check_outbox_fill()
                batch = self.outbox.peek_batch(self._current_batch, self.max_batch_bytes)
                if not batch:
                    if (
                        self.heartbeat_interval is not None
                        and time.monotonic() - self._last_post >= self.heartbeat_interval
                    ):
                        outcome = self._send([])
                    else:
                        self.outbox.wait_for_events(self.idle_wait)
                        continue
                else:
                    outcome = self._send(batch)
            except Exception as exc:  # never let the loop die on a surprise; count it and back off
                if self._stop.is_set():
                    break
                log.exception("sender: unexpected error")
                outcome = _Outcome(False, f"internal:{type(exc).__name__}")
            if outcome.ok:
                if self._attempt:
                    log.info("sender: backend reachable again, delivery resumed")
                self._attempt = 0
                self._auth_logged = False
                self._last_problem = None
                self.last_success = time.time()
                continue
            self.metrics.failures.labels(outcome.reason).inc()
            if outcome.reason != self._last_problem:
                if not outcome.reason.startswith("auth"):
                    log.warning(
                        "sender: delivery failed (%s); %d events waiting, retrying with backoff",
                        outcome.reason,
                        self.outbox.depth(),
                    )
                self._last_problem = outcome.reason
            delay = random.uniform(0, min(self.backoff_cap, self.backoff_base * (2**self._attempt)))
            if outcome.retry_after is not None:
                delay = max(delay, min(outcome.retry_after, self.backoff_cap))
            self._attempt = min(self._attempt + 1, 30)
            self._wake.clear()
            self._wake.wait(delay)
            if not self._stop.is_set():
                self.metrics.retries.inc()
        log.info("sender stopped; %d events left in the outbox", self.outbox.depth())

    def _check_outbox_fill(self) -> None:
        ratio = self.outbox.fill_ratio()
        if ratio >= OUTBOX_WARN_RATIO and not self._outbox_warned:
            log.warning(
                "outbox is %.0f%% full (%d events, %d bytes): the backend is not keeping up or unreachable",
                ratio * 100,
                self.outbox.depth(),
                self.outbox.bytes(),
            )
            self._outbox_warned = True
        elif ratio < OUTBOX_WARN_RATIO / 2:
            self._outbox_warned = False

    def _send(self, batch: list[tuple[int, dict]]) -> _Outcome:
        body = "[" + ",".join(json.dumps(ev, separators=(",", ":"), ensure_ascii=False) for _, ev in batch) + "]"
        self._last_post = time.monotonic()
        try:
            resp = self._client.post(
                self.url, content=body.encode("utf-8"), headers={"X-Watcher-Backlog": str(self.outbox.depth())}
            )
        except httpx.TimeoutException:
            return _Outcome(False, "timeout")
        except httpx.TransportError:
            return _Outcome(False, "connection")
        status = resp.status_code
        if status in (200, 201, 207, 422):
            result = _parse_result(resp)
            if result is not None:
                self._apply(batch, result)
                self._grow_batch()
                return _Outcome(True)
            if status == 422:
                return self._split_or_dead_letter(batch, f"422 {resp.text[:300]}")
            return _Outcome(False, "bad_response")
        if status == 413:
            return self._split_or_dead_letter(batch, "413 batch too large")
        if status in (401, 403):
            if not self._auth_logged:
                log.error(
                    "ingest token rejected: check WATCHER_INGEST_TOKEN (backend answered %d at %s)", status, self.url
                )
                self._auth_logged = True
            return _Outcome(False, f"auth_{status}")
        retry_after = _retry_after(resp)
        if status == 429 or status == 503:
            return _Outcome(False, f"http_{status}", retry_after)
        if status >= 500:
            return _Outcome(False, "http_5xx", retry_after)
        if status == 404:
            return _Outcome(False, "http_404")
        return _Outcome(False, f"http_{status}")

    def _apply(self, batch: list[tuple[int, dict]], result: wire.BatchResult) -> None:
        if not batch:
            return  # heartbeat
        rejected = {}
        for rej in result.rejected:
            if 0 <= rej.index < len(batch):
                rejected[rej.index] = rej.error
        for index, error in rejected.items():
            rowid, event = batch[index]
            if self.outbox.dead_letter(rowid, error):
                self.metrics.dead_letters.inc()
        if result.ignored and not self._ignored_logged:
            fields = sorted({f for i in result.ignored for f in i.fields})
            log.warning(
                "the backend stored %d events without fields it does not know (%s): upgrade the backend to keep them",
                len(result.ignored),
                ", ".join(fields[:20]),
            )
            self._ignored_logged = True
        acked = [rowid for i, (rowid, _) in enumerate(batch) if i not in rejected]
        self.outbox.ack(acked)
        self.metrics.batches.inc()
        self.metrics.sent.inc(len(acked))
        self.metrics.duplicates.inc(result.duplicates)

    def _split_or_dead_letter(self, batch: list[tuple[int, dict]], error: str) -> _Outcome:
        if len(batch) == 1:
            rowid, _ = batch[0]
            if self.outbox.dead_letter(rowid, error):
                self.metrics.dead_letters.inc()
            self._grow_batch()
            return _Outcome(True)
        self._current_batch = max(1, len(batch) // 2)
        log.info(
            "sender: backend refused a batch of %d (%s); retrying with %d", len(batch), error[:80], self._current_batch
        )
        self.metrics.failures.labels("split").inc()
        return _Outcome(True)  # not a backend outage: go again at once with the smaller batch

    def _grow_batch(self) -> None:
        if self._current_batch < self.batch_size:
            self._current_batch = min(self.batch_size, self._current_batch * 2)


def _parse_result(resp: httpx.Response) -> wire.BatchResult | None:
    try:
        return wire.BatchResult.model_validate(resp.json())
    except (ValueError, ValidationError):
        return None


def _retry_after(resp: httpx.Response) -> float | None:
    value = resp.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
