"""What compilers and student programs write to stderr, kept with their record until it is reported.

The kernel side (bpf_stderr.c) sends the fd 2 writes of reported processes and their children, at most
``limit`` bytes per record. Here they join the record (``Pending.stderr``), bounded again per record
and in total (``max_held`` bytes while the processes run), and become the event's ``stderr`` text:
UTF-8 (undecodable bytes as U+FFFD), no NUL, at most ``limit`` characters, ``stderr_truncated`` when
anything was cut.
"""

from __future__ import annotations

from watcher_agents.procmon.events import StderrEvent
from watcher_agents.procmon.metrics import ProcmonMetrics
from watcher_agents.procmon.records import Pending

STDERR_LIMIT = 16384  # characters per event (the wire's bound) and bytes per record in the kernel
MAX_HELD = 16 * 2**20  # bytes of stderr held for all running records together


class StderrCapture:
    def __init__(self, metrics: ProcmonMetrics, *, limit: int = STDERR_LIMIT, max_held: int = MAX_HELD) -> None:
        self.metrics = metrics
        self.enabled = False  # the tracer captures (set at attach)
        self.limit, self.max_held = limit, max_held
        self.held = 0

    def start(self, rec: Pending) -> None:
        """A new record: captured from its exec on (adopted records are not: their start was not seen)."""
        if self.enabled and rec.adopted_ticks is None:
            rec.stderr = bytearray()

    def add(self, rec: Pending, ev: StderrEvent) -> None:
        if rec.stderr is None:
            return
        room = min(self.limit - len(rec.stderr), self.max_held - self.held)
        data = ev.data
        if len(data) > room:
            data = data[: max(room, 0)]
            rec.stderr_truncated = True
        rec.stderr += data
        self.held += len(data)
        self.metrics.stderr_bytes.inc(len(data))
        rec.stderr_truncated = rec.stderr_truncated or ev.truncated

    def release(self, rec: Pending) -> tuple[str | None, bool]:
        """The record is reported (or dropped): its stderr as the event's text, and whether it was cut."""
        if rec.stderr is None:
            return None, False
        self.held -= len(rec.stderr)
        text = rec.stderr.decode("utf-8", "replace").replace("\0", "")
        truncated = rec.stderr_truncated
        if len(text) > self.limit:
            text, truncated = text[: self.limit], True
        rec.stderr = None
        if truncated:
            self.metrics.stderr_truncated.inc()
        return text, truncated
