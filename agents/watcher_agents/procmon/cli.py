"""``watcher procmon``: trace execs and exits on this node and report students' compiles and runs."""

from __future__ import annotations

import argparse
import logging
import threading
import time
from dataclasses import dataclass

from watcher_agents import config
from watcher_agents.procmon.attribution import Attributor
from watcher_agents.procmon.classify import DEFAULT_COMPILERS, DEFAULT_INTERPRETERS, Classes
from watcher_agents.procmon.heartbeat import Heartbeat
from watcher_agents.procmon.heartbeat import gap as heartbeat_gap
from watcher_agents.procmon.metrics import ProcmonMetrics
from watcher_agents.procmon.pipeline import Pipeline
from watcher_core import identity

log = logging.getLogger("watcher_agents.procmon")

MODES = ("auto", "ebpf", "proc-connector")


@dataclass(frozen=True)
class ProcmonSettings:
    mode: str
    classes: Classes
    rules: identity.LayoutRules
    argv_max_bytes: int
    argv_max_args: int
    kernel_filter: bool
    cgroup_learn_seconds: float
    cgroup_ignore_ttl: float
    buffer: str
    ring_buffer_pages: int
    flush_timeout: float
    capture_stderr: bool


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="watcher procmon",
        description="Per-node process monitor: traces exec and exit with eBPF tracepoints (or the netlink "
        "process connector as a fallback), attributes each compile and run to a student and "
        "assignment, and delivers process.compile / process.run events through the durable "
        "outbox. Metrics and /healthz on the metrics port.",
    )
    config.add_agent_arguments(parser, agent="procmon")
    g = parser.add_argument_group("procmon settings (each also an environment variable)")
    g.add_argument(
        "--mode",
        choices=MODES,
        help="tracer: ebpf (bcc, tracepoints), proc-connector (netlink, no eBPF), or auto: eBPF and "
        "the connector if eBPF cannot load [WATCHER_PROCMON_MODE, default auto]",
    )
    g.add_argument(
        "--compilers",
        metavar="LIST",
        help="compiler base names; version suffixes and target prefixes are matched too "
        f"[WATCHER_PROCMON_COMPILERS, default {','.join(DEFAULT_COMPILERS)}]",
    )
    g.add_argument(
        "--interpreters",
        metavar="LIST",
        help="python interpreter base names (python3.X matches python3) "
        f"[WATCHER_PROCMON_INTERPRETERS, default {','.join(DEFAULT_INTERPRETERS)}]",
    )
    g.add_argument(
        "--argv-max-bytes",
        metavar="N",
        help="argv bytes copied per exec, a power of two 256-32768; more is flagged argv_truncated "
        "[WATCHER_PROCMON_ARGV_MAX_BYTES, default 4096]",
    )
    g.add_argument(
        "--argv-max-args",
        metavar="N",
        help="arguments copied per exec (1-256) [WATCHER_PROCMON_ARGV_MAX_ARGS, default 64]",
    )
    g.add_argument(
        "--kernel-filter",
        choices=("on", "off"),
        help="drop execs of cgroups without student processes in the kernel "
        "[WATCHER_PROCMON_KERNEL_FILTER, default on]",
    )
    g.add_argument(
        "--cgroup-learn-seconds",
        metavar="SECONDS",
        help="a cgroup showing no student process for this long is filtered in the kernel "
        "[WATCHER_PROCMON_CGROUP_LEARN_SECONDS, default 5]",
    )
    g.add_argument(
        "--cgroup-ignore-ttl",
        metavar="SECONDS",
        help="a filtered cgroup is looked at again after this long [WATCHER_PROCMON_CGROUP_IGNORE_TTL, default 600]",
    )
    g.add_argument(
        "--buffer",
        choices=("auto", "ring", "perf"),
        help="kernel-to-user buffer: ring (5.8+) or perf; auto picks ring when the kernel has it "
        "[WATCHER_PROCMON_BUFFER, default auto]",
    )
    g.add_argument(
        "--ring-buffer-pages",
        metavar="N",
        help="ring buffer size in 4 KiB pages, a power of two [WATCHER_PROCMON_RING_BUFFER_PAGES, "
        "default 2048 = 8 MiB]",
    )
    g.add_argument(
        "--capture-stderr",
        choices=("on", "off"),
        help="record what compiles and runs (their children included) write to stderr, up to 16 KiB each "
        "(eBPF only) [WATCHER_CAPTURE_STDERR, default on]",
    )
    config.add_layout_arguments(g, with_files=False)
    config.add_flush_timeout_argument(g)
    return parser


