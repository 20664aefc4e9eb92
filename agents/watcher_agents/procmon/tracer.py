"""What the pipeline asks of a tracer. Both tracers implement it: ``EbpfTracer`` (ebpf.py: bcc,
tracepoints, an in-kernel filter and exit tracking) and ``ProcConnectorTracer`` (procconn.py: the
netlink process connector, pids only, everything reaches user space).

A tracer reads kernel events in its own thread and calls ``on_exec`` / ``on_exit`` / ``on_chdir`` /
``on_stderr`` for each, then ``after_poll`` once per poll: the pipeline processes the poll's events there, in the tracer
thread. The pipeline writes back to the kernel through the map methods; a tracer without kernel state
accepts them and does nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

from watcher_agents.procmon.events import ExecEvent, ExitEvent, StderrEvent

# set_cgroup_verdict values: the kernel drops the execs of a cgroup marked "not a student's"
VERDICT_STUDENT, VERDICT_IGNORE = 1, 2


class TracerUnavailable(Exception):
    """This tracer cannot run here; the message says why in one line."""


@runtime_checkable
class Tracer(Protocol):
    mode: str  # "ebpf" or "proc-connector": the procmon_mode label
    on_exec: Callable[[ExecEvent], None]
    on_exit: Callable[[ExitEvent], None]
    on_chdir: Callable[[int, str | None], None]  # pid, the path chdir was given (None: unknown)
    on_stderr: Callable[[StderrEvent], None]
    after_poll: Callable[[], None]
    captures_stderr: bool  # sends what reported processes write to fd 2 (False: cannot, or turned off)

    def load(self) -> None:
        """Attach to the kernel; raises ``TracerUnavailable`` with a one-line reason."""

    def start(self) -> Tracer:
        """Start the polling thread."""

    def stop(self) -> None: ...

    def alive(self) -> bool: ...

    def counters(self) -> dict[str, int]:
        """Kernel-side counts: lost, filtered_exec, exec, exit, argv_missing."""

    def set_cgroup_verdict(self, cgroup_id: int, verdict: int | None) -> None:
        """VERDICT_STUDENT, VERDICT_IGNORE, or None to forget the cgroup."""

    def track(self, pid: int, start_ns: int) -> bool:
        """Report the exit of a process whose exec was not seen (adopted at start); False if the tracer
        already follows a later exec of it."""

    def untrack(self, pid: int, start_ns: int) -> None:
        """No exit wanted for this exec of ``pid``."""

    def ignore_stderr(self, pid: int) -> None:
        """No stderr wanted from ``pid`` (nor from the children it starts from now on)."""
