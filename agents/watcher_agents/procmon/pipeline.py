"""From kernel events to wire events: enrich at exec time, attribute, wait for the exit, then put
``process.compile`` / ``process.run`` into the durable outbox.

Threads:

* the tracer thread calls ``on_exec`` / ``on_exit`` for each event of a poll. ``on_exec`` reads /proc
  (cwd, hostname, and argv when the tracer has none) at once, because the process may be gone a few
  ms later. After the poll, ``handoff`` attributes the execs, keeps the reported ones until their
  exit, builds the wire events and puts them into the outbox in batches (one SQLite transaction per
  batch), all in the same thread;
* the housekeeping thread (``run``) flushes events that waited ``FLUSH_AFTER`` seconds, retries when
  the outbox refused a batch, and expires cgroup verdicts.

Memory stays bounded under an exec storm: events wait as JSON text (``Serialized``), and once
``BACKLOG`` of them wait while the outbox accepts, the tracer thread writes them itself. It then reads
the ring buffer more slowly, and what the kernel cannot hold meanwhile is counted there as lost. Only
while the outbox refuses do events pile up in memory, up to ``MAX_UNSENT_BYTES``, then they are
dropped and counted.

The in-kernel filter learns here: a cgroup with a student process is marked "student" at once; a
cgroup that shows only other processes for ``learn_seconds`` is marked "not a student's" and the kernel
drops its events from then on, until the verdict expires (``ignore_ttl``) and is learnt again.
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError

from watcher_agents.delivery.outbox import Outbox, OutboxUnavailable, Serialized
from watcher_agents.procmon import procfs
from watcher_agents.procmon.attribution import (
    NOT_STUDENT,
    OTHER_STUDENTS_CGROUP,
    Attributed,
    Attributor,
    Skip,
    resolve,
)
from watcher_agents.procmon.events import ExecEvent, ExitEvent
from watcher_agents.procmon.metrics import ProcmonMetrics
from watcher_core import identity, wire

log = logging.getLogger(__name__)

ROOT_CGROUP_ID = 1  # cgroup v2 root (and every process on a cgroup-v1-only host): never filtered
MAX_PENDING = 65536  # reported processes waiting for their exit
MAX_LINEAGE = 65536
MAX_ATTRIBUTIONS = 4096  # cached attribution results (pure function of exec facts)
MAX_UNSENT_BYTES = 32 * 2**20  # JSON of the events waiting while the outbox refuses (about 60,000 runs)
BATCH = 200
BACKLOG = 10 * BATCH  # events waiting for the housekeeping thread before the tracer thread writes them
FLUSH_AFTER = 0.2  # seconds an event may wait in memory for its batch
MAX_OWN_CWD = 4096  # processes whose latest chdir is remembered
OWN_CWD_TRUST_SECONDS = 5.0


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

    def __post_init__(self) -> None:
        self.first_ktime_ns = self.first_ktime_ns or self.exec.ktime_ns
        self.last_ktime_ns = self.last_ktime_ns or self.exec.ktime_ns


@dataclass
class Running:
    """A process found in /proc at start, described as the exec it once was."""

    exec: ExecEvent  # ktime_ns: its start on CLOCK_MONOTONIC (the kernel's clock)
    start_ticks: int  # /proc/<pid>/stat field 22
    started_at: datetime


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


class CgroupLearner:
    """Per cgroup: student (1), not a student's (2, filtered in the kernel), or still learning."""

    def __init__(self, tracer, learn_seconds: float, ignore_ttl: float, enabled: bool) -> None:
        self.tracer = tracer
        self.learn_seconds, self.ignore_ttl, self.enabled = learn_seconds, ignore_ttl, enabled
        self.student: set[int] = set()
        self.first_seen: dict[int, float] = {}
        self.ignored: dict[int, float] = {}  # cgroup -> when the verdict expires
        self.owners: OrderedDict[int, identity.Student] = OrderedDict()  # cgroup -> its first student

    def owned_by(self, cgroup_id: int, student: identity.Student, *, pod: bool) -> bool:
        """May a process of this cgroup be recorded as ``student``? A pod's container is one student's:
        its first process seen with a pod name names them (code-server, with the pod's own hostname).
        The hostname is read per UTS namespace, and in a user namespace a student can make their own
        named after a classmate's pod, or a mount namespace with a classmate's workspace path; the
        cgroup they cannot leave. Only a pod name (``pod``) teaches the owner: on a plain host one shell
        may work in several students' folders (``watcher demo`` plays two students from one process).
        The root cgroup is anyone's."""
        if not cgroup_id or cgroup_id == ROOT_CGROUP_ID:
            return True
        owner = self.owners.get(cgroup_id)
        if owner is None:
            if not pod:
                return True
            self.owners[cgroup_id] = student
            if len(self.owners) > MAX_LINEAGE:
                self.owners.popitem(last=False)
            return True
        return owner == student

    def saw(self, cgroup_id: int, is_student: bool, now: float) -> None:
        if not cgroup_id:
            return
        if is_student:
            if cgroup_id not in self.student:
                self.student.add(cgroup_id)
                self.first_seen.pop(cgroup_id, None)
                self.tracer.set_cgroup_verdict(cgroup_id, 1)
            return
        if not self.enabled or cgroup_id in self.student or cgroup_id == ROOT_CGROUP_ID:
            return
        first = self.first_seen.setdefault(cgroup_id, now)
        if now - first >= self.learn_seconds and cgroup_id not in self.ignored:
            self.ignored[cgroup_id] = now + self.ignore_ttl
            self.tracer.set_cgroup_verdict(cgroup_id, 2)
            log.debug("cgroup %d: no student process in %.0f s, filtered in the kernel", cgroup_id, now - first)
        if len(self.first_seen) > MAX_LINEAGE:
            self.first_seen.clear()

    def expire(self, now: float) -> None:
        for cg, until in list(self.ignored.items()):
            if now >= until:
                del self.ignored[cg]
                self.first_seen.pop(cg, None)
                self.tracer.set_cgroup_verdict(cg, None)

    def counts(self) -> dict[str, int]:
        return {
            "student": len(self.student),
            "ignored": len(self.ignored),
            "learning": len(set(self.first_seen) - set(self.ignored)),
        }


