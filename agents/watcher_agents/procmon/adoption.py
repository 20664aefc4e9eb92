"""Processes already running when procmon starts (a student's server or REPL across a restart): found
in /proc once, described as the exec they once were, and handed to the pipeline, which adopts those it
would have reported had their exec been seen.

Call after the tracer is attached and before it polls: an exit after the attach cannot be missed, and
an exec after it is in the buffer (the kernel ``tracked`` entry it made wins, see ``Pipeline.adopt``).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from watcher_agents.procmon import procfs
from watcher_agents.procmon.context import ProcessContext
from watcher_agents.procmon.events import ExecEvent


@dataclass
class Running:
    """A process found in /proc at start, described as the exec it once was."""

    exec: ExecEvent  # ktime_ns: its start on CLOCK_MONOTONIC (the kernel's clock)
    start_ticks: int  # /proc/<pid>/stat field 22
    started_at: datetime


def scan(context: ProcessContext) -> list[Running]:
    """Every live process but procmon itself, as it started."""
    hz = procfs.CLK_TCK
    boot_now, mono_now, wall_now = (time.clock_gettime_ns(time.CLOCK_BOOTTIME), time.monotonic_ns(), time.time_ns())
    own = os.getpid()
    found = []
    for pid in procfs.live_pids():
        if pid != own:
            running = read_running(context, pid, hz, boot_now, mono_now, wall_now)
            if running is not None:
                found.append(running)
    return found


def read_running(
    context: ProcessContext, pid: int, hz: int, boot_now: int, mono_now: int, wall_now: int
) -> Running | None:
    """A live process as the exec event it once was (None: gone, a zombie or a kernel thread)."""
    stat = procfs.read_proc_stat(pid)
    if stat is None or stat.state in ("Z", "X"):
        return None
    exe = procfs.read_exe(pid)
    if not exe:
        return None  # kernel threads have no executable
    mono_ns, wall_ns = procfs.start_clocks(stat.start_ticks, hz, boot_now, mono_now, wall_now)
    ev = context.describe_live(pid, exe, stat, mono_ns)
    return Running(ev, stat.start_ticks, datetime.fromtimestamp(wall_ns / 1e9, tz=UTC))


def still_the_same(pid: int, start_ticks: int) -> bool:
    """Is ``pid`` still the live process that started at ``start_ticks`` (not ended, not reused)?"""
    again = procfs.read_proc_stat(pid)
    return again is not None and again.state not in ("Z", "X") and procfs.same_start(again.start_ticks, start_ticks)
