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
from watcher_core import identity, logs, settings_spec
from watcher_core.settings_spec import setting

log = logging.getLogger("watcher_agents.procmon")

MODES = ("auto", "ebpf", "proc-connector")


def _power_of_two(low: int, high: int):
    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            value = 0
        if value < low or value > high or value & (value - 1):
            raise ValueError(f"must be a power of two between {low} and {high}")
        return value

    return parse


def _compilers(text: str) -> tuple[str, ...]:
    names = settings_spec.csv(text)
    if not names:
        raise ValueError("must name at least one compiler")
    return names


@dataclass(frozen=True)
class ProcmonSettings:
    mode: str = setting(
        "auto",
        flag="--mode",
        env="WATCHER_PROCMON_MODE",
        parse=settings_spec.one_of(MODES),
        metavar="MODE",
        doc="the tracer: `ebpf` (bcc, tracepoints), `proc-connector` (netlink, no eBPF), or `auto`: eBPF, else "
        "the connector",
    )
    compilers: tuple[str, ...] = setting(
        DEFAULT_COMPILERS,
        flag="--compilers",
        env="WATCHER_PROCMON_COMPILERS",
        parse=_compilers,
        metavar="LIST",
        doc="compiler base names, comma-separated; version suffixes and target prefixes match too (at least one)",
    )
    interpreters: tuple[str, ...] = setting(
        DEFAULT_INTERPRETERS,
        flag="--interpreters",
        env="WATCHER_PROCMON_INTERPRETERS",
        parse=settings_spec.csv,
        metavar="LIST",
        doc="Python interpreter base names, comma-separated (`python3.X` matches `python3`)",
    )
    rules: identity.LayoutRules = settings_spec.group(identity.LayoutRules, only=("assignment_pattern", "ignore_dirs"))
    argv_max_bytes: int = setting(
        4096,
        flag="--argv-max-bytes",
        env="WATCHER_PROCMON_ARGV_MAX_BYTES",
        parse=_power_of_two(256, 32768),
        metavar="N",
        doc="argv bytes copied per exec: a power of two, 256-32768; longer command lines are flagged `argv_truncated`",
    )
    argv_max_args: int = setting(
        64,
        flag="--argv-max-args",
        env="WATCHER_PROCMON_ARGV_MAX_ARGS",
        parse=settings_spec.whole_number(1, 256),
        metavar="N",
        doc="arguments copied per exec",
    )
    kernel_filter: bool = setting(
        True,
        flag="--kernel-filter",
        env="WATCHER_PROCMON_KERNEL_FILTER",
        parse=settings_spec.one_of({"on": True, "off": False}),
        doc="drop execs of cgroups without student processes in the kernel",
    )
    cgroup_learn_seconds: float = setting(
        5.0,
        flag="--cgroup-learn-seconds",
        env="WATCHER_PROCMON_CGROUP_LEARN_SECONDS",
        parse=settings_spec.seconds(zero=True),
        metavar="SECONDS",
        doc="a cgroup showing no student process for this long is filtered in the kernel",
    )
    cgroup_ignore_ttl: float = setting(
        600.0,
        flag="--cgroup-ignore-ttl",
        env="WATCHER_PROCMON_CGROUP_IGNORE_TTL",
        parse=settings_spec.seconds(zero=False),
        metavar="SECONDS",
        doc="a filtered cgroup is looked at again after this long",
    )
    buffer: str = setting(
        "auto",
        flag="--buffer",
        env="WATCHER_PROCMON_BUFFER",
        parse=settings_spec.one_of(("auto", "ring", "perf")),
        doc="kernel-to-user buffer: `ring` (kernel 5.8+) or `perf`; `auto` picks ring when the kernel has it",
    )
    ring_buffer_pages: int = setting(
        2048,
        flag="--ring-buffer-pages",
        env="WATCHER_PROCMON_RING_BUFFER_PAGES",
        parse=_power_of_two(16, 1 << 20),
        metavar="N",
        default_doc="`2048` (8 MiB)",
        doc="ring buffer size in 4 KiB pages: a power of two, 16-1048576",
    )
    capture_stderr: bool = setting(
        True,
        flag="--capture-stderr",
        env="WATCHER_CAPTURE_STDERR",
        parse=settings_spec.one_of({"on": True, "off": False}),
        doc="record what compiles and runs (and their children: cc1, ld) write to stderr (fd 2, never stdout), "
        "up to 16 KiB per process, `stderr_truncated` past it ([procmon.md](procmon.md#stderr-of-compiles-and-runs)); "
        "eBPF only: the process connector cannot see writes and says so once at start; costs every `write` on the "
        "node about 90 ns of CPU ([procmon.md](procmon.md#stderr-of-compiles-and-runs)): `off` where write-heavy work "
        "shares the node",
    )
    flush_timeout: float = config.flush_timeout()

    @property
    def classes(self) -> Classes:
        return Classes(self.compilers, self.interpreters)


SETTINGS = settings_spec.settings_of(ProcmonSettings)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="watcher procmon",
        description=settings_spec.fill(
            "Per-node process monitor: traces exec and exit with eBPF tracepoints (or the netlink process "
            "connector as a fallback), attributes each compile and run to a student and assignment, and "
            "delivers process.compile / process.run events through the durable outbox. Metrics and /healthz "
            "on the metrics port."
        ),
        epilog=settings_spec.epilog((*config.agent_settings("procmon"), *SETTINGS)),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    config.add_agent_arguments(parser, agent="procmon")
    settings_spec.add_arguments(
        parser.add_argument_group("procmon settings (each also an environment variable)"), SETTINGS
    )
    return parser


def resolve_procmon(args: argparse.Namespace, env=None) -> ProcmonSettings:
    return settings_spec.build(ProcmonSettings, settings_spec.resolve(SETTINGS, args, env))


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
        logs.setup(settings.log_level, "procmon", settings.log_format)
    except settings_spec.SettingsError as exc:
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
