"""From kernel events to wire events: the records of students' compiles and runs, from exec to exit.

Threads:

* the tracer thread calls ``on_exec`` / ``on_exit`` / ``on_chdir`` for each event of a poll. ``on_exec``
  reads /proc at once (``ProcessContext``), because the process may be gone a few ms later. After the
  poll, ``handoff`` attributes the execs, keeps the reported ones until their exit, and hands each
  finished record to the ``Emitter`` (the wire event, waiting for its batch), all in the same thread;
* the housekeeping thread (``run``) flushes events that waited, retries when the outbox refused a batch,
  and expires cgroup verdicts.

The parts, one concern each: context.py (what /proc says at exec time), learning.py (cgroups: the
in-kernel filter and their owner), adoption.py (processes running at start), records.py (one record,
and which exit belongs to it), emission.py (wire events into the outbox). The tracer is anything that
implements ``tracer.Tracer``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict

from watcher_agents.delivery.outbox import Outbox
from watcher_agents.procmon import adoption, procfs
from watcher_agents.procmon.adoption import Running
from watcher_agents.procmon.attribution import NOT_STUDENT, Attributed, Attributor, Skip
from watcher_agents.procmon.context import ProcessContext
from watcher_agents.procmon.emission import BATCH, MAX_UNSENT_BYTES, Emitter
from watcher_agents.procmon.events import ExecEvent, ExitEvent, StderrEvent
from watcher_agents.procmon.learning import CgroupLearner
from watcher_agents.procmon.metrics import ProcmonMetrics
from watcher_agents.procmon.records import Pending, boot_id, exit_matches, ktime_to_wall, same_process
from watcher_agents.procmon.stderr import StderrCapture
from watcher_agents.procmon.tracer import Tracer
from watcher_core import identity, wire

log = logging.getLogger(__name__)

MAX_PENDING = 65536  # reported processes waiting for their exit
MAX_LINEAGE = 65536
MAX_ATTRIBUTIONS = 4096  # cached attribution results (pure function of exec facts)


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
        max_unsent_bytes: int = MAX_UNSENT_BYTES,
        context: ProcessContext | None = None,
    ) -> None:
        self.node = node
        self.boot = boot_id()
        self.attributor = attributor
        self.metrics = metrics
        self.context = context or ProcessContext(metrics, max_args=max_args, argv_size=argv_size)
        self.emitter = Emitter(outbox, metrics, node=node, boot=self.boot, max_unsent_bytes=max_unsent_bytes)
        self.stderr = StderrCapture(metrics)
        self.pending: OrderedDict[int, Pending] = OrderedDict()  # reported processes until their exit
        self.lineage: OrderedDict[int, tuple[int, bool]] = OrderedDict()  # pid -> (ppid, is a compiler)
        self._batch: list = []  # events of the current poll (tracer thread only)
        self._attributions: OrderedDict[tuple, Attributed | Skip] = OrderedDict()
        self._lock = threading.Lock()
        self._flush_now = threading.Event()
        self.tracer: Tracer | None = None
        self.learner: CgroupLearner | None = None
        self._learn = (learn_seconds, ignore_ttl, kernel_filter)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._idle = threading.Event()
        metrics.pending = lambda: len(self.pending)
        metrics.queue_depth = lambda: len(self._batch)
        metrics.verdicts = lambda: self.learner.counts() if self.learner else {}

    def attach(self, tracer: Tracer) -> None:
        self.tracer = tracer
        self.learner = CgroupLearner(tracer, self.attributor, *self._learn)
        tracer.after_poll = self.handoff
        tracer.on_chdir = self.context.on_chdir
        tracer.on_stderr = self.on_stderr
        self.stderr.enabled = tracer.captures_stderr
        self.metrics.mode = tracer.mode
        self.metrics.tracer_counters = tracer.counters

    # --- tracer thread ---------------------------------------------------------------------------

    def on_exec(self, ev: ExecEvent) -> None:
        self.context.enrich(ev)
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

    def on_stderr(self, ev: StderrEvent) -> None:
        self._queue(("stderr", ev))

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
                    elif kind == "exit":
                        self.handle_exit(ev)
                    else:
                        self.handle_stderr(ev)
                except Exception:
                    log.exception("cannot process a %s event of pid %s", kind, getattr(ev, "pid", "?"))
        # The housekeeping thread writes them to the outbox (one SQLite transaction per batch),
        # so this thread goes straight back to reading the kernel...
        if self.emitter.count() >= BATCH:
            self._flush_now.set()
        # ...unless it cannot keep up: then this thread writes, and the kernel's ring buffer (which
        # counts what it drops) is the queue, not this process's memory.
        if self.emitter.overdue():
            self.emitter.flush()

    # --- adoption: processes already running at start ---------------------------------------------

    def adopt_running(self) -> int:
        """Scan /proc once and adopt every live process that would have been reported had its exec been
        seen (running when procmon started or restarted). Returns how many were adopted."""
        adopted = self.adopt(adoption.scan(self.context))
        log.info("adopted %d running student processes", adopted)
        return adopted

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
                self._note_lineage(r.exec)
            # oldest first: a container's first process (code-server, with the pod's own name) names its
            # cgroup's student, before anything the student started in it (claim)
            for r, result in sorted(students, key=lambda s: s[0].start_ticks):
                ev = r.exec
                pid = ev.pid
                if self._compiler_ancestor(ev.ppid):
                    continue
                ev.cgroup_id = ev.cgroup_id or procfs.read_cgroup_id(pid)
                if self.learner:  # its cgroup is a student's: its execs must not be filtered
                    self.learner.saw(ev.cgroup_id, True, now)
                    result = self.learner.claim(ev, result)
                if isinstance(result, Skip) or pid in self.pending:
                    continue
                if not self.tracer.track(pid, ev.ktime_ns):
                    continue  # exec'd after the attach: its exec event reports it
                if not adoption.still_the_same(pid, r.start_ticks):
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
        """Flushes what waited, retries a refused outbox, expires cgroup verdicts."""
        last_maintenance = time.monotonic()
        while not self._stop.is_set():
            self._flush_now.wait(0.05)
            self._flush_now.clear()
            now = time.monotonic()
            if self.emitter.due(now):
                self.emitter.flush()
            if not self.emitter.count():
                self._idle.set()
            if now - last_maintenance > 5:
                last_maintenance = now
                if self.learner:
                    with self._lock:
                        self.learner.expire(now)
        self.emitter.flush()

    def stop(self, timeout: float = 10) -> None:
        self.handoff()
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.context.close()

    def wait_idle(self, timeout: float) -> bool:
        """(tests, benchmarks) True once every handed-over event is processed and in the outbox."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._idle.wait(0.1):
                with self._lock:
                    if not self.emitter.count() and not self._batch:
                        return True
        return False

    def waiting(self) -> list[wire.Event]:
        """The events built but not yet in the outbox, oldest first."""
        return self.emitter.waiting()

    # --- records ---------------------------------------------------------------------------------

    def handle_exec(self, ev: ExecEvent) -> None:
        now = time.monotonic()
        earlier = self.pending.get(ev.pid)
        if earlier is not None and not same_process(earlier.exec, ev):
            # A new process with the pid of one whose exit we never got (lost event): that one is
            # over, with an unknown status.
            del self.pending[ev.pid]
            self._report(earlier, ExitEvent(pid=ev.pid, ktime_ns=ev.ktime_ns, exit_code=None, signal=None))
            earlier = None
        parent_is_compiler = self._compiler_ancestor(ev.ppid)
        result = self._attribute(ev, parent_is_compiler)
        if self.learner:
            result = self.learner.claim(ev, result)
        is_student = not (isinstance(result, Skip) and result.reason == NOT_STUDENT)
        if self.learner:
            self.learner.saw(ev.cgroup_id, is_student, now)
        if is_student:
            self._note_lineage(ev)
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
            if not parent_is_compiler:  # a compiler's children (cc1, ld) write the compile's diagnostics
                self.tracer.ignore_stderr(ev.pid)
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
        rec = self.pending[ev.pid] = Pending(ev, result, ktime_to_wall(ev.ktime_ns))
        self.stderr.start(rec)
        if len(self.pending) > MAX_PENDING:
            _pid, old = self.pending.popitem(last=False)
            self.stderr.release(old)
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

    def _note_lineage(self, ev: ExecEvent) -> None:
        compiler = self.attributor.classes.compiler_family(ev.filename) is not None
        self.lineage[ev.pid] = (ev.ppid, compiler)
        if len(self.lineage) > MAX_LINEAGE:
            self.lineage.popitem(last=False)

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
        self._report(rec, ev)

    def handle_stderr(self, ev: StderrEvent) -> None:
        rec = self._record_of(ev)
        if rec is not None:
            self.stderr.add(rec, ev)

    def _record_of(self, ev: StderrEvent) -> Pending | None:
        """The record a write joins: the owner's the kernel named, else the writer's own or that of the
        compile it runs under (a child forked before user space had decided about its parent)."""
        for pid in (ev.owner, ev.pid):
            for _ in range(4):  # gcc -> collect2 -> ld; gcc -> lto-wrapper -> gcc -> cc1
                rec = self.pending.get(pid)
                if rec is not None:
                    return rec
                entry = self.lineage.get(pid)
                if entry is None:
                    break
                pid = entry[0]
        return None

    def _report(self, rec: Pending, ex: ExitEvent) -> None:
        text, truncated = self.stderr.release(rec)
        self.emitter.emit(rec, ex, text, truncated)
