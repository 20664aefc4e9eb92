"""``watcher filemon``: watch the student workspaces and record every saved source file.

Wiring only: settings -> runtime (outbox, sender, /metrics, /healthz) -> pipeline -> watch loop, and
an orderly shutdown on SIGTERM/SIGINT (stop watching, flush pending saves, flush the outbox, exit 0).
"""

from __future__ import annotations

import argparse
import logging
import math
import sqlite3
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from watcher_agents import config
from watcher_agents.delivery.runtime import AgentRuntime
from watcher_agents.filemon import gc
from watcher_agents.filemon.metrics import FilemonMetrics
from watcher_agents.filemon.pipeline import Pipeline
from watcher_agents.filemon.state import StateStore
from watcher_agents.filemon.watcher import Watcher
from watcher_core import identity

log = logging.getLogger("watcher_agents.filemon")

DEFAULT_SNAPSHOT_DIR = "/watcher/snapshots"


@dataclass(frozen=True)
class FilemonSettings:
    snapshot_dir: Path
    quiet: float
    max_wait: float
    rules: identity.LayoutRules
    workers: int
    flush_timeout: float
    poll_interval: float
    snapshot_gc_interval: float = gc.DEFAULT_INTERVAL  # 0: no collector
    snapshot_gc_grace: float = gc.DEFAULT_GRACE


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="watcher filemon",
        description="Watch the student workspaces with inotify, snapshot every saved source file into the "
        "snapshot store and report file.save / file.delete / file.too_large events to the backend "
        "through a durable local outbox. Metrics and health on the metrics port (/metrics, /healthz).",
        epilog="Every flag is also an environment variable (in brackets). See docs/configuration.md.",
    )
    config.add_agent_arguments(parser, agent="filemon")
    g = parser.add_argument_group("filemon settings")
    g.add_argument(
        "--snapshot-dir",
        metavar="DIR",
        help=f"content-addressed snapshot store [WATCHER_SNAPSHOT_DIR, default {DEFAULT_SNAPSHOT_DIR}]",
    )
    g.add_argument(
        "--debounce",
        metavar="SECONDS",
        help="quiet period after the last change before a file is snapshotted [WATCHER_DEBOUNCE_SECONDS, default 0.3]",
    )
    g.add_argument(
        "--max-wait",
        metavar="SECONDS",
        help="snapshot a file that keeps changing at least this often [WATCHER_DEBOUNCE_MAX_WAIT_SECONDS, default 3]",
    )
    config.add_layout_arguments(g, with_files=True)
    g.add_argument(
        "--workers",
        metavar="N",
        help="threads reading, hashing and snapshotting files [WATCHER_FILEMON_WORKERS, default 8]",
    )
    config.add_flush_timeout_argument(g)
    g.add_argument(
        "--poll-interval",
        metavar="SECONDS",
        help="how often directories that could not be watched (inotify limits) are rescanned "
        "[WATCHER_POLL_INTERVAL_SECONDS, default 30]",
    )
    g.add_argument(
        "--snapshot-gc-interval",
        metavar="SECONDS",
        help="how often to ask the backend for erased contents and remove them from the snapshot "
        f"store; 0 turns this off [WATCHER_SNAPSHOT_GC_INTERVAL_SECONDS, default "
        f"{gc.DEFAULT_INTERVAL:g}]",
    )
    g.add_argument(
        "--snapshot-gc-grace",
        metavar="SECONDS",
        help="an erased content saved within this period is kept (an event referring to it may "
        f"still be on its way) [WATCHER_SNAPSHOT_GC_GRACE_SECONDS, default {gc.DEFAULT_GRACE:g}]",
    )
    return parser


def _seconds(text: str) -> float:
    """A duration >= 0 that a timer can wait for (no nan, no inf)."""
    value = config.non_negative_float(text)
    if math.isinf(value):
        raise ValueError("must be a finite number of seconds")
    return value


def resolve_filemon(args: argparse.Namespace, env=None) -> FilemonSettings:
    s = config.setting
    snapshot_dir = Path(s(args, "snapshot_dir", "WATCHER_SNAPSHOT_DIR", DEFAULT_SNAPSHOT_DIR, str, env))
    config.ensure_writable_dir(snapshot_dir, "snapshot dir", "--snapshot-dir", "WATCHER_SNAPSHOT_DIR")
    quiet = s(args, "debounce", "WATCHER_DEBOUNCE_SECONDS", 0.3, config.non_negative_float, env)
    max_wait = s(args, "max_wait", "WATCHER_DEBOUNCE_MAX_WAIT_SECONDS", 3.0, config.positive_float, env)
    if max_wait < quiet:
        raise config.ConfigError(
            f"--max-wait ({max_wait}) must be at least --debounce ({quiet}) "
            "(variables WATCHER_DEBOUNCE_MAX_WAIT_SECONDS, WATCHER_DEBOUNCE_SECONDS)"
        )
    rules = config.resolve_layout(args, with_files=True, env=env)
    return FilemonSettings(
        snapshot_dir=snapshot_dir,
        quiet=quiet,
        max_wait=max_wait,
        rules=rules,
        workers=s(args, "workers", "WATCHER_FILEMON_WORKERS", 8, config.positive_int, env),
        flush_timeout=config.resolve_flush_timeout(args, env),
        poll_interval=s(args, "poll_interval", "WATCHER_POLL_INTERVAL_SECONDS", 30.0, config.positive_float, env),
        snapshot_gc_interval=s(
            args, "snapshot_gc_interval", "WATCHER_SNAPSHOT_GC_INTERVAL_SECONDS", gc.DEFAULT_INTERVAL, _seconds, env
        ),
        snapshot_gc_grace=s(
            args, "snapshot_gc_grace", "WATCHER_SNAPSHOT_GC_GRACE_SECONDS", gc.DEFAULT_GRACE, _seconds, env
        ),
    )


