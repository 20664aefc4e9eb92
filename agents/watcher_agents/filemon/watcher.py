"""The watch loop: inotify on every relevant directory of the workspace, feeding the debouncer and pipeline.

One thread owns the inotify descriptor, the watch table and the debouncer. It decides which paths
matter with ``identity.LayoutRules`` (ignored directories such as ``.git`` or ``venv`` are never even
watched) and hands paths to the pipeline:

* saves (IN_CLOSE_WRITE; IN_MOVED_TO for editors that write a temp file and rename it; IN_CREATE for
  hard links and files that appear without a write) go through the per-file debouncer;
* deletes and the old name of a rename take the same per-file path (see ``_handle`` for why): the
  reconcile after the quiet period emits file.delete if the file is still gone;
* a new directory is watched FIRST and scanned second, so ``mkdir -p a/b && echo > a/b/x.c`` is seen
  either by the scan or by the new watch, never missed;
* a directory deleted or moved away: every known file below it is reconciled (-> file.delete);
* IN_Q_OVERFLOW: events were lost, so the whole root is rescanned against the state store.

When inotify runs out of watches (ENOSPC, ``fs.inotify.max_user_watches``) or instances (EMFILE,
``fs.inotify.max_user_instances``), one log line says which limit and how much is needed; the
directories that could not be watched are polled every ``poll_interval`` seconds (and watched as soon
as the limit allows), and ``filemon_watches_missing`` shows the shortfall.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import threading
import time
from collections import deque
from pathlib import Path

from inotify_simple import INotify
from inotify_simple import flags as F

from watcher_agents.filemon.debouncer import Debouncer
from watcher_agents.filemon.metrics import FilemonMetrics
from watcher_agents.filemon.pipeline import Pipeline, classify
from watcher_agents.filemon.state import StateStore
from watcher_core import identity

log = logging.getLogger(__name__)

# Directories only: files get their events through their directory's watch. ONLYDIR makes the add fail
# if the path was replaced by a file meanwhile; DONT_FOLLOW never watches through a student's symlink
# (one to / would make a root agent watch the node). No IN_MODIFY: a save ends with IN_CLOSE_WRITE, and
# per-write events would only wake us up more.
DIR_MASK = (
    F.CLOSE_WRITE
    | F.MOVED_TO
    | F.MOVED_FROM
    | F.CREATE
    | F.DELETE
    | F.DELETE_SELF
    | F.MOVE_SELF
    | F.ONLYDIR
    | F.DONT_FOLLOW
)
MAX_USER_WATCHES = "/proc/sys/fs/inotify/max_user_watches"
MAX_USER_INSTANCES = "/proc/sys/fs/inotify/max_user_instances"


def _read_limit(path: str) -> int | None:
    try:
        return int(Path(path).read_text().strip())
    except (OSError, ValueError):
        return None


def _join(parent: str, name: str) -> str:
    return f"{parent}/{name}" if parent else name


class Watcher:
    def __init__(
        self,
        root: Path,
        rules: identity.LayoutRules,
        pipeline: Pipeline,
        state: StateStore,
        metrics: FilemonMetrics,
        *,
        quiet: float = 0.3,
        max_wait: float = 3.0,
        poll_interval: float = 30.0,
        node_local: bool = False,
    ) -> None:
        self.root = Path(root)
        # node mode: only these student folders (those of the pods on this node, see pods.py) are watched;
        # None: every student folder of the volume. The root itself is watched in both modes (one watch),
        # so a folder that appears after its pod is seen.
        self.only: set[str] | None = set() if node_local else None
        self.rules = rules
        self.pipeline = pipeline
        self.state = state
        self.metrics = metrics
        self.debouncer = Debouncer(quiet, max_wait)
        self.poll_interval = poll_interval
        self.inotify: INotify | None = None
        self.watches: dict[int, str] = {}  # wd -> directory relative to the root ('' = the root)
        self.dirs: dict[str, int] = {}  # directory -> wd
        self.missing: set[str] = set()  # directories we could not watch
        self._limit_logged = False
        self._instances_logged = False
        self._commands: deque = deque()  # from other threads: ("retry", rel, delay) / ("event", ev)
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._pipe_lock = threading.Lock()
        self._pipe_closed = False
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="filemon-watch", daemon=True)
        self._next_poll = float("inf")
        self.rescan_requested: str | None = None

    # --- lifecycle and cross-thread requests --------------------------------------------------------

    def start(self) -> Watcher:
        self._thread.start()
        return self

    def alive(self) -> bool:
        return self._thread.is_alive()

    def wait_ready(self, timeout: float) -> bool:
        """True once the startup scan has been queued and the loop is reading events."""
        return self._ready.wait(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop reading events and hand every pending (debounced) file to the pipeline."""
        self._stop.set()
        self._wake()
        self._thread.join(timeout)

    def retry(self, rel: str, delay: float) -> None:
        """Called by the pipeline (any thread): look at ``rel`` again after ``delay`` seconds."""
        self._commands.append(("retry", rel, delay))
        self._wake()

    def workspace_added(self, folder: str) -> None:
        """Node mode, any thread: start watching the student folder ``folder`` (a pod for it arrived)."""
        self._commands.append(("scope", True, folder))
        self._wake()

    def workspace_dropped(self, folder: str) -> None:
        """Node mode, any thread: stop watching ``folder`` (its last pod on this node is gone)."""
        self._commands.append(("scope", False, folder))
        self._wake()

    def inject(self, event) -> None:
        """Feed an inotify event as if the kernel had sent it (fault injection, e.g. IN_Q_OVERFLOW)."""
        self._commands.append(("event", event))
        self._wake()

    def _wake(self) -> None:
        with self._pipe_lock:
            if self._pipe_closed:
                return  # the loop has ended; never write to a closed (maybe reused) descriptor
            try:
                os.write(self._wake_w, b"x")
            except BlockingIOError:
                pass  # already awake

    # --- the loop ----------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._open_inotify()
            self._full_scan("startup")
            self._ready.set()
            while not self._stop.is_set():
                self._step()
            for rel in self.debouncer.drain():
                self.pipeline.submit(rel)
            self.metrics.pending.set(0)
        except Exception:
            log.exception("watch loop crashed")
            raise
        finally:
            self._ready.set()
            if self.inotify is not None:
                self.inotify.close()
            with self._pipe_lock:
                self._pipe_closed = True
                os.close(self._wake_r)
                os.close(self._wake_w)

    def _step(self) -> None:
        now = time.monotonic()
        deadline = self.debouncer.next_deadline()
        wait = 1.0 if deadline is None else max(0.0, deadline - now)
        wait = min(wait, 1.0, max(0.0, self._next_poll - now))
        poller = select.poll()
        poller.register(self._wake_r, select.POLLIN)
        if self.inotify is not None:
            poller.register(self.inotify.fileno(), select.POLLIN)
        ready = {fd for fd, _ in poller.poll(wait * 1000)}
        if self._wake_r in ready:
            try:
                while os.read(self._wake_r, 4096):
                    pass
            except BlockingIOError:
                pass
        if self.inotify is not None and self.inotify.fileno() in ready:
            events = self.inotify.read(timeout=0)
            self.metrics.inotify_events.inc(len(events))
            if events:
                self.metrics.last_event.set(time.time())
            for ev in events:
                self._handle(ev)
        while self._commands:
            cmd = self._commands.popleft()
            if cmd[0] == "retry":
                self.debouncer.retry_at(cmd[1], time.monotonic() + cmd[2])
            elif cmd[0] == "event":
                self._handle(cmd[1])
            elif cmd[0] == "scope":
                self._scope(cmd[1], cmd[2])
        if self.rescan_requested:
            reason, self.rescan_requested = self.rescan_requested, None
            self._full_scan(reason)
        now = time.monotonic()
        for rel in self.debouncer.due(now):
            self.pipeline.submit(rel)
        if now >= self._next_poll:
            self._poll_unwatched()
        self.metrics.pending.set(len(self.debouncer))

    # --- events ------------------------------------------------------------------------------------

    def _handle(self, ev) -> None:
        mask = ev.mask
        if mask & F.Q_OVERFLOW:
            log.warning("inotify queue overflowed (events were lost): rescanning the whole workspace")
            self.rescan_requested = "overflow"
            return
        if mask & F.IGNORED:
            rel = self.watches.pop(ev.wd, None)
            if rel is not None and self.dirs.get(rel) == ev.wd:
                del self.dirs[rel]
            self.metrics.watches.set(len(self.watches))
            return
        parent = self.watches.get(ev.wd)
        if parent is None:
            return  # a watch we already dropped
        if not ev.name:
            if mask & (F.DELETE_SELF | F.MOVE_SELF) and parent == "":
                log.error("the workspace root %s was deleted or moved; watching it again when it is back", self.root)
                self._forget_dir("", remove_watches=True)
                self.missing.add("")
                self._update_missing()
            return  # other dirs: handled through their parent's event
        rel = _join(parent, ev.name)
        now = time.monotonic()
        if mask & F.ISDIR:
            if mask & (F.CREATE | F.MOVED_TO):
                if self._should_watch_dir(rel):
                    self.metrics.dir_scans.inc()
                    self._walk(rel, on_file=lambda f: self.debouncer.changed(f, now))
            elif mask & (F.DELETE | F.MOVED_FROM) and self._in_scope(rel):
                self._dir_gone(rel, moved=bool(mask & F.MOVED_FROM))
            if not parent:
                self._count_workspaces()
            return
        if mask & (F.CLOSE_WRITE | F.MOVED_TO | F.CREATE):
            ident, reason = classify(self.rules, rel)
            if ident is None:
                self.metrics.skipped.labels(reason).inc()
                return
            self.debouncer.changed(rel, now)
        elif mask & (F.DELETE | F.MOVED_FROM):
            # Through the same quiet period as saves: safe-save editors (vim's default, several IDEs)
            # rename the original away and write a new file. The one reconcile after the burst sees
            # the final state: a save, or a delete if the file stays gone. Order per file is kept
            # because a file has one debounce entry and one pipeline worker.
            if classify(self.rules, rel)[0] is not None:
                self.debouncer.changed(rel, now)

    def _scope(self, added: bool, folder: str) -> None:
        if self.only is None:
            return
        if added:
            self.only.add(folder)
            if folder not in self.dirs and (self.root / folder).is_dir():
                # like a startup scan of that folder: edits made while no node watched it are found
                seen: set[str] = set()
                self._walk(folder, on_file=lambda rel: self.pipeline.submit(rel, scan=True), seen=seen)
                for known in self.state.under(folder):
                    if known not in seen:
                        self.pipeline.submit(known, scan=True)
        else:
            self.only.discard(folder)
            # its files stay in the state store: the folder is still on the volume, only not here
            self._forget_dir(folder, remove_watches=True)
        self._count_workspaces()

    def _count_workspaces(self) -> None:
        if self.only is not None:
            self.metrics.workspaces.set(len(self.only))
        else:
            self.metrics.workspaces.set(sum(1 for d in self.dirs if d and "/" not in d))

    def _in_scope(self, rel: str) -> bool:
        return self.only is None or rel.split("/", 1)[0] in self.only

    def _dir_gone(self, rel: str, *, moved: bool) -> None:
        self._forget_dir(rel, remove_watches=moved)
        now = time.monotonic()
        for known in self.state.under(rel):
            self.debouncer.changed(known, now)

    def _forget_dir(self, rel: str, *, remove_watches: bool) -> None:
        below = rel + "/" if rel else ""
        for d in [d for d in self.dirs if d == rel or d.startswith(below)]:
            wd = self.dirs.pop(d)
            self.watches.pop(wd, None)
            if remove_watches and self.inotify is not None:
                try:
                    self.inotify.rm_watch(wd)
                except OSError:
                    pass  # already gone
        for d in [d for d in self.missing if d == rel or d.startswith(below)]:
            self.missing.discard(d)
        self.metrics.watches.set(len(self.watches))
        self._update_missing()

    # --- watching and scanning ---------------------------------------------------------------------

    def _should_watch_dir(self, rel: str) -> bool:
        parts = rel.split("/")
        if self.rules.is_ignored_dir(parts[-1]):
            return False
        if len(parts) == 1:  # a student directory: {course}-{section}-{student_id}
            if self.only is not None and parts[0] not in self.only:
                return False  # node mode: no pod of this student on this node
            try:
                identity.parse_student_dir(parts[0])
            except identity.IdentityError:
                return False
        return True

    def _open_inotify(self) -> None:
        try:
            self.inotify = INotify()
            if self._instances_logged:
                log.info("inotify instance obtained: switching from polling to watching")
            self._instances_logged = False
        except OSError as exc:
            if exc.errno not in (errno.EMFILE, errno.ENFILE, errno.ENOMEM):
                raise
            self.inotify = None
            if not self._instances_logged:
                limit = _read_limit(MAX_USER_INSTANCES)
                log.error(
                    "cannot create an inotify instance (%s): fs.inotify.max_user_instances=%s is used up by this "
                    "user; filemon needs 1 more (e.g. sysctl -w fs.inotify.max_user_instances=%s). Polling the "
                    "workspace every %.0f s until then.",
                    os.strerror(exc.errno),
                    limit,
                    (limit or 128) * 2,
                    self.poll_interval,
                )
                self._instances_logged = True

    def add_watch(self, path: str) -> int:
        """One inotify_add_watch (a method so tests can inject ENOSPC)."""
        return self.inotify.add_watch(path, DIR_MASK)

    def _watch_dir(self, rel: str) -> bool:
        if self.inotify is None:
            self.missing.add(rel)
            return False
        try:
            wd = self.add_watch(str(self.root / rel) if rel else str(self.root))
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.ENOMEM):
                self.missing.add(rel)
                return False
            if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                return False  # gone already (its parent's event reconciles it)
            if exc.errno == errno.EACCES:
                self.metrics.skipped.labels("unreadable").inc()
                log.warning("cannot watch %s: permission denied", rel or self.root)
                return False
            raise
        old = self.watches.get(wd)
        if old is not None and old != rel:
            self.dirs.pop(old, None)  # same inode under a new name (moved): keep the new name
        self.watches[wd] = rel
        self.dirs[rel] = wd
        self.missing.discard(rel)
        return True

    def _walk(self, top: str, on_file, seen: set[str] | None = None) -> None:
        """Watch ``top`` and every relevant directory below it (watch first, list second), calling
        ``on_file(rel)`` for each tracked file found."""
        stack = [top]
        while stack:
            rel = stack.pop()
            self._watch_dir(rel)
            try:
                entries = list(os.scandir(self.root / rel if rel else self.root))
            except (FileNotFoundError, NotADirectoryError):
                continue
            except OSError as exc:
                self.metrics.skipped.labels("unreadable").inc()
                log.warning("cannot list %s: %s", rel or self.root, exc.strerror or exc)
                continue
            for entry in entries:
                child = _join(rel, entry.name)
                try:
                    if entry.is_dir(follow_symlinks=False):
                        if self._should_watch_dir(child):
                            stack.append(child)
                        continue
                    regular = entry.is_file(follow_symlinks=False)
                except OSError:
                    continue
                if not rel:
                    continue  # files directly in the root belong to nobody
                if not regular:
                    # a symlink, FIFO or device named like a source file: never read, but counted
                    if classify(self.rules, child)[0] is not None:
                        self.metrics.skipped.labels("not_regular").inc()
                    continue
                ident, reason = classify(self.rules, child)
                if ident is None:
                    if reason != "extension":
                        self.metrics.skipped.labels(reason).inc()
                    continue
                if seen is not None:
                    seen.add(child)
                on_file(child)
        self.metrics.watches.set(len(self.watches))
        self._update_missing()

    def _full_scan(self, reason: str) -> None:
        """Compare the whole workspace with the state store: changed files are reconciled, and known
        files that are no longer there become deletes."""
        started = time.monotonic()
        self.metrics.rescans.labels(reason).inc()
        if self.inotify is None:
            self._open_inotify()
        seen: set[str] = set()
        self._walk("", on_file=lambda rel: self.pipeline.submit(rel, scan=True), seen=seen)
        gone = 0
        for rel in self.state.under(""):
            if rel not in seen and self._in_scope(rel):
                gone += 1
                self.pipeline.submit(rel, scan=True)
        self._count_workspaces()
        log.info(
            "%s scan: %d tracked files, %d known files no longer present, %d directories watched, %d not "
            "watched (%.2f s)",
            reason,
            len(seen),
            gone,
            len(self.watches),
            len(self.missing),
            time.monotonic() - started,
        )

    def _update_missing(self) -> None:
        self.metrics.watches_missing.set(len(self.missing))
        if self.missing:
            if self._next_poll == float("inf"):
                self._next_poll = time.monotonic() + self.poll_interval
            if not self._limit_logged and self.inotify is not None:
                limit = _read_limit(MAX_USER_WATCHES)
                needed = len(self.watches) + len(self.missing)
                log.error(
                    "inotify watch limit reached: %d directories are not watched (fs.inotify.max_user_watches=%s, "
                    "shared by every process of this user; filemon needs %d watches). Raise it, e.g. "
                    "sysctl -w fs.inotify.max_user_watches=%d. Unwatched directories are polled every %.0f s.",
                    len(self.missing),
                    limit,
                    needed,
                    max((limit or 0) + len(self.missing) * 2, needed * 2),
                    self.poll_interval,
                )
                self._limit_logged = True
        else:
            self._next_poll = float("inf")
            if self._limit_logged:
                log.info("all directories are watched again")
            self._limit_logged = False

    def _poll_unwatched(self) -> None:
        """Try again to watch what we could not, and look for changes there meanwhile."""
        self._next_poll = time.monotonic() + self.poll_interval
        if self.inotify is None:
            self._full_scan("poll")
            return
        for rel in sorted(self.missing):
            if rel in self.missing:
                self._poll_dir(rel)
        self._update_missing()

    def _poll_dir(self, rel: str) -> None:
        # Only this directory's own files and subdirectories not already handled.
        self._watch_dir(rel)
        try:
            entries = list(os.scandir(self.root / rel if rel else self.root))
        except OSError:
            return
        for entry in entries:
            child = _join(rel, entry.name)
            try:
                if entry.is_dir(follow_symlinks=False):
                    if self._should_watch_dir(child) and child not in self.dirs and child not in self.missing:
                        self._walk(child, on_file=lambda f: self.pipeline.submit(f, scan=True))
                    continue
                if not entry.is_file(follow_symlinks=False) or not rel:
                    continue
            except OSError:
                continue
            if classify(self.rules, child)[0] is not None:
                self.pipeline.submit(child, scan=True)
        # files that disappeared from an unwatched directory
        prefix = rel + "/"
        for known in self.state.under(rel):
            if "/" not in known[len(prefix) :] and not (self.root / known).exists():
                self.pipeline.submit(known, scan=True)
