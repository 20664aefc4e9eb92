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
from watcher_agents.filemon import gc, pods
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
    scope: str = setting(
        "volume",
        flag="--scope",
        env="WATCHER_FILEMON_SCOPE",
        parse=settings_spec.one_of(("volume", "node")),
        metavar="SCOPE",
        doc="`volume`: watch every student folder of the workspace volume; `node`: only the folders of the "
        "student pods on this node (a pod watch on the Kubernetes API with the pod's service account; the "
        "node is `--node-name`)",
    )
    pod_namespace: str = setting(
        "",
        flag="--pod-namespace",
        env="WATCHER_POD_NAMESPACE",
        metavar="NAMESPACE",
        default_doc="every namespace",
        doc="node mode: the namespace of the student pods (a Role there suffices; every namespace needs a ClusterRole)",
    )
    pod_selector: str = setting(
        "",
        flag="--pod-selector",
        env="WATCHER_POD_SELECTOR",
        parse=pods.label_selector,
        metavar="SELECTOR",
        default_doc="every pod",
        doc="node mode: the label selector of the student pods, e.g. `app.kubernetes.io/part-of=jcode`",
    )
    workspace_annotation: str = setting(
        pods.DEFAULT_ANNOTATION,
        env="WATCHER_POD_WORKSPACE_ANNOTATION",
        doc="node mode: a pod annotation naming the pod's folder below the workspace root (it wins over the pattern)",
    )
    workspace_pattern: str = setting(
        pods.DEFAULT_PATTERN,
        env="WATCHER_POD_WORKSPACE_PATTERN",
        parse=pods.pattern,
        default_doc="`jcode-{course}-{section}-{student_id}` and a Deployment's suffix",
        doc="node mode: a regex on the pod name whose group `workspace` (else its first group) is the pod's "
        "folder; a folder must be named `{course}-{section}-{student_id}`",
    )
    service_account_dir: Path = setting(
        pods.SERVICE_ACCOUNT,
        env="WATCHER_SERVICE_ACCOUNT_DIR",
        parse=settings_spec.path,
        doc="node mode: where the pod's service account token and CA certificate are (Kubernetes mounts them "
        "here; benchmarks outside a pod point it elsewhere)",
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
        kube: pods.KubeAccess | None = None,
    ) -> None:
        self.settings = settings
        self.fm = fm
        # first: outside a pod, node scope fails here, before any port or file is opened
        access = (kube or pods.KubeAccess.in_cluster(fm.service_account_dir)) if fm.scope == "node" else None
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
            node_local=fm.scope == "node",
        )
        self.pipeline.on_retry = self.watcher.retry
        self.pods: pods.PodWatch | None = None
        if access is not None:
            self.pods = pods.PodWatch(
                access,
                settings.node_name,
                pods.PodTable(pods.Mapping(fm.workspace_annotation, fm.workspace_pattern)),
                self._workspace_change,
                namespace=fm.pod_namespace,
                selector=fm.pod_selector,
                metrics=self.metrics,
            )
            self.runtime.health.register("pod watch alive", self.pods.alive)
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

    def _workspace_change(self, change: pods.Change) -> None:
        if change.added:
            self.watcher.workspace_added(change.workspace)
        else:
            self.watcher.workspace_dropped(change.workspace)

    def _collector_state(self) -> str:
        if self.collector is None:
            return "off"
        return "running" if self.collector.alive() else "stopped"

    def start(self) -> Filemon:
        self.pipeline.start()
        self.watcher.start()
        if self.pods is not None:  # after the watcher: its changes are commands to the watch loop
            self.pods.start()
        self.runtime.start()
        if self.collector is not None:
            self.collector.start()
        return self

    def stop(self) -> bool:
        """Stop watching, process what is pending, flush the outbox (bounded). True if everything was sent."""
        started = time.monotonic()
        if self.collector is not None:  # before the runtime closes the HTTP client it uses
            self.collector.stop(timeout=max(1.0, self.fm.flush_timeout))
        if self.pods is not None:
            self.pods.stop()
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
    except pods.ApiFailure as exc:  # node mode outside a pod (no service account)
        sys.stderr.write(f"watcher filemon: --scope node (WATCHER_FILEMON_SCOPE): {exc}\n")
        return 2
    except sqlite3.Error as exc:  # the state database is unreadable, locked or corrupt
        sys.stderr.write(
            f"watcher filemon: cannot open the state database {settings.outbox_path}: {exc} "
            "(flag --state-dir, variable WATCHER_STATE_DIR)\n"
        )
        return 1
    agent.runtime.install_signal_handlers()
    log.info(
        "filemon starting: %s, snapshots in %s, debounce %.2f s (max %.1f s), size limit %d bytes, "
        "snapshot collector %s, scope %s",
        config.describe(settings),
        fm.snapshot_dir,
        fm.quiet,
        fm.max_wait,
        fm.rules.max_file_size,
        f"every {fm.snapshot_gc_interval:g} s (grace {fm.snapshot_gc_grace:g} s)" if fm.snapshot_gc_interval else "off",
        f"node ({settings.node_name}: pods in {fm.pod_namespace or 'every namespace'}"
        f"{', ' + fm.pod_selector if fm.pod_selector else ''})"
        if fm.scope == "node"
        else "volume",
    )
    agent.start()
    while not agent.runtime.stopping.wait(1.0):
        if not agent.watcher.alive():
            log.error("the watch loop stopped; /healthz reports unhealthy")
            agent.runtime.stopping.wait()  # keep serving /metrics and /healthz until the kubelet restarts us
    flushed = agent.stop()
    log.info("filemon stopped%s", "" if flushed else " (undelivered events stay in the outbox)")
    return 0
