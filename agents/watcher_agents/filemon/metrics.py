"""filemon's own metrics (the delivery metrics come from watcher_agents.delivery.sender)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

SKIP_REASONS = ("too_large", "ignored", "not_in_assignment", "extension", "unreadable", "not_regular", "bad_name")
SNAPSHOT_GC_RESULTS = ("removed", "missing", "recent", "error")


class FilemonMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        # Name and labels from the deployment guide.
        self.file_events = Counter(
            "file_events_total", "Total number of file events detected", ["event_type"], registry=registry
        )
        for t in ("create", "modify", "delete"):
            self.file_events.labels(t)
        self.too_large = Counter("filemon_too_large_total", "file.too_large events queued", registry=registry)
        self.inotify_events = Counter("filemon_inotify_events_total", "Raw inotify events read", registry=registry)
        self.skipped = Counter(
            "filemon_files_skipped_total", "Files not snapshotted, by reason", ["reason"], registry=registry
        )
        for r in SKIP_REASONS:
            self.skipped.labels(r)
        self.rescans = Counter(
            "filemon_rescans_total", "Full scans of the workspace, by reason", ["reason"], registry=registry
        )
        for r in ("startup", "overflow", "poll"):
            self.rescans.labels(r)
        self.dir_scans = Counter(
            "filemon_new_dir_scans_total", "New directories scanned after adding their watch", registry=registry
        )
        self.watches = Gauge("filemon_watches", "inotify watches in use", registry=registry)
        self.watches_missing = Gauge(
            "filemon_watches_missing",
            "Directories that could not be watched (inotify limits); rescanned by polling",
            registry=registry,
        )
        self.snapshot_bytes = Counter(
            "filemon_snapshot_bytes_written_total",
            "Bytes written to the snapshot store (new contents only, compressed)",
            registry=registry,
        )
        self.snapshot_content_bytes = Counter(
            "filemon_snapshot_content_bytes_total",
            "Size of the new contents written to the snapshot store, before compression",
            registry=registry,
        )
        self.snapshot_forms = Counter(
            "filemon_snapshots_stored_total",
            "New contents written to the snapshot store, by form: whole (zstd) or delta (against a base)",
            ["form"],
            registry=registry,
        )
        for f in ("whole", "delta"):
            self.snapshot_forms.labels(f)
        self.snapshots = Counter(
            "filemon_snapshots_written_total", "New contents written to the snapshot store", registry=registry
        )
        self.snapshot_reused = Counter(
            "filemon_snapshots_reused_total", "Saves whose content was already in the snapshot store", registry=registry
        )
        self.unchanged = Counter(
            "filemon_unchanged_total",
            "Changes seen whose content equals the last recorded state (no event)",
            registry=registry,
        )
        self.read_retries = Counter(
            "filemon_read_retries_total",
            "Files that changed while being read (read again after the next quiet period)",
            registry=registry,
        )
        self.outbox_unavailable = Counter(
            "filemon_outbox_unavailable_total",
            "Events that could not be queued (outbox full or disk full); retried",
            ["reason"],
            registry=registry,
        )
        self.errors = Counter(
            "filemon_errors_total", "Unexpected errors while processing a file, by stage", ["stage"], registry=registry
        )
        self.pending = Gauge("filemon_pending_files", "Files waiting for their debounce deadline", registry=registry)
        self.queued = Gauge("filemon_pipeline_queue", "Files queued for reading and snapshotting", registry=registry)
        self.last_event = Gauge(
            "filemon_last_event_timestamp_seconds", "Unix time of the last inotify event", registry=registry
        )
        self.emit_delay = Histogram(
            "filemon_save_delay_seconds",
            "From the file's mtime to its event being queued (debounce + processing)",
            buckets=(0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30, 60),
            registry=registry,
        )
        # The snapshot collector (gc.py): erased contents removed from the store.
        self.snapshot_gc = Counter(
            "filemon_snapshot_gc_total",
            "Erased contents the snapshot collector handled, by result: removed, missing "
            "(already gone), recent (kept: saved within the grace period), error "
            "(a content that could not be removed, or a failed exchange with the backend)",
            ["result"],
            registry=registry,
        )
        for r in SNAPSHOT_GC_RESULTS:
            self.snapshot_gc.labels(r)
        self.snapshot_gc_bytes = Counter(
            "filemon_snapshot_gc_bytes_removed_total",
            "Bytes of erased contents removed from the snapshot store",
            registry=registry,
        )
        # Node-local watching (pods.py): only the workspaces of the student pods on this node are watched.
        self.workspaces = Gauge(
            "filemon_workspaces_watched",
            "Student workspace folders filemon watches (node mode: those of the student pods on this node; "
            "volume mode: every student folder found on the volume)",
            registry=registry,
        )
        self.student_pods = Gauge(
            "filemon_student_pods",
            "Student pods on this node mapped to a workspace folder (node mode)",
            registry=registry,
        )
        self.unmapped_pods = Gauge(
            "filemon_unmapped_pods",
            "Pods on this node selected as student pods that map to no workspace folder (node mode)",
            registry=registry,
        )
        self.pod_relists = Counter(
            "filemon_pod_relists_total",
            "Pod lists after the watch's resourceVersion expired (410 Gone)",
            registry=registry,
        )
        self.pod_watch_errors = Counter(
            "filemon_pod_watch_errors_total",
            "Failed requests of the pod watch, by reason (forbidden, unauthorized, http_<code>, ConnectError...)",
            ["reason"],
            registry=registry,
        )
        self.snapshot_gc_last_run = Gauge(
            "filemon_snapshot_gc_last_run_timestamp_seconds",
            "Unix time the snapshot collector last finished a run with the backend answering (0: never)",
            registry=registry,
        )
