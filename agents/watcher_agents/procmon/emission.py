"""From a finished record to the durable outbox: build the wire event, let it wait as JSON text, and
write the waiting ones in batches (one SQLite transaction each).

Memory stays bounded under an exec storm: events wait as JSON text (``Serialized``), and once
``BACKLOG`` of them (or ``BACKLOG_BYTES`` of text) wait while the outbox accepts, the tracer thread
writes them itself (``overdue`` says when). It then reads the ring buffer more slowly, and what the
kernel cannot hold meanwhile is counted there as lost. Only while the outbox refuses do events pile up in memory, up to
``max_unsent_bytes``, then they are dropped and counted.
"""

from __future__ import annotations

import json
import logging
import threading
import time

from pydantic import ValidationError

from watcher_agents.delivery.outbox import Outbox, OutboxUnavailable, Serialized
from watcher_agents.procmon.events import ExitEvent
from watcher_agents.procmon.metrics import ProcmonMetrics
from watcher_agents.procmon.records import Pending, event_id, ktime_to_wall
from watcher_core import wire

log = logging.getLogger(__name__)

MAX_UNSENT_BYTES = 32 * 2**20  # JSON of the events waiting while the outbox refuses (about 60,000 runs)
BATCH = 200
BACKLOG = 10 * BATCH  # events waiting for the housekeeping thread before the tracer thread writes them
BACKLOG_BYTES = 4 * 2**20  # or their JSON (an event carries up to 16 KiB of stderr)
FLUSH_AFTER = 0.2  # seconds an event may wait in memory for its batch


class Emitter:
    def __init__(
        self,
        outbox: Outbox,
        metrics: ProcmonMetrics,
        *,
        node: str,
        boot: str,
        max_unsent_bytes: int = MAX_UNSENT_BYTES,
    ) -> None:
        self.outbox, self.metrics = outbox, metrics
        self.node, self.boot = node, boot
        self.max_unsent_bytes = max_unsent_bytes
        self._unsent: list[Serialized] = []
        self._unsent_bytes = 0
        self._first_unsent = 0.0
        self._refusing = False  # the last put was refused: no back-pressure, keep in memory
        self._last_warning = 0.0
        self._lock = threading.Lock()  # the waiting list (both threads)
        self._flush_lock = threading.Lock()  # one writer at a time (both threads may flush)

    # --- building ----------------------------------------------------------------------------------

    def emit(self, rec: Pending, ex: ExitEvent, stderr: str | None = None, stderr_truncated: bool = False) -> None:
        """The record's wire event, waiting for its batch (dropped and counted if it is not valid, or
        if the outbox has refused for so long that ``max_unsent_bytes`` wait)."""
        event = self.build(rec, ex, stderr, stderr_truncated)
        if event is None:
            return
        self.metrics.process_events.labels(rec.what.label).inc()
        entry = Serialized.of(event)
        with self._lock:
            if self._unsent_bytes + len(entry.body) > self.max_unsent_bytes:
                self.metrics.dropped.labels("outbox_unavailable").inc()
                return
            if not self._unsent:
                self._first_unsent = time.monotonic()
            self._unsent.append(entry)
            self._unsent_bytes += len(entry.body)

    def build(
        self, rec: Pending, ex: ExitEvent, stderr: str | None = None, stderr_truncated: bool = False
    ) -> wire.Event | None:
        w = rec.what
        ended = ktime_to_wall(ex.ktime_ns)
        fields = dict(
            event_id=event_id(self.node, self.boot, rec),
            timestamp=rec.started_at,
            node=self.node,
            source="procmon",
            course=w.student.course,
            section=w.student.section,
            student_id=w.student.student_id,
            assignment=w.assignment,
            path=w.path,
            argv=[valid_text(a) for a in rec.exec.argv[: wire.MAX_ARGV_ITEMS]],
            argv_truncated=rec.exec.argv_truncated,
            cwd=w.cwd,
            exit_code=ex.exit_code,
            signal=ex.signal,
            started_at=rec.started_at,
            ended_at=max(ended, rec.started_at),
            pid=rec.exec.pid,
            stderr=stderr,
            stderr_truncated=stderr_truncated,
        )
        try:
            if w.type == wire.PROCESS_COMPILE:
                return wire.ProcessCompile(compiler=w.compiler, sources=list(w.sources), output=w.output, **fields)
            return wire.ProcessRun(kind=w.kind, target=w.target, **fields)
        except ValidationError as exc:
            self.metrics.invalid.inc()
            log.warning("pid %d: event not valid, dropped: %s", rec.exec.pid, wire.describe_error(exc))
            return None

    # --- waiting -----------------------------------------------------------------------------------

    def waiting(self) -> list[wire.Event]:
        """The events built but not yet in the outbox, oldest first."""
        with self._lock:
            return [wire.parse_event(json.loads(e.body)) for e in self._unsent]

    def count(self) -> int:
        return len(self._unsent)

    @property
    def unsent_bytes(self) -> int:
        """Bytes of JSON waiting in memory (bounded by ``max_unsent_bytes``)."""
        return self._unsent_bytes

    def due(self, now: float) -> bool:
        """A batch is full, or an event waited ``FLUSH_AFTER`` seconds."""
        return bool(self._unsent) and (len(self._unsent) >= BATCH or now - self._first_unsent >= FLUSH_AFTER)

    def overdue(self) -> bool:
        """So many wait while the outbox accepts that the tracer thread must write them itself."""
        return (len(self._unsent) >= BACKLOG or self._unsent_bytes >= BACKLOG_BYTES) and not self._refusing

    # --- writing -----------------------------------------------------------------------------------

    def flush(self) -> None:
        """Move waiting events to the outbox, BATCH per transaction. The waiting list is not locked while
        the disk is written, so the tracer thread is not held up by it."""
        with self._flush_lock:
            while True:
                with self._lock:
                    batch = self._unsent[:BATCH]
                if not batch:
                    return
                try:
                    self.outbox.put(batch)
                    self._refusing = False
                except OutboxUnavailable as exc:
                    self._refusing = True
                    self.metrics.outbox_errors.inc()
                    now = time.monotonic()
                    if now - self._last_warning > 30:
                        self._last_warning = now
                        log.warning(
                            "outbox refused %d events; keeping them in memory and retrying: %s",
                            len(self._unsent),
                            exc,
                        )
                    return  # retried at the next tick
                with self._lock:
                    del self._unsent[: len(batch)]
                    self._unsent_bytes -= sum(len(e.body) for e in batch)


def valid_text(arg: str) -> str:
    """An argument as valid UTF-8: bytes that are none become U+FFFD. argv is decoded with
    surrogateescape, which the wire (JSON) refuses: one such byte (``gcc -DX=$'\\xff' a.c``) made the
    whole event invalid, so a student could keep any compile or run off their record."""
    return arg.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
