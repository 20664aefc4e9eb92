"""``watcher filemon``: watch the student workspaces and record every saved source file.

Wiring only: settings -> runtime (outbox, sender, /metrics, /healthz) -> pipeline -> watch loop, and
an orderly shutdown on SIGTERM/SIGINT (stop watching, flush pending saves, flush the outbox, exit 0).
"""

from __future__ import annotations

import argparse
import logging
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
from watcher_core import identity, logs, settings_spec
from watcher_core.settings_spec import setting

log = logging.getLogger("watcher_agents.filemon")

DEFAULT_SNAPSHOT_DIR = "/watcher/snapshots"


@dataclass(frozen=True)
class FilemonSettings:
    snapshot_dir: Path = setting(
        Path(DEFAULT_SNAPSHOT_DIR),
        flag="--snapshot-dir",
        env="WATCHER_SNAPSHOT_DIR",
        parse=settings_spec.path,
        metavar="DIR",
        doc="the content-addressed snapshot store; created if missing, must be writable (the backend reads it)",
    )
    quiet: float = setting(
        0.3,
        flag="--debounce",
        env="WATCHER_DEBOUNCE_SECONDS",
        parse=settings_spec.seconds(zero=True),
        metavar="SECONDS",
        doc="quiet period after the last change before a file is read",
    )
    max_wait: float = setting(
        3.0,
        flag="--max-wait",
        env="WATCHER_DEBOUNCE_MAX_WAIT_SECONDS",
        parse=settings_spec.seconds(zero=False),
        metavar="SECONDS",
        doc="a file that keeps changing is still snapshotted at least this often (and not less than the debounce)",
    )
    rules: identity.LayoutRules = settings_spec.group(identity.LayoutRules)
    workers: int = setting(
        8,
        flag="--workers",
        env="WATCHER_FILEMON_WORKERS",
        parse=settings_spec.whole_number(1),
        metavar="N",
        doc="threads that read, hash and snapshot files",
    )
    flush_timeout: float = config.flush_timeout()
    poll_interval: float = setting(
        30.0,
        flag="--poll-interval",
        env="WATCHER_POLL_INTERVAL_SECONDS",
        parse=settings_spec.seconds(zero=False),
        metavar="SECONDS",
        doc="how often folders that could not be watched (inotify limits) are scanned again",
    )
    snapshot_gc_interval: float = setting(
        gc.DEFAULT_INTERVAL,
        flag="--snapshot-gc-interval",
        env="WATCHER_SNAPSHOT_GC_INTERVAL_SECONDS",
        parse=settings_spec.seconds(zero=True),
        metavar="SECONDS",
        doc="how often filemon asks the backend for erased contents and removes them from the snapshot store; "
        "the first run comes after a random delay up to this, so the nodes do not ask at once. `0` turns the "
        "collector off",
    )
    snapshot_gc_grace: float = setting(
        gc.DEFAULT_GRACE,
        flag="--snapshot-gc-grace",
        env="WATCHER_SNAPSHOT_GC_GRACE_SECONDS",
        parse=settings_spec.seconds(zero=True),
        metavar="SECONDS",
        default_doc="`86400` (one day)",
        doc="an erased content saved within this period is kept and asked for again later: an event referring "
        "to it may still be in some node's outbox",
    )


SETTINGS = settings_spec.settings_of(FilemonSettings)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="watcher filemon",
        description=settings_spec.fill(
            "Watch the student workspaces with inotify, snapshot every saved source file into the snapshot "
            "store and report file.save / file.delete / file.too_large events to the backend through a durable "
            "local outbox. Metrics and health on the metrics port (/metrics, /healthz)."
        ),
        epilog=settings_spec.epilog((*config.agent_settings("filemon"), *SETTINGS)),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    config.add_agent_arguments(parser, agent="filemon")
    settings_spec.add_arguments(
        parser.add_argument_group("filemon settings (each also an environment variable)"), SETTINGS
    )
    return parser


def resolve_filemon(args: argparse.Namespace, env=None) -> FilemonSettings:
    values = settings_spec.resolve(SETTINGS, args, env)
    config.ensure_writable_dir(values, "snapshot_dir", "snapshot dir")
    if values.max_wait < values.quiet:
        raise values.error(
            "max_wait",
            f"must be at least the debounce: --max-wait {values.max_wait:g} < --debounce {values.quiet:g} "
            "(variables WATCHER_DEBOUNCE_MAX_WAIT_SECONDS, WATCHER_DEBOUNCE_SECONDS)",
        )
    return settings_spec.build(FilemonSettings, values)


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
        logs.setup(settings.log_level, "filemon", settings.log_format)
    except settings_spec.SettingsError as exc:
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
