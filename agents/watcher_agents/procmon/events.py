"""What the tracers hand to the pipeline: one exec, one exit, and (eBPF) what a process wrote to stderr. Both tracers (eBPF and the netlink
process connector) produce these, so classification and attribution do not care where they came from."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ExecEvent:
    pid: int  # process id (tgid) after the exec
    ktime_ns: int  # CLOCK_MONOTONIC of the exec
    filename: str  # path given to execve (may be relative to cwd) or /proc/<pid>/exe
    argv: list[str] = field(default_factory=list)
    argv_truncated: bool = False
    argv_missing: bool = False  # the tracer did not see argv (read from /proc instead, if still there)
    ppid: int = 0  # 0 = unknown
    uid: int = -1
    cgroup_id: int = 0  # cgroup v2 id (0 = unknown)
    comm: str = ""
    # Read from /proc in the tracer thread the moment the event arrives (the process may be gone soon):
    cwd: str | None = None
    hostname: str | None = None  # UTS name of the process's namespace (the pod name in Kubernetes)


@dataclass
class ExitEvent:
    pid: int
    ktime_ns: int  # CLOCK_MONOTONIC of the exit
    exit_code: int | None  # None when killed by a signal or unknown
    signal: int | None  # terminating signal (1..64) or None
    start_ns: int | None = None  # ktime of the exec this exit belongs to (eBPF), None if unknown
    comm: str = ""


@dataclass
class StderrEvent:
    """Bytes a process wrote to fd 2 (eBPF only), for the record of ``owner``: the process itself, or
    the compile or run whose process tree it belongs to (gcc's cc1, as, collect2, ld)."""

    pid: int  # the writer
    owner: int  # whose record they join, as the kernel saw it
    data: bytes
    truncated: bool = False  # the owner's budget ran out here: what followed was not sent