class Filemon:
    """The assembled agent; ``cli.main`` runs it, tests may run it in-process."""

    def __init__(
        self,
        settings: config.AgentSettings,
        fm: FilemonSettings,
        *,
        metrics_host: str = "0.0.0.0",
        sender_options: dict | None = None,
        collector_options: dict | None = None,
    ) -> None:
        self.settings = settings
        self.fm = fm
        self.runtime = AgentRuntime(settings, metrics_host=metrics_host, sender_options=sender_options)
        self.metrics = FilemonMetrics(self.runtime.registry)
        self.state = StateStore(self.runtime.outbox.connection, self.runtime.outbox.lock)
        self.pipeline = Pipeline(
            settings.workspace_root,
            fm.rules,
            fm.snapshot_dir,
            self.runtime.outbox,
            self.state,
            settings.node_name,
            self.metrics,
            workers=fm.workers,
            quiet=fm.quiet,
        )
        self.watcher = Watcher(
            settings.workspace_root,
            fm.rules,
            self.pipeline,
            self.state,
            self.metrics,
            quiet=fm.quiet,
            max_wait=fm.max_wait,
            poll_interval=fm.poll_interval,
        )
        self.pipeline.on_retry = self.watcher.retry
        self.runtime.health.register("watch loop alive", self.watcher.alive)
        self.runtime.health.register("pipeline alive", self.pipeline.alive)
        self.collector: gc.SnapshotCollector | None = None
        if fm.snapshot_gc_interval > 0:
            self.collector = gc.SnapshotCollector(
                fm.snapshot_dir,
                self.runtime.sender.client,
                settings.backend_url,
                self.metrics,
                interval=fm.snapshot_gc_interval,
                grace=fm.snapshot_gc_grace,
                **(collector_options or {}),
            )
        # Shown in /healthz but not a check: recording saves matters more than collecting, so a dead
        # collector must not get filemon restarted (filemon_snapshot_gc_last_run_timestamp_seconds alerts).
        self.runtime.health.add_detail("snapshot_collector", self._collector_state)

    def _collector_state(self) -> str:
        if self.collector is None:
            return "off"
        return "running" if self.collector.alive() else "stopped"

    def start(self) -> Filemon:
        self.pipeline.start()
        self.watcher.start()
        self.runtime.start()
        if self.collector is not None:
            self.collector.start()
        return self

    def stop(self) -> bool:
        """Stop watching, process what is pending, flush the outbox (bounded). True if everything was sent."""
        started = time.monotonic()
        if self.collector is not None:  # before the runtime closes the HTTP client it uses
            self.collector.stop(timeout=max(1.0, self.fm.flush_timeout))
        self.watcher.stop()
        self.pipeline.stop(timeout=max(1.0, self.fm.flush_timeout))
        left = max(0.5, self.fm.flush_timeout - (time.monotonic() - started))
        return self.runtime.shutdown(flush_timeout=left)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        settings = config.resolve(args, agent="filemon")
        fm = resolve_filemon(args)
        config.setup_logging(settings.log_level, "filemon")
    except config.ConfigError as exc:
        return config.fail(exc, "filemon")
    try:
        agent = Filemon(settings, fm)
    except OSError as exc:  # e.g. the metrics port is in use
        sys.stderr.write(
            f"watcher filemon: cannot start: {exc} (metrics port {settings.metrics_port}, WATCHER_METRICS_PORT)\n"
        )
        return 1
    except sqlite3.Error as exc:  # the state database is unreadable, locked or corrupt
        sys.stderr.write(
            f"watcher filemon: cannot open the state database {settings.outbox_path}: {exc} "
            "(flag --state-dir, variable WATCHER_STATE_DIR)\n"
        )
        return 1
    agent.runtime.install_signal_handlers()
    log.info(
        "filemon starting: %s, snapshots in %s, debounce %.2f s (max %.1f s), size limit %d bytes, "
        "snapshot collector %s",
        config.describe(settings),
        fm.snapshot_dir,
        fm.quiet,
        fm.max_wait,
        fm.rules.max_file_size,
        f"every {fm.snapshot_gc_interval:g} s (grace {fm.snapshot_gc_grace:g} s)" if fm.snapshot_gc_interval else "off",
    )
    agent.start()
    while not agent.runtime.stopping.wait(1.0):
        if not agent.watcher.alive():
            log.error("the watch loop stopped; /healthz reports unhealthy")
            agent.runtime.stopping.wait()  # keep serving /metrics and /healthz until the kubelet restarts us
    flushed = agent.stop()
    log.info("filemon stopped%s", "" if flushed else " (undelivered events stay in the outbox)")
    return 0
