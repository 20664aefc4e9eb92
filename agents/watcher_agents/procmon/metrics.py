"""procmon's Prometheus metrics (on the agent's own registry, served on :9090/metrics).

Label values are bounded: ``process_name`` is a compiler family (gcc, g++, cc, c++, clang, clang++),
an interpreter family (python3, python) or ``binary``; never a raw executable name or path.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from watcher_agents.procmon.attribution import SKIP_REASONS

MODES = ("ebpf", "proc-connector")


class ProcmonMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        # The name and help text come from the deployment guide.
        self.process_events = Counter(
            "process_events_total", "Total number of process events detected", ["process_name"], registry=registry
        )
        self.filtered_counts: dict[str, int] = {r: 0 for r in SKIP_REASONS}
        self.proc_gone = Counter(
            "procmon_proc_read_misses_total",
            "Execs whose process was gone before /proc could be read (cwd unknown)",
            registry=registry,
        )
        self.from_parent = Counter(
            "procmon_cwd_from_parent_total",
            "Execs whose process was gone at once: cwd and hostname read from the parent",
            registry=registry,
        )
        self.cwd_from_chdir = Counter(
            "procmon_cwd_from_chdir_total",
            "Execs whose process was gone at once: cwd from its own chdir just before "
            "(e.g. a subprocess started with a working directory)",
            registry=registry,
        )
        self.invalid = Counter(
            "procmon_invalid_events_total",
            "Attributed processes whose event failed wire validation (logged)",
            registry=registry,
        )
        self.outbox_errors = Counter(
            "procmon_outbox_put_failures_total",
            "Times the outbox refused events (full disk or bound); they are retried",
            registry=registry,
        )
        self.reexecs = Counter(
            "procmon_reexecs_total",
            "Execs by a process already being reported (e.g. a script that execs python): "
            "still one compile/run, describing its last classified program",
            registry=registry,
        )
        self.adopted = Counter(
            "procmon_adopted",
            "Students' compiles and runs already running when procmon started (their exec "
            "was not seen): adopted from /proc and reported at their exit",
            registry=registry,
        )
        self.stderr_bytes = Counter(
            "procmon_stderr_bytes",
            "Bytes that compiles and runs (and their children) wrote to stderr, kept with their event",
            registry=registry,
        )
        self.stderr_truncated = Counter(
            "procmon_stderr_truncated",
            "Compiles and runs whose stderr was cut (past the per-process bound, or procmon's memory bound)",
            registry=registry,
        )
        self.dropped = Counter(
            "procmon_events_dropped_total", "Events dropped in user space", ["reason"], registry=registry
        )
        # procmon's own blind window before this start (heartbeat.py); set once the tracer is attached
        self.downtime = Gauge(
            "procmon_downtime_seconds",
            "Seconds procmon was not tracing before this start: from its last heartbeat in "
            "the state dir to the tracer attached (0 on a first start)",
            registry=registry,
        )
        self.last_seen_before_start = Gauge(
            "procmon_last_seen_before_start_timestamp_seconds",
            "Unix time of procmon's last heartbeat before this start: where the blind window begins (0 if none)",
            registry=registry,
        )
        self.mode: str | None = None
        self.tracer_counters: Callable[[], dict[str, int]] = dict
        self.pending: Callable[[], int] = lambda: 0
        self.queue_depth: Callable[[], int] = lambda: 0
        self.verdicts: Callable[[], dict[str, int]] = dict
        registry.register(_Collector(self))

    def count_filtered(self, reason: str) -> None:
        self.filtered_counts[reason] = self.filtered_counts.get(reason, 0) + 1


class _Collector:
    """Values owned elsewhere (kernel counters, queue sizes), read at scrape time."""

    def __init__(self, m: ProcmonMetrics) -> None:
        self.m = m

    def describe(self):
        return []

    def collect(self):
        m = self.m
        mode = GaugeMetricFamily("procmon_mode", "Tracer in use: 1 for the active mode", labels=["mode"])
        for name in MODES:
            mode.add_metric([name], 1.0 if m.mode == name else 0.0)
        yield mode
        counters = m.tracer_counters() or {}
        lost = CounterMetricFamily(
            "procmon_events_lost",
            "Kernel events lost before user space saw them (ring/perf buffer full, netlink socket overflow)",
        )
        lost.add_metric([], float(counters.get("lost", 0)))
        yield lost
        kev = CounterMetricFamily("procmon_kernel_events", "Events received from the kernel", labels=["type"])
        kev.add_metric(["exec"], float(counters.get("exec", 0)))
        kev.add_metric(["exit"], float(counters.get("exit", 0)))
        yield kev
        filt = CounterMetricFamily(
            "procmon_events_filtered",
            "Execs not reported, by reason (cgroup_not_student: dropped in the kernel)",
            labels=["reason"],
        )
        filt.add_metric(["cgroup_not_student"], float(counters.get("filtered_exec", 0)))
        for reason, value in sorted(m.filtered_counts.items()):
            filt.add_metric([reason], float(value))
        yield filt
        stderr_lost = CounterMetricFamily(
            "procmon_stderr_lost", "stderr writes the kernel could not send (ring/perf buffer full)"
        )
        stderr_lost.add_metric([], float(counters.get("stderr_lost", 0)))
        yield stderr_lost
        argv = CounterMetricFamily("procmon_argv_missing", "Exec events without argv from execve (read from /proc)")
        argv.add_metric([], float(counters.get("argv_missing", 0)))
        yield argv
        yield GaugeMetricFamily(
            "procmon_pending_processes", "Reported processes that have not exited yet", value=float(m.pending())
        )
        yield GaugeMetricFamily(
            "procmon_queue_depth", "Kernel events read but not processed yet", value=float(m.queue_depth())
        )
        verdicts = GaugeMetricFamily(
            "procmon_cgroups", "cgroups by verdict of the in-kernel filter", labels=["verdict"]
        )
        for name, value in sorted((m.verdicts() or {}).items()):
            verdicts.add_metric([name], float(value))
        yield verdicts