def _power_of_two(low: int, high: int):
    def parse(text: str) -> int:
        value = int(text)
        if value < low or value > high or value & (value - 1):
            raise ValueError(f"must be a power of two between {low} and {high}")
        return value

    return parse


def _bounded_int(low: int, high: int):
    def parse(text: str) -> int:
        value = int(text)
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}")
        return value

    return parse


def _choice(options):
    def parse(text: str) -> str:
        value = text.strip().lower()
        if value not in options:
            raise ValueError(f"must be one of {', '.join(options)}")
        return value

    return parse


def resolve_procmon(args: argparse.Namespace, env=None) -> ProcmonSettings:
    s = config.setting
    compilers = s(args, "compilers", "WATCHER_PROCMON_COMPILERS", DEFAULT_COMPILERS, config.csv_list, env)
    interpreters = s(args, "interpreters", "WATCHER_PROCMON_INTERPRETERS", DEFAULT_INTERPRETERS, config.csv_list, env)
    if not compilers:
        raise config.ConfigError("--compilers must name at least one compiler (variable WATCHER_PROCMON_COMPILERS)")
    return ProcmonSettings(
        mode=s(args, "mode", "WATCHER_PROCMON_MODE", "auto", _choice(MODES), env),
        classes=Classes(tuple(compilers), tuple(interpreters)),
        rules=config.resolve_layout(args, with_files=False, env=env),
        argv_max_bytes=s(
            args, "argv_max_bytes", "WATCHER_PROCMON_ARGV_MAX_BYTES", 4096, _power_of_two(256, 32768), env
        ),
        argv_max_args=s(args, "argv_max_args", "WATCHER_PROCMON_ARGV_MAX_ARGS", 64, _bounded_int(1, 256), env),
        kernel_filter=s(args, "kernel_filter", "WATCHER_PROCMON_KERNEL_FILTER", "on", _choice(("on", "off")), env)
        == "on",
        cgroup_learn_seconds=s(
            args, "cgroup_learn_seconds", "WATCHER_PROCMON_CGROUP_LEARN_SECONDS", 5.0, config.non_negative_float, env
        ),
        cgroup_ignore_ttl=s(
            args, "cgroup_ignore_ttl", "WATCHER_PROCMON_CGROUP_IGNORE_TTL", 600.0, config.positive_float, env
        ),
        buffer=s(args, "buffer", "WATCHER_PROCMON_BUFFER", "auto", _choice(("auto", "ring", "perf")), env),
        ring_buffer_pages=s(
            args, "ring_buffer_pages", "WATCHER_PROCMON_RING_BUFFER_PAGES", 2048, _power_of_two(16, 1 << 20), env
        ),
        flush_timeout=config.resolve_flush_timeout(args, env),
        capture_stderr=s(args, "capture_stderr", "WATCHER_CAPTURE_STDERR", "on", _choice(("on", "off")), env) == "on",
    )


