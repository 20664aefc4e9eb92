"""The pipeline: make the recorded state of one file agree with the workspace, emitting events on the way.

Every job is "reconcile this path", whatever made us look at it (a debounced save, a delete, a rename,
a scan). Reconciling compares the file on disk with the state store:

* gone (or no longer a regular file) and known -> ``file.delete``;
* over the size limit -> ``file.too_large`` (once per size/mtime);
* otherwise read it, check that it did not change while being read (if it did: ask for another look
  after the next quiet period, never drop it), hash it, and if the content differs from the last
  recorded one, store the snapshot and queue ``file.save``.

The event and the new state are committed in one outbox transaction. Event ids are deterministic, made
from what identifies the recorded version: the path, the content hash and the file's mtime. A restart
after SIGKILL therefore produces the same id for a version whose event was lost in flight, and the
backend's dedupe makes the record exactly-once. Several nodes that see the same version (the shared
volume after a restart scan) also produce the same id.

Jobs run on N worker threads (snapshot writes fsync; in parallel they share journal commits). A path
always goes to the same worker (hash sharding), so the events of one file keep their order. Each worker
serves the student folders in turn, so one student's flood of files does not delay the others' saves.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import stat
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from watcher_agents.delivery.outbox import Outbox, OutboxDiskFull, OutboxUnavailable
from watcher_agents.filemon.metrics import FilemonMetrics
from watcher_agents.filemon.state import KIND_SAVE, KIND_TOO_LARGE, FileState, StateStore
from watcher_core import identity, snapshots, wire

log = logging.getLogger(__name__)

OUTBOX_RETRY_SECONDS = 5.0
# A file whose mtime is this much older than when we noticed it was moved or copied in with its old
# times preserved (mv, cp -p, tar): the event time is when it arrived, not its mtime.
STALE_MTIME_SECONDS = 60.0


def save_event_id(rel: str, sha256: str, mtime_ns: int) -> str:
    return wire.make_event_id(wire.FILE_SAVE, rel, sha256, mtime_ns)


def delete_event_id(rel: str, last: FileState | None) -> str:
    return wire.make_event_id(wire.FILE_DELETE, rel, last.sha256 if last else "", last.mtime_ns if last else 0)


def too_large_event_id(rel: str, size: int, mtime_ns: int) -> str:
    return wire.make_event_id(wire.FILE_TOO_LARGE, rel, size, mtime_ns)


def classify(rules: identity.LayoutRules, rel: str) -> tuple[identity.FileIdentity | None, str]:
    """(identity, "") for a tracked file, else (None, skip reason)."""
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:  # a name that is not UTF-8 cannot go on the wire (or into JSON)
        return None, "bad_name"
    try:
        ident = rules.locate(rel)
    except identity.IdentityError:
        parts = rel.split("/")
        if any(rules.is_ignored_dir(p) for p in parts[1:-1]):
            return None, "ignored"
        return None, "not_in_assignment"
    if not rules.is_tracked(ident):
        return None, "extension"
    return ident, ""


class _ChangedWhileReading(Exception):
    pass


class _FairQueue:
    """One worker's jobs: FIFO per student folder, the folders served in turn. A student who makes
    100,000 files queues 100,000 jobs; with one FIFO every classmate's save waited behind all of them
    (19.7 s in tests/security), with turns it waits for at most one job per busy student."""

    def __init__(self) -> None:
        self._cv = threading.Condition()
        self._by_owner: dict[str, deque[str | None]] = {}
        self._turns: deque[str] = deque()  # owners with jobs, in serving order

    def put(self, rel: str | None, owner: str = "") -> None:
        with self._cv:
            jobs = self._by_owner.get(owner)
            if jobs is None:
                jobs = self._by_owner[owner] = deque()
                self._turns.append(owner)
            jobs.append(rel)
            self._cv.notify()

    def get(self) -> str | None:
        with self._cv:
            while not self._turns:
                self._cv.wait()
            owner = self._turns.popleft()
            jobs = self._by_owner[owner]
            if jobs[0] is None and self._turns:  # the stop comes last, after every student's jobs
                self._turns.append(owner)
                owner = self._turns.popleft()
                jobs = self._by_owner[owner]
            rel = jobs.popleft()
            if jobs:
                self._turns.append(owner)
            else:
                del self._by_owner[owner]
            return rel


class Pipeline:
    def __init__(
        self,
        root: Path,
        rules: identity.LayoutRules,
        snapshot_dir: Path,
        outbox: Outbox,
        state: StateStore,
        node: str,
        metrics: FilemonMetrics,
        *,
        workers: int = 8,
        on_retry: Callable[[str, float], None] | None = None,
        quiet: float = 0.3,
    ) -> None:
        self.root = Path(root)
        self.rules = rules
        self.snapshot_dir = Path(snapshot_dir)
        self.outbox = outbox
        self.state = state
        self.node = node
        self.metrics = metrics
        self.on_retry = on_retry or (lambda rel, delay: None)
        self.quiet = quiet
        self._queues = [_FairQueue() for _ in range(max(1, workers))]
        self._queued: dict[str, tuple[bool, float | None]] = {}  # rel -> (scan, noticed_at)
        self._busy = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._work, args=(q,), name=f"filemon-pipeline-{i}", daemon=True)
            for i, q in enumerate(self._queues)
        ]
        self._outbox_full_logged = False
        self._snapshot_error_logged = False

    # --- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> Pipeline:
        for t in self._threads:
            t.start()
        return self

    def alive(self) -> bool:
        return all(t.is_alive() for t in self._threads)

    def pending(self) -> int:
        with self._lock:
            return len(self._queued) + self._busy

    def wait_idle(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.pending() == 0:
                return True
            time.sleep(0.02)
        return self.pending() == 0

    def stop(self, timeout: float = 10.0) -> bool:
        """Finish queued jobs (at most ``timeout`` s), then stop the workers. True if all were done."""
        done = self.wait_idle(timeout)
        self._stop.set()
        for q in self._queues:
            q.put(None)
        for t in self._threads:
            t.join(2)
        return done

    # --- jobs --------------------------------------------------------------------------------------

    def submit(self, rel: str, *, scan: bool = False, noticed_at: float | None = None) -> None:
        """Reconcile ``rel`` soon. ``scan``: a periodic/startup look, so an unchanged size+mtime means
        unchanged content (live events always read the file: two saves can share an mtime tick)."""
        # A scan finds edits made while nobody watched: their mtime is the best time we have.
        noticed = None if scan else (noticed_at if noticed_at is not None else time.time())
        with self._lock:
            queued = self._queued.get(rel)
            if queued is not None:
                # Already waiting: one reconcile covers both. A live change upgrades a scan job so
                # the file is really read (a scan trusts size+mtime).
                if queued[0] and not scan:
                    self._queued[rel] = (False, noticed)
                return
            self._queued[rel] = (scan, noticed)
            self.metrics.queued.set(len(self._queued))
        shard = zlib.crc32(rel.encode("utf-8", "surrogateescape")) % len(self._queues)
        self._queues[shard].put(rel, owner=rel.split("/", 1)[0])

    def _work(self, q: _FairQueue) -> None:
        while True:
            rel = q.get()
            if rel is None:
                return
            with self._lock:
                scan, noticed_at = self._queued.pop(rel, (False, None))
                self._busy += 1
                self.metrics.queued.set(len(self._queued))
            try:
                self.reconcile(rel, scan=scan, noticed_at=noticed_at)
            except Exception:  # one bad file must not stop the pipeline
                self.metrics.errors.labels("reconcile").inc()
                log.exception("failed to process %s", rel)
            finally:
                with self._lock:
                    self._busy -= 1

    # --- the work ----------------------------------------------------------------------------------

    def reconcile(self, rel: str, *, scan: bool = False, noticed_at: float | None = None) -> str:
        """Bring the state of ``rel`` up to date. Returns what happened (for tests and logs)."""
        ident, reason = classify(self.rules, rel)
        if ident is None:
            self.metrics.skipped.labels(reason).inc()
            return f"skipped:{reason}"
        prev = self.state.get(rel)
        try:
            st = lstat_beneath(self.root, rel)
        except (FileNotFoundError, NotADirectoryError):
            st = None
        if st is None or not stat.S_ISREG(st.st_mode):
            if st is not None:
                self.metrics.skipped.labels("not_regular").inc()
            if prev is None:
                return "absent"
            return self._emit_delete(rel, ident, prev)
        limit = self.rules.max_file_size
        if st.st_size > limit:
            return self._emit_too_large(rel, ident, prev, st.st_size, st.st_mtime_ns, noticed_at)
        if (
            scan
            and prev is not None
            and prev.kind == KIND_SAVE
            and prev.size == st.st_size
            and prev.mtime_ns == st.st_mtime_ns
        ):
            return "unchanged"
        try:
            data, size, mtime_ns = self._read_stable(self.root, rel, limit)
        except _ChangedWhileReading:
            self.metrics.read_retries.inc()
            self.on_retry(rel, self.quiet)
            return "retry:changed_while_reading"
        except (FileNotFoundError, NotADirectoryError):
            # Gone between lstat and open: the delete event that follows reconciles it.
            return "retry:vanished"
        except OSError as exc:
            self.metrics.skipped.labels("unreadable").inc()
            log.warning("cannot read %s: %s", rel, exc.strerror or exc)
            return "skipped:unreadable"
        if size > limit:
            return self._emit_too_large(rel, ident, prev, size, mtime_ns, noticed_at)
        digest = hashlib.sha256(data).hexdigest()
        if prev is not None and prev.kind == KIND_SAVE and prev.sha256 == digest:
            self.metrics.unchanged.inc()
            if prev.size != size or prev.mtime_ns != mtime_ns:
                # Same content, new mtime (touch, or a save without changes): remember the mtime so scans skip it.
                self._put([], StateStore.upsert(FileState(rel, KIND_SAVE, size, mtime_ns, digest)), rel)
            return "unchanged"
        # The previous version's base is the likeliest to make this save a small delta (snapshots.py).
        previous = prev.sha256 if prev is not None and prev.kind == KIND_SAVE else None
        try:
            stored = snapshots.store_snapshot(self.snapshot_dir, data, digest, previous=previous)
        except OSError as exc:
            self.metrics.errors.labels("snapshot").inc()
            if not self._snapshot_error_logged:  # one line per outage, not one per file
                log.error(
                    "cannot write snapshots to %s (%s: %s); retrying every %.0f s",
                    self.snapshot_dir,
                    rel,
                    exc.strerror or exc,
                    OUTBOX_RETRY_SECONDS,
                )
                self._snapshot_error_logged = True
            self.on_retry(rel, OUTBOX_RETRY_SECONDS)
            return "retry:snapshot"
        if self._snapshot_error_logged:
            log.info("snapshot store %s is writable again", self.snapshot_dir)
            self._snapshot_error_logged = False
        if stored.written:
            self.metrics.snapshots.inc()
            self.metrics.snapshot_bytes.inc(stored.stored_bytes)
            self.metrics.snapshot_content_bytes.inc(len(data))
            self.metrics.snapshot_forms.labels(stored.form).inc()
        else:
            self.metrics.snapshot_reused.inc()
        event = wire.FileSave(
            event_id=save_event_id(rel, digest, mtime_ns),
            timestamp=_event_time(mtime_ns, noticed_at),
            node=self.node,
            source="filemon",
            course=ident.student.course,
            section=ident.student.section,
            student_id=ident.student.student_id,
            assignment=ident.assignment,
            path=ident.path,
            sha256=digest,
            size=size,
        )
        if not self._put([event], StateStore.upsert(FileState(rel, KIND_SAVE, size, mtime_ns, digest)), rel):
            return "retry:outbox"
        self.metrics.file_events.labels("modify" if prev is not None else "create").inc()
        self.metrics.emit_delay.observe(max(0.0, time.time() - mtime_ns / 1e9))
        return "save"

    def _emit_delete(self, rel: str, ident: identity.FileIdentity, prev: FileState) -> str:
        event = wire.FileDelete(
            event_id=delete_event_id(rel, prev),
            timestamp=wire.utcnow(),
            node=self.node,
            source="filemon",
            course=ident.student.course,
            section=ident.student.section,
            student_id=ident.student.student_id,
            assignment=ident.assignment,
            path=ident.path,
        )
        if not self._put([event], StateStore.delete(rel), rel):
            return "retry:outbox"
        self.metrics.file_events.labels("delete").inc()
        return "delete"

    def _emit_too_large(self, rel, ident, prev, size, mtime_ns, noticed_at) -> str:
        self.metrics.skipped.labels("too_large").inc()
        if prev is not None and prev.kind == KIND_TOO_LARGE:
            # Once per file while it stays over the limit, not once per size: a file that grows forever
            # (a program appending to it) would otherwise add an event every debounce period, forever.
            # It is recorded again after it has been saved under the limit or deleted.
            return "unchanged"
        event = wire.FileTooLarge(
            event_id=too_large_event_id(rel, size, mtime_ns),
            timestamp=_event_time(mtime_ns, noticed_at),
            node=self.node,
            source="filemon",
            course=ident.student.course,
            section=ident.student.section,
            student_id=ident.student.student_id,
            assignment=ident.assignment,
            path=ident.path,
            size=size,
            limit=self.rules.max_file_size,
        )
        if not self._put([event], StateStore.upsert(FileState(rel, KIND_TOO_LARGE, size, mtime_ns, None)), rel):
            return "retry:outbox"
        self.metrics.too_large.inc()
        log.info(
            "%s is %d bytes, over the %d byte limit: recorded as file.too_large, content not kept",
            rel,
            size,
            self.rules.max_file_size,
        )
        return "too_large"

    def _put(self, events: list, also, rel: str) -> bool:
        try:
            self.outbox.put(events, also=also)
        except OutboxUnavailable as exc:
            reason = "disk_full" if isinstance(exc, OutboxDiskFull) else "full"
            self.metrics.outbox_unavailable.labels(reason).inc()
            if not self._outbox_full_logged:
                log.error(
                    "cannot queue events: %s; filemon keeps watching and retries every %.0f s",
                    exc,
                    OUTBOX_RETRY_SECONDS,
                )
                self._outbox_full_logged = True
            self.on_retry(rel, OUTBOX_RETRY_SECONDS)
            return False
        if self._outbox_full_logged:
            log.info("outbox accepts events again")
            self._outbox_full_logged = False
        return True

    @staticmethod
    def _read_stable(root: Path, rel: str, limit: int) -> tuple[bytes, int, int]:
        """Read the whole file and make sure it did not change meanwhile. Never follows a symlink."""
        parent, name = open_parent_beneath(root, rel)
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=parent)
        finally:
            os.close(parent)
        try:
            before = os.fstat(fd)
            if not stat.S_ISREG(before.st_mode):
                raise OSError(errno.EINVAL, "not a regular file")
            if before.st_size > limit:
                return b"", before.st_size, before.st_mtime_ns
            chunks = []
            remaining = limit + 1
            while remaining > 0:
                chunk = os.read(fd, min(remaining, 1 << 20))
                if not chunk:
                    break
                chunks.append(chunk)
                remaining -= len(chunk)
            after = os.fstat(fd)
        finally:
            os.close(fd)
        data = b"".join(chunks)
        if (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns) or len(data) != after.st_size:
            if len(data) > limit:
                return b"", len(data), after.st_mtime_ns
            raise _ChangedWhileReading()
        return data, after.st_size, after.st_mtime_ns


# A student may swap a folder filemon knows for a symlink into a classmate's folder (or anywhere filemon's
# root can read). Every component below the workspace root is therefore opened with O_NOFOLLOW: a link
# anywhere in the path reads as "no such file", never as the file it points to.
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def open_parent_beneath(root: Path, rel: str) -> tuple[int, str]:
    """(fd of the folder holding ``rel``, its last component), walking down from ``root`` without
    following a symlink. Raises NotADirectoryError when a component is a link or no folder."""
    *folders, name = rel.split("/")
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in folders:
            try:
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise NotADirectoryError(errno.ENOTDIR, f"{part} is a link or no folder", rel) from None
                raise
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd, name


def lstat_beneath(root: Path, rel: str) -> os.stat_result:
    """``os.lstat(root / rel)``, except that a symlink in any folder of ``rel`` is not followed."""
    parent, name = open_parent_beneath(root, rel)
    try:
        return os.stat(name, dir_fd=parent, follow_symlinks=False)
    finally:
        os.close(parent)


def _event_time(mtime_ns: int, noticed_at: float | None) -> datetime:
    mtime = mtime_ns / 1e9
    if noticed_at is not None and mtime < noticed_at - STALE_MTIME_SECONDS:
        mtime = noticed_at
    return datetime.fromtimestamp(mtime, UTC)