class Pipeline:
    def __init__(
        self,
        *,
        node: str,
        attributor: Attributor,
        outbox: Outbox,
        metrics: ProcmonMetrics,
        max_args: int = 64,
        argv_size: int = 4096,
        learn_seconds: float = 5.0,
        ignore_ttl: float = 600.0,
        kernel_filter: bool = True,
    ) -> None:
        self.node = node
        self.boot = boot_id()
        self.attributor = attributor
        self.outbox = outbox
        self.metrics = metrics
        self.max_args, self.argv_size = max_args, argv_size
        self.hostnames = procfs.HostnameResolver()
        self.pending: OrderedDict[int, Pending] = OrderedDict()
        self.lineage: OrderedDict[int, tuple[int, bool]] = OrderedDict()  # pid -> (ppid, is a compiler)
        # pid -> (cwd, hostname) last seen for it or for one of its children (tracer thread only)
        self.recent: OrderedDict[int, tuple[str, str | None]] = OrderedDict()
        self._recent_lock = threading.Lock()
        # pid -> (its cwd after its latest chdir, monotonic time) (tracer thread only)
        self.own_cwd: OrderedDict[int, tuple[str, float]] = OrderedDict()
        self.unsent: list[Serialized] = []
        self._unsent_bytes = 0
        self._outbox_refusing = False  # the last put was refused: no back-pressure, keep in memory
        self._flush_lock = threading.Lock()  # one writer at a time (both threads may flush)
        self._batch: list = []  # events of the current poll (tracer thread only)
        self._attributions: OrderedDict[tuple, Attributed | Skip] = OrderedDict()
        self._first_unsent = 0.0
        self._last_outbox_warning = 0.0
        self._lock = threading.Lock()
        self._flush_now = threading.Event()
        self.tracer = None
        self.learner: CgroupLearner | None = None
        self._forgers: set[int] = set()  # cgroups whose processes claimed another student (logged once)
        self._learn = (learn_seconds, ignore_ttl, kernel_filter)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._idle = threading.Event()
        metrics.pending = lambda: len(self.pending)
        metrics.queue_depth = lambda: len(self._batch)
        metrics.verdicts = lambda: self.learner.counts() if self.learner else {}

    def attach(self, tracer) -> None:
        self.tracer = tracer
        self.learner = CgroupLearner(tracer, *self._learn)
        tracer.after_poll = self.handoff
        if hasattr(tracer, "on_chdir"):
            tracer.on_chdir = self.on_chdir
        self.metrics.mode = tracer.mode
        self.metrics.tracer_counters = tracer.counters

    # --- tracer thread ---------------------------------------------------------------------------

    def on_exec(self, ev: ExecEvent) -> None:
        self.enrich(ev)
        self._queue(("exec", ev))

    def on_exit(self, ev: ExitEvent) -> None:
        self._queue(("exit", ev))

    def _queue(self, item: tuple) -> None:
        # One poll is not a bounded amount of work: libbpf's ring loop re-reads the producer position, so
        # under an exec storm a single poll went on draining while new records kept arriving, and every
        # one of them waited here (+47 MiB for 20,000 execs on a busy machine). Past BATCH, hand over now.
        self._batch.append(item)
        if len(self._batch) >= BATCH:
            self.handoff()

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
                own = self.own_cwd.get(pid)
                base = own[0] if own else (self.recent.get(pid) or (None,))[0]
                cwd = posixpath.normpath(posixpath.join(base, path)) if base else None
        if cwd is not None:
            seen = self.recent.get(pid)
            host = seen[1] if seen else self.hostnames.resolve(pid)
            with self._recent_lock:
                self.recent[pid] = (cwd, host)
            self.own_cwd[pid] = (cwd, time.monotonic())
            while len(self.own_cwd) > MAX_OWN_CWD:
                self.own_cwd.popitem(last=False)

    def handoff(self) -> None:
        """Called by the tracer after each poll: the poll's events are processed right here, in the
        tracer thread. One thread for the hot path: no queue, no cross-thread wakeup and no GIL
        hand-over per event (they cost more than the processing itself)."""
        if not self._batch:
            return
        batch, self._batch = self._batch, []
        with self._lock:
            self._idle.clear()
            for kind, ev in batch:
                try:
                    if kind == "exec":
                        self.handle_exec(ev)
                    else:
                        self.handle_exit(ev)
                except Exception:
                    log.exception("cannot process a %s event of pid %s", kind, getattr(ev, "pid", "?"))
            # The housekeeping thread writes them to the outbox (one SQLite transaction per batch),
            # so this thread goes straight back to reading the kernel...
            waiting = len(self.unsent)
        if waiting >= BATCH:
            self._flush_now.set()
        # ...unless it cannot keep up: then this thread writes, and the kernel's ring buffer (which
        # counts what it drops) is the queue, not this process's memory.
        if waiting >= BACKLOG and not self._outbox_refusing:
            self._flush()

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
            own = self.own_cwd.get(pid)
            if own is not None and time.monotonic() - own[1] < OWN_CWD_TRUST_SECONDS:
                ev.cwd = own[0]
                self.metrics.cwd_from_chdir.inc()
        if (ev.cwd is None or ev.hostname is None) and ev.ppid:
            # Gone already (a 1 ms program). A shell, make or an IDE forks the child in its own
            # directory and namespaces, so the parent is the best witness left: live if it still
            # runs, else what its latest other child (or its own exec) showed.
            cwd, host = procfs.read_cwd(ev.ppid), self.hostnames.resolve(ev.ppid)
            seen = self.recent.get(ev.ppid)
            if seen is not None:
                cwd, host = cwd or seen[0], host or seen[1]
            ev.cwd, ev.hostname = ev.cwd or cwd, ev.hostname or host
            self.metrics.from_parent.inc()
        if ev.cwd is not None:
            with self._recent_lock:
                self.recent[pid] = (ev.cwd, ev.hostname)
                if ev.ppid:
                    self.recent[ev.ppid] = (ev.cwd, ev.hostname)
                while len(self.recent) > MAX_LINEAGE:
                    self.recent.popitem(last=False)
        if ev.argv_missing or not ev.argv:
            argv = procfs.read_cmdline(pid, self.argv_size + 1)  # one byte more: _cap_argv sees the cut
            if argv:
                ev.argv_truncated = ev.argv_truncated or len(argv) > self.max_args
                ev.argv = _cap_argv(argv[: self.max_args], self.argv_size, ev)
        if not ev.filename:
            ev.filename = procfs.read_exe(pid) or (ev.argv[0] if ev.argv else "")
        if ev.uid < 0:
            uid = procfs.read_uid(pid)
            ev.uid = -1 if uid is None else uid
        if ev.cwd is None:
            self.metrics.proc_gone.inc()

    # --- adoption: processes already running at start ---------------------------------------------

    def adopt_running(self) -> int:
        """Scan /proc once and adopt every live process that would have been reported had its exec been
        seen (running when procmon started or restarted). Call after the tracer is attached and before
        it polls: an exit after the attach cannot be missed, and an exec after it is in the buffer
        (the kernel ``tracked`` entry it made wins, see ``adopt``). Returns how many were adopted."""
        hz = procfs.CLK_TCK
        boot_now, mono_now, wall_now = (time.clock_gettime_ns(time.CLOCK_BOOTTIME), time.monotonic_ns(), time.time_ns())
        own = os.getpid()
        found = []
        for pid in procfs.live_pids():
            if pid != own:
                running = self.read_running(pid, hz, boot_now, mono_now, wall_now)
                if running is not None:
                    found.append(running)
        adopted = self.adopt(found)
        log.info("adopted %d running student processes", adopted)
        return adopted

    def read_running(self, pid: int, hz: int, boot_now: int, mono_now: int, wall_now: int) -> Running | None:
        """A live process as the exec event it once was (None: gone, a zombie or a kernel thread)."""
        stat = procfs.read_proc_stat(pid)
        if stat is None or stat.state in ("Z", "X"):
            return None
        exe = procfs.read_exe(pid)
        if not exe:
            return None  # kernel threads have no executable
        mono_ns, wall_ns = procfs.start_clocks(stat.start_ticks, hz, boot_now, mono_now, wall_now)
        ev = ExecEvent(pid=pid, ktime_ns=mono_ns, filename=exe, ppid=stat.ppid, comm=stat.comm)
        argv = procfs.read_cmdline(pid, self.argv_size + 1) or [exe]
        ev.argv_truncated = len(argv) > self.max_args
        ev.argv = _cap_argv(argv[: self.max_args], self.argv_size, ev)
        ev.cwd = procfs.read_cwd(pid)
        ev.hostname = self.hostnames.resolve(pid)
        uid = procfs.read_uid(pid)
        ev.uid = -1 if uid is None else uid
        started_at = datetime.fromtimestamp(wall_ns / 1e9, tz=UTC)
        return Running(ev, stat.start_ticks, started_at)

    def adopt(self, found: list[Running]) -> int:
        """Attribute the running processes with the exec rules and keep the reported ones until their exit.

        Not adopted: other people's processes, a compiler's children (cc1, as, ld: gcc is the compile),
        a process already pending, one whose exec after the attach the kernel is already tracking, and
        one that is gone (or whose pid was reused) once the kernel entry is in place."""
        now = time.monotonic()
        adopted = 0
        with self._lock:
            students: list[tuple[Running, Attributed | Skip]] = []
            for r in found:  # first the lineage, as handle_exec keeps it, so children can see their parents
                result = self._attribute(r.exec, False)
                if isinstance(result, Skip) and result.reason == NOT_STUDENT:
                    continue
                students.append((r, result))
                compiler = self.attributor.classes.compiler_family(r.exec.filename) is not None
                self.lineage[r.exec.pid] = (r.exec.ppid, compiler)
            # oldest first: a container's first process (code-server, with the pod's own name) names its
            # cgroup's student, before anything the student started in it (_claim)
            for r, result in sorted(students, key=lambda s: s[0].start_ticks):
                ev = r.exec
                pid = ev.pid
                if self._compiler_ancestor(ev.ppid):
                    continue
                ev.cgroup_id = ev.cgroup_id or procfs.read_cgroup_id(pid)
                if self.learner:  # its cgroup is a student's: its execs must not be filtered
                    self.learner.saw(ev.cgroup_id, True, now)
                result = self._claim(ev, result)
                if isinstance(result, Skip) or pid in self.pending:
                    continue
                if not self.tracer.track(pid, ev.ktime_ns):
                    continue  # exec'd after the attach: its exec event reports it
                again = procfs.read_proc_stat(pid)
                if (
                    again is None
                    or again.state in ("Z", "X")
                    or not procfs.same_start(again.start_ticks, r.start_ticks)
                ):
                    self.tracer.untrack(pid, ev.ktime_ns)  # ended before the entry was in place
                    continue
                self.pending[pid] = Pending(ev, result, r.started_at, adopted_ticks=r.start_ticks)
                adopted += 1
                log.debug(
                    "adopted pid %d %s (started %s): %s %s/%s %s",
                    pid,
                    ev.filename,
                    r.started_at.isoformat(),
                    result.type,
                    result.student.dirname,
                    result.assignment,
                    result.path,
                )
        self.metrics.adopted.inc(adopted)
        return adopted

    # --- housekeeping thread ---------------------------------------------------------------------

    def start(self) -> Pipeline:
        self._thread = threading.Thread(target=self.run, name="procmon-housekeeping", daemon=True)
        self._thread.start()
        return self

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def run(self) -> None:
        """Flushes what waited FLUSH_AFTER seconds, retries a refused outbox, expires cgroup verdicts."""
        last_maintenance = time.monotonic()
        while not self._stop.is_set():
            self._flush_now.wait(0.05)
            self._flush_now.clear()
            now = time.monotonic()
            if self.unsent and (len(self.unsent) >= BATCH or now - self._first_unsent >= FLUSH_AFTER):
                self._flush()
            if not self.unsent:
                self._idle.set()
            if now - last_maintenance > 5:
                last_maintenance = now
                if self.learner:
                    with self._lock:
                        self.learner.expire(now)
        self._flush()

    def stop(self, timeout: float = 10) -> None:
        self.handoff()
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.hostnames.close()

    def wait_idle(self, timeout: float) -> bool:
        """(tests, benchmarks) True once every handed-over event is processed and in the outbox."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._idle.wait(0.1):
                with self._lock:
                    if not self.unsent and not self._batch:
                        return True
        return False

    def handle_exec(self, ev: ExecEvent) -> None:
        now = time.monotonic()
        earlier = self.pending.get(ev.pid)
        if earlier is not None and not same_process(earlier.exec, ev):
            # A new process with the pid of one whose exit we never got (lost event): that one is
            # over, with an unknown status.
            del self.pending[ev.pid]
            self._emit(earlier, ExitEvent(pid=ev.pid, ktime_ns=ev.ktime_ns, exit_code=None, signal=None))
            earlier = None
        parent_is_compiler = self._compiler_ancestor(ev.ppid)
        result = self._attribute(ev, parent_is_compiler)
        result = self._claim(ev, result)
        is_student = not (isinstance(result, Skip) and result.reason == NOT_STUDENT)
        if self.learner:
            self.learner.saw(ev.cgroup_id, is_student, now)
        if is_student:
            compiler = self.attributor.classes.compiler_family(ev.filename) is not None
            self.lineage[ev.pid] = (ev.ppid, compiler)
            if len(self.lineage) > MAX_LINEAGE:
                self.lineage.popitem(last=False)
        if earlier is not None:
            self._reexec(earlier, ev, result)
            return
        if isinstance(result, Skip):
            if result.reason != NOT_STUDENT or ev.cwd is None:
                log.debug(
                    "pid %d (ppid %d) %s skipped (%s): cwd=%s host=%s argv=%s",
                    ev.pid,
                    ev.ppid,
                    ev.filename,
                    result.reason,
                    ev.cwd,
                    ev.hostname,
                    ev.argv[:4],
                )
            self.metrics.count_filtered(result.reason)
            self.tracer.untrack(ev.pid, ev.ktime_ns)
            return
        log.debug(
            "pid %d %s: %s %s/%s %s",
            ev.pid,
            ev.filename,
            result.type,
            result.student.dirname,
            result.assignment,
            result.path,
        )
        self.pending[ev.pid] = Pending(ev, result, ktime_to_wall(ev.ktime_ns))
        if len(self.pending) > MAX_PENDING:
            _pid, _old = self.pending.popitem(last=False)
            self.metrics.dropped.labels("pending_evicted").inc()

    def _reexec(self, rec: Pending, ev: ExecEvent, result: Attributed | Skip) -> None:
        """A reported process exec'd again. Its exit status will be the new image's, so the record
        describes the new image when we can classify it (``run.sh`` -> ``python calc.py``: one python
        run; ``sh -c 'exec gcc ...'``: one compile). An image we cannot classify (a student binary
        exec'ing /bin/true, pyenv's bash helpers between the shim and python, a compiler's internal
        re-exec) does not replace a classified one: the record keeps the last classified image, with
        the exit status of the process. Either way it is one process: the first exec's start and
        event id, and the exit of the latest exec (never untracked in the kernel)."""
        self.metrics.reexecs.inc()
        rec.last_ktime_ns = ev.ktime_ns
        if isinstance(result, Skip):
            log.debug(
                "pid %d exec'd %s (%s): still reported as %s %s",
                ev.pid,
                ev.filename,
                result.reason,
                rec.what.type,
                rec.what.path,
            )
            return
        log.debug(
            "pid %d exec'd %s: now %s %s/%s %s (was %s %s)",
            ev.pid,
            ev.filename,
            result.type,
            result.student.dirname,
            result.assignment,
            result.path,
            rec.what.type,
            rec.what.path,
        )
        rec.exec, rec.what = ev, result

    def _claim(self, ev: ExecEvent, result: Attributed | Skip) -> Attributed | Skip:
        """The record of a process whose cgroup belongs to another student is refused. Every process of a
        student pod (code-server and its shells too, not only compiles and runs) teaches its cgroup's
        owner, so the container's genuine processes name it long before the student could forge one."""
        if self.learner is None or not ev.cgroup_id:
            return result
        if isinstance(result, Attributed):
            student, view = result.student, result.view
        elif result.reason == NOT_STUDENT:
            return result
        else:
            ctx = self.attributor.context(ev.hostname, ev.cwd, resolve(ev.filename, ev.cwd))
            if ctx is None:
                return result
            student, view = ctx.student, ctx.view
        if self.learner.owned_by(ev.cgroup_id, student, pod=view == "pod"):
            return result
        log.log(
            logging.DEBUG if ev.cgroup_id in self._forgers else logging.WARNING,  # once per cgroup
            "pid %d %s claims %s, but its cgroup %d is %s's: not recorded",
            ev.pid,
            ev.filename,
            student.dirname,
            ev.cgroup_id,
            self.learner.owners[ev.cgroup_id].dirname,
        )
        self._forgers.add(ev.cgroup_id)
        return Skip(OTHER_STUDENTS_CGROUP) if isinstance(result, Attributed) else result

    def _attribute(self, ev: ExecEvent, parent_is_compiler: bool) -> Attributed | Skip:
        """``Attributor.attribute`` is a pure function of these facts; students re-run the same program
        from the same folder over and over, so an LRU cache saves most of the path parsing."""
        host = ev.hostname if ev.hostname and ev.hostname.startswith(identity.POD_NAME_PREFIX) else None
        key = (host, ev.cwd, ev.filename, tuple(ev.argv), parent_is_compiler)
        result = self._attributions.get(key)
        if result is None:
            result = self.attributor.attribute(ev, parent_is_compiler=parent_is_compiler)
            self._attributions[key] = result
            if len(self._attributions) > MAX_ATTRIBUTIONS:
                self._attributions.popitem(last=False)
        else:
            self._attributions.move_to_end(key)
        return result

    def _compiler_ancestor(self, ppid: int) -> bool:
        for _ in range(3):  # gcc -> lto-wrapper -> gcc; clang -> clang -cc1
            entry = self.lineage.get(ppid)
            if entry is None:
                return False
            if entry[1]:
                return True
            ppid = entry[0]
        return False

    def handle_exit(self, ev: ExitEvent) -> None:
        rec = self.pending.get(ev.pid)
        if rec is None:
            return  # not a process we report (or exited before we learnt it was not)
        ticks_now = None
        if ev.start_ns is None and rec.adopted_ticks is not None:
            stat = procfs.read_proc_stat(ev.pid)
            ticks_now = stat.start_ticks if stat else None
        if not exit_matches(rec, ev, ticks_now):
            log.debug(
                "pid %d: exit of another program (started %s, not %d)",
                ev.pid,
                ev.start_ns if ev.start_ns is not None else f"at tick {ticks_now}",
                rec.last_ktime_ns,
            )
            return  # a stale exit of an earlier program with this pid
        del self.pending[ev.pid]
        self._emit(rec, ev)

    def _emit(self, rec: Pending, ex: ExitEvent) -> None:
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
            argv=[_valid_text(a) for a in rec.exec.argv[: wire.MAX_ARGV_ITEMS]],
            argv_truncated=rec.exec.argv_truncated,
            cwd=w.cwd,
            exit_code=ex.exit_code,
            signal=ex.signal,
            started_at=rec.started_at,
            ended_at=max(ended, rec.started_at),
            pid=rec.exec.pid,
        )
        try:
            if w.type == wire.PROCESS_COMPILE:
                event = wire.ProcessCompile(compiler=w.compiler, sources=list(w.sources), output=w.output, **fields)
            else:
                event = wire.ProcessRun(kind=w.kind, target=w.target, **fields)
        except ValidationError as exc:
            self.metrics.invalid.inc()
            log.warning("pid %d: event not valid, dropped: %s", rec.exec.pid, wire.describe_error(exc))
            return
        self.metrics.process_events.labels(w.label).inc()
        entry = Serialized.of(event)
        if self._unsent_bytes + len(entry.body) > MAX_UNSENT_BYTES:  # the outbox has refused for long
            self.metrics.dropped.labels("outbox_unavailable").inc()
            return
        if not self.unsent:
            self._first_unsent = time.monotonic()
        self.unsent.append(entry)
        self._unsent_bytes += len(entry.body)

    def waiting(self) -> list[wire.Event]:
        """The events built but not yet in the outbox, oldest first."""
        with self._lock:
            return [wire.parse_event(json.loads(e.body)) for e in self.unsent]

    def _flush(self) -> None:
        """Move waiting events to the outbox, BATCH per transaction. The housekeeping thread writes
        outside ``_lock``, so the tracer thread is not held up by the disk unless BACKLOG events wait."""
        with self._flush_lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        while True:
            with self._lock:
                batch = self.unsent[:BATCH]
            if not batch:
                return
            try:
                self.outbox.put(batch)
                self._outbox_refusing = False
            except OutboxUnavailable as exc:
                self._outbox_refusing = True
                self.metrics.outbox_errors.inc()
                now = time.monotonic()
                if now - self._last_outbox_warning > 30:
                    self._last_outbox_warning = now
                    log.warning(
                        "outbox refused %d events; keeping them in memory and retrying: %s", len(self.unsent), exc
                    )
                return  # retried at the next tick
            with self._lock:
                del self.unsent[: len(batch)]
                self._unsent_bytes -= sum(len(e.body) for e in batch)


def _valid_text(arg: str) -> str:
    """An argument as valid UTF-8: bytes that are none become U+FFFD. argv is decoded with
    surrogateescape, which the wire (JSON) refuses: one such byte (``gcc -DX=$'\\xff' a.c``) made the
    whole event invalid, so a student could keep any compile or run off their record."""
    return arg.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _cap_argv(argv: list[str], limit: int, ev: ExecEvent) -> list[str]:
    out, used = [], 0
    for arg in argv:
        size = len(arg.encode("utf-8", "surrogateescape")) + 1
        if used + size > limit:
            ev.argv_truncated = True
            break
        out.append(arg[: wire.MAX_ARG_LENGTH])
        used += size
    return out