def open_tracer(ps: ProcmonSettings, pipeline: Pipeline):
    """The tracer for ``ps.mode``, loaded; None (after logging why) when nothing can trace."""
    from watcher_agents.procmon.ebpf import EbpfTracer, TracerUnavailable
    from watcher_agents.procmon.procconn import ConnectorUnavailable, ProcConnectorTracer

    if ps.mode in ("auto", "ebpf"):
        tracer = EbpfTracer(
            pipeline.on_exec,
            pipeline.on_exit,
            argv_size=ps.argv_max_bytes,
            max_args=ps.argv_max_args,
            ring_pages=ps.ring_buffer_pages,
            buffer=ps.buffer,
            kernel_filter=ps.kernel_filter,
            capture_stderr=ps.capture_stderr,
        )
        try:
            tracer.load()
            return tracer
        except TracerUnavailable as exc:
            if ps.mode == "ebpf":
                log.error("eBPF unavailable: %s", exc)
                return None
            log.warning("eBPF unavailable (%s); falling back to the netlink process connector", exc)
    tracer = ProcConnectorTracer(pipeline.on_exec, pipeline.on_exit)
    try:
        tracer.load()
        if ps.capture_stderr:
            log.warning("the process connector sees no writes: stderr is not captured (events carry stderr null)")
        return tracer
    except ConnectorUnavailable as exc:
        log.error("process connector unavailable: %s; nothing can trace processes here", exc)
        return None


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = config.resolve(args, agent="procmon")
        ps = resolve_procmon(args)
        config.setup_logging(settings.log_level, "procmon")
    except config.ConfigError as exc:
        return config.fail(exc, "procmon")
    from watcher_agents.delivery.runtime import AgentRuntime

    try:
        rt = AgentRuntime(settings)
    except OSError as exc:
        log.error("cannot start: %s (metrics port %d, state dir %s)", exc, settings.metrics_port, settings.state_dir)
        return 1
    metrics = ProcmonMetrics(rt.registry)
    pipeline = Pipeline(
        node=settings.node_name,
        attributor=Attributor(str(settings.workspace_root), ps.rules, ps.classes),
        outbox=rt.outbox,
        metrics=metrics,
        max_args=ps.argv_max_args,
        argv_size=ps.argv_max_bytes,
        learn_seconds=ps.cgroup_learn_seconds,
        ignore_ttl=ps.cgroup_ignore_ttl,
        kernel_filter=ps.kernel_filter,
    )
    heartbeat = Heartbeat(settings.state_dir)
    last_seen = heartbeat.last()  # before anything of this run writes it
    # Not ready until a tracer is attached: bcc compiles for a second or more, and a compile in that
    # window is lost, so a readiness probe (and LocalStack) must not pass before. The HTTP server still
    # starts first, so /metrics answers during the load and shutdown() below has running parts to stop.
    attached = threading.Event()
    rt.health.register("tracer attached", attached.is_set)
    rt.health.add_detail("mode", lambda: metrics.mode if attached.is_set() else None)
    rt.start()
    tracer = open_tracer(ps, pipeline)
    if tracer is None:
        rt.shutdown(flush_timeout=0)
        return 1
    pipeline.attach(tracer)
    pipeline.start()
    # Attached but not polling yet: exits from now on reach the kernel's tracked map, execs wait in the
    # buffer. Adopt what already runs (a student's server or REPL across a restart) before reading it.
    # /healthz keeps saying only "tracer attached" meanwhile: the other checks are registered after.
    try:
        pipeline.adopt_running()
    except Exception:  # adoption is a bonus: never a reason not to trace
        log.exception("cannot adopt the processes already running")
    tracer.start()
    rt.health.register(f"tracer alive (mode {tracer.mode})", tracer.alive)
    rt.health.register("pipeline alive", pipeline.alive)
    attached.set()
    report_downtime(metrics, heartbeat_gap(last_seen, time.time()))
    heartbeat.start()
    rt.install_signal_handlers()
    log.info(
        "procmon ready: mode=%s %s", tracer.mode, " ".join(f"{k}={v}" for k, v in config.describe(settings).items())
    )
    while not rt.stopping.wait(1):
        pass
    tracer.stop()
    heartbeat.stop()  # traced until here: the next start measures its gap from this moment
    pipeline.stop()
    rt.shutdown(flush_timeout=ps.flush_timeout)
    return 0


def report_downtime(metrics: ProcmonMetrics, gap) -> None:
    """The window procmon was blind for (since its last heartbeat): gauges, and one line if there was one."""
    metrics.downtime.set(gap.downtime)
    metrics.last_seen_before_start.set(gap.last_seen or 0)
    line = gap.describe()
    if line:
        log.warning(line)
