"""One reported process from its exec to its exit (``Pending``), and the rules that tie an exit or a
later exec to it."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from watcher_agents.procmon import procfs
from watcher_agents.procmon.attribution import Attributed
from watcher_agents.procmon.events import ExecEvent, ExitEvent
from watcher_core import wire


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown-boot"


def ktime_to_wall(ktime_ns: int) -> datetime:
    offset = time.time_ns() - time.monotonic_ns()
    return datetime.fromtimestamp((ktime_ns + offset) / 1e9, tz=UTC)


@dataclass
class Pending:
    """One reported process (pid), from its first exec to its exit. A process may exec again (a script
    ending in ``exec python calc.py``, pyenv's shim, ``sh -c 'exec gcc ...'``): it stays ONE record,
    reported at its exit, that describes the last program image we could classify (``exec``/``what``)
    and keeps the first exec's start (``started_at``, ``first_ktime_ns``: the event id)."""

    exec: ExecEvent  # the image the record describes (argv, filename)
    what: Attributed
    started_at: datetime  # the process's first exec
    first_ktime_ns: int = 0  # ktime of the first exec: the event id, stable across resends
    last_ktime_ns: int = 0  # ktime of the latest exec: the exit must belong to it (eBPF start_ns)
    # Adopted at start (running before procmon, its exec not seen): its start time in clock ticks
    # after boot, from /proc/<pid>/stat. The event id comes from it, so any later procmon run that
    # adopts the same process builds the same id.
    adopted_ticks: int | None = None
    # What it (and its process tree) wrote to stderr; None: not captured (capture off, the process
    # connector, or adopted: its writes before procmon started were not seen).
    stderr: bytearray | None = None
    stderr_truncated: bool = False

    def __post_init__(self) -> None:
        self.first_ktime_ns = self.first_ktime_ns or self.exec.ktime_ns
        self.last_ktime_ns = self.last_ktime_ns or self.exec.ktime_ns


def event_id(node: str, boot: str, rec: Pending) -> str:
    """Deterministic, so a resend after a crash is deduplicated: from the first exec's ktime, or for an
    adopted process from its /proc start ticks (the same in every procmon run that adopts it)."""
    if rec.adopted_ticks is not None:
        return wire.make_event_id(node, boot, rec.exec.pid, "start-ticks", rec.adopted_ticks)
    return wire.make_event_id(node, boot, rec.exec.pid, rec.first_ktime_ns)


def exit_matches(rec: Pending, ev: ExitEvent, ticks_now: int | None = None) -> bool:
    """Does this exit end the process ``rec`` describes (not an earlier or later program with its pid)?

    * eBPF: the exit carries the start ktime of the kernel's ``tracked`` entry: the latest exec's, or
      for an adopted process the very value procmon put there (``EbpfTracer.track``): equal or not.
    * process connector: no start time. For an adopted process /proc may still show the exiting one
      (``ticks_now``): a start more than a tick away is another program that reused the pid.
      Unknown (already reaped) counts as a match, as for any exit the connector reports.
    """
    if ev.start_ns is not None:
        return ev.start_ns == rec.last_ktime_ns
    if rec.adopted_ticks is not None and ticks_now is not None:
        return procfs.same_start(ticks_now, rec.adopted_ticks)
    return True


def same_process(earlier: ExecEvent, later: ExecEvent) -> bool:
    """Is ``later`` an exec of the process ``earlier`` started (not a new process that reuses the pid
    after an exit we missed)? An exec keeps the parent; a reused pid almost never has the same one.
    An unknown parent (0: the process was gone before /proc was read) counts as the same."""
    return not earlier.ppid or not later.ppid or earlier.ppid == later.ppid
