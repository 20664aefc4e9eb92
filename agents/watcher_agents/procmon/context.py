"""What an exec event lacks and only /proc knows (cwd, hostname, and argv when the tracer has none),
read in the tracer thread the moment the event arrives: the process may be gone a few ms later.

A 1 ms program is often gone already. Then the best witnesses left are its own chdir just before
the exec (eBPF carries the path chdir was given) and its parent: a shell, make or an IDE forks the
child in its own directory and namespaces.
"""

from __future__ import annotations

import posixpath
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from watcher_agents.procmon import procfs
from watcher_agents.procmon.events import ExecEvent
from watcher_agents.procmon.metrics import ProcmonMetrics
from watcher_core import wire

MAX_RECENT = 65536  # pids whose cwd and hostname are remembered for their children
MAX_OWN_CWD = 4096  # processes whose latest chdir is remembered
OWN_CWD_TRUST_SECONDS = 5.0


class ProcessContext:
    def __init__(
        self,
        metrics: ProcmonMetrics,
        *,
        max_args: int = 64,
        argv_size: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.metrics = metrics
        self.max_args, self.argv_size = max_args, argv_size
        self.clock = clock
        self.hostnames = procfs.HostnameResolver()
        # pid -> (cwd, hostname) last seen for it or for one of its children
        self._recent: OrderedDict[int, tuple[str, str | None]] = OrderedDict()
        self._recent_lock = threading.Lock()
        # pid -> (its cwd after its latest chdir, clock time)
        self._own_cwd: OrderedDict[int, tuple[str, float]] = OrderedDict()

    def close(self) -> None:
        self.hostnames.close()

    def on_chdir(self, pid: int, path: str | None = None) -> None:
        """A watched process changed directory: remember where it is now, for its short-lived children,
        and for its own next exec: a child that chdir's and execs a 1 ms program (Python's subprocess
        with cwd=) is gone before /proc is read, and its parent's cwd is not where it ran. ``path`` is
        what chdir was given (eBPF), used when /proc cannot tell any more."""
        cwd = procfs.read_cwd(pid)
        if cwd is None and path:
            if path.startswith("/"):
                cwd = posixpath.normpath(path)
            else:
                base = self.cwd_of(pid)
                cwd = posixpath.normpath(posixpath.join(base, path)) if base else None
        if cwd is not None:
            seen = self._recent.get(pid)
            host = seen[1] if seen else self.hostnames.resolve(pid)
            with self._recent_lock:
                self._recent[pid] = (cwd, host)
            self._own_cwd[pid] = (cwd, self.clock())
            while len(self._own_cwd) > MAX_OWN_CWD:
                self._own_cwd.popitem(last=False)

    def cwd_of(self, pid: int) -> str | None:
        """The last cwd known for ``pid`` (its own chdir, else what it or a child showed)."""
        own = self._own_cwd.get(pid)
        if own is not None:
            return own[0]
        seen = self._recent.get(pid)
        return seen[0] if seen else None

    def enrich(self, ev: ExecEvent) -> None:
        """Read what only /proc knows, right now (fast: a readlink, a stat, rarely a file)."""
        pid = ev.pid
        ev.cwd = procfs.read_cwd(pid)
        if not ev.ppid or not ev.comm:
            stat = procfs.read_stat(pid)
            if stat:
                ev.comm = ev.comm or stat[0]
                ev.ppid = ev.ppid or stat[1]
        ev.hostname = self.hostnames.resolve(pid)
        if ev.cwd is None:
            # Its own chdir just before this exec (a pid's entry is only trusted for a few seconds: a
            # pid is not reused that fast, and chdir-then-exec takes milliseconds).
            own = self._own_cwd.get(pid)
            if own is not None and self.clock() - own[1] < OWN_CWD_TRUST_SECONDS:
                ev.cwd = own[0]
                self.metrics.cwd_from_chdir.inc()
        if (ev.cwd is None or ev.hostname is None) and ev.ppid:
            # Gone already (a 1 ms program). A shell, make or an IDE forks the child in its own
            # directory and namespaces, so the parent is the best witness left: live if it still
            # runs, else what its latest other child (or its own exec) showed.
            cwd, host = procfs.read_cwd(ev.ppid), self.hostnames.resolve(ev.ppid)
            seen = self._recent.get(ev.ppid)
            if seen is not None:
                cwd, host = cwd or seen[0], host or seen[1]
            ev.cwd, ev.hostname = ev.cwd or cwd, ev.hostname or host
            self.metrics.from_parent.inc()
        if ev.cwd is not None:
            with self._recent_lock:
                self._recent[pid] = (ev.cwd, ev.hostname)
                if ev.ppid:
                    self._recent[ev.ppid] = (ev.cwd, ev.hostname)
                while len(self._recent) > MAX_RECENT:
                    self._recent.popitem(last=False)
        if ev.argv_missing or not ev.argv:
            argv = procfs.read_cmdline(pid, self.argv_size + 1)  # one byte more: cap_argv sees the cut
            if argv:
                ev.argv_truncated = ev.argv_truncated or len(argv) > self.max_args
                ev.argv = cap_argv(argv[: self.max_args], self.argv_size, ev)
        if not ev.filename:
            ev.filename = procfs.read_exe(pid) or (ev.argv[0] if ev.argv else "")
        if ev.uid < 0:
            uid = procfs.read_uid(pid)
            ev.uid = -1 if uid is None else uid
        if ev.cwd is None:
            self.metrics.proc_gone.inc()

    def describe_live(self, pid: int, exe: str, stat: procfs.ProcStat, mono_ns: int) -> ExecEvent:
        """A live process (adoption) as the exec event it once was."""
        ev = ExecEvent(pid=pid, ktime_ns=mono_ns, filename=exe, ppid=stat.ppid, comm=stat.comm)
        argv = procfs.read_cmdline(pid, self.argv_size + 1) or [exe]
        ev.argv_truncated = len(argv) > self.max_args
        ev.argv = cap_argv(argv[: self.max_args], self.argv_size, ev)
        ev.cwd = procfs.read_cwd(pid)
        ev.hostname = self.hostnames.resolve(pid)
        uid = procfs.read_uid(pid)
        ev.uid = -1 if uid is None else uid
        return ev


def cap_argv(argv: list[str], limit: int, ev: ExecEvent) -> list[str]:
    out, used = [], 0
    for arg in argv:
        size = len(arg.encode("utf-8", "surrogateescape")) + 1
        if used + size > limit:
            ev.argv_truncated = True
            break
        out.append(arg[: wire.MAX_ARG_LENGTH])
        used += size
    return out
