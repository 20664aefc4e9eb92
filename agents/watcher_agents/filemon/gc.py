"""The snapshot collector: removes from the snapshot store the contents whose events were erased.

The backend erases events (``DELETE /api/v1/students/{id}``, the retention purge) but cannot touch the
snapshot store: only filemon writes it, the backend mounts it read-only. So the backend queues the sha256
of every erased content, and filemon's collector asks for the ones no stored event refers to any more::

    GET  /api/v1/snapshots/unreferenced?limit=N      -> wire.UnreferencedSnapshots {"sha256": [...], "pending"}
         for each: snapshots.remove_unreferenced(store, sha, grace) -> removed | missing | recent
    POST /api/v1/snapshots/unreferenced/removed      <- wire.RemovedSnapshots {"sha256": [removed + missing],
                                                                             "kept": [recent]}
         -> wire.ForgottenSnapshots {"forgotten": n}

and pages on while a full page came back with something new in it that the backend was told about
(``next_page_wanted``). A content saved within the grace period is kept ("recent"); the backend moves it
to the back of its queue and offers it again later. The grace period covers events still on their way
(in some node's outbox) that refer to a content the backend thinks nobody uses; a save of the content
also touches it (``write_snapshot``), which restarts its grace period.

Every filemon replica may collect on the same store: ``remove_unreferenced`` is idempotent and race-free
against saves, and "missing" (another node was first) is reported like "removed". It rewrites whole the
deltas that still need a content as their base before removing it, under the store lock (one removal at a
time across nodes); a lock that stays taken is an error for that content, offered again next run.

A failed exchange with the backend (down, 4xx, 5xx, an answer that is not the contract) is counted in
``filemon_snapshot_gc_total{result="error"}`` and logged once per streak of failures, with what to do;
the collector tries again at the next interval. It never stops on an error.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from pydantic import ValidationError

from watcher_core import snapshots, wire

log = logging.getLogger(__name__)

UNREFERENCED_PATH = "/api/v1/snapshots/unreferenced"
REMOVED_PATH = "/api/v1/snapshots/unreferenced/removed"
DEFAULT_INTERVAL = 600.0
DEFAULT_GRACE = 86400.0
DEFAULT_PAGE_SIZE = 1000


class ExchangeFailed(Exception):
    """The backend did not give a usable answer. ``reason`` is short (for tests and logs), the message says
    what happened and what to do."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class RunReport:
    """What one run of the collector did."""

    removed: int = 0
    missing: int = 0
    recent: int = 0
    errors: int = 0  # contents that could not be removed (file system errors)
    bytes_removed: int = 0
    pages: int = 0
    pending: int | None = None  # the backend's count after the last page it sent
    failure: str | None = None  # reason the run stopped early (a failed exchange), None if it finished
    reported: list[str] = field(default_factory=list)  # sha256 the backend was told are gone

    @property
    def ok(self) -> bool:
        return self.failure is None


def stored_size(root: str | os.PathLike, sha256: str) -> int:
    """Size of a stored content as stored (compressed; also one a dead collector left aside), 0 if it is not
    there. Contents are addressed by their hash, so the size read before the removal is the size removed."""
    path = snapshots.snapshot_path(root, sha256)
    for candidate in (path, path.with_name(snapshots.GC_PREFIX + sha256)):
        try:
            return candidate.stat().st_size
        except FileNotFoundError:
            continue
    return 0


def next_page_wanted(page_length: int, page_size: int, new_in_page: int, told: int) -> bool:
    """Ask for another page only if this one was full (there may be more), held contents not seen before in
    this run (kept ones come back at the end of the queue: seeing them again means the queue went round),
    and the backend was told about some of them (else it would send the same page: none could be removed)."""
    return page_length >= page_size and new_in_page > 0 and told > 0


class SnapshotCollector:
    """A daemon thread that runs ``run_once`` every ``interval`` seconds until ``stop``.

    ``client`` is the agent's HTTP client to the backend (the sender's: same token, same headers);
    ``initial_delay`` defaults to a random time up to ``interval`` so that the nodes of a DaemonSet that
    started together do not all ask at once.
    """

    def __init__(
        self,
        snapshot_dir: str | os.PathLike,
        client: httpx.Client,
        backend_url: str,
        metrics,
        *,
        interval: float = DEFAULT_INTERVAL,
        grace: float = DEFAULT_GRACE,
        page_size: int = DEFAULT_PAGE_SIZE,
        initial_delay: float | None = None,
        name: str = "snapshot-gc",
    ) -> None:
        if interval <= 0:
            raise ValueError("interval must be > 0 (an interval of 0 means: do not create a collector)")
        self.snapshot_dir = Path(snapshot_dir)
        self.client = client
        self.backend_url = backend_url.rstrip("/")
        self.metrics = metrics
        self.interval = interval
        self.grace = grace
        self.page_size = max(1, min(page_size, wire.MAX_GC_BATCH))
        self.initial_delay = random.uniform(0, interval) if initial_delay is None else initial_delay
        self._stop = threading.Event()
        self._run_lock = threading.Lock()  # the thread and a caller of run_once never interleave
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._failing: str | None = None  # reason of the current failure streak; None when the last run worked
        self._file_errors_logged = False
        self.last_report: RunReport | None = None

    # --- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> SnapshotCollector:
        self._thread.start()
        return self

    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after the content being removed (a page in progress is reported to the backend first)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _loop(self) -> None:
        log.info(
            "snapshot collector started: every %g s (first in %.0f s), grace period %g s, store %s",
            self.interval,
            self.initial_delay,
            self.grace,
            self.snapshot_dir,
        )
        delay = self.initial_delay
        while not self._stop.wait(delay):
            delay = self.interval
            try:
                self.run_once()
            except Exception as exc:  # a bug must not end the collector (nor filemon): count it, go on
                self.metrics.snapshot_gc.labels("error").inc()
                first = self._failing is None
                self._failing = f"internal:{type(exc).__name__}"
                if first:
                    log.exception("snapshot collector: unexpected error; trying again in %g s", self.interval)
        log.info("snapshot collector stopped")

    # --- one run -----------------------------------------------------------------------------------

    def run_once(self) -> RunReport:
        """Collect now: page through the backend's unreferenced contents until none is left to do."""
        with self._run_lock:
            report = RunReport()
            try:
                self._collect(report)
            except ExchangeFailed as exc:
                report.failure = exc.reason
                self.metrics.snapshot_gc.labels("error").inc()
                if self._failing is None and not self._stop.is_set():  # (shutting down: the client is closing)
                    log.warning("snapshot collector: %s", exc)
                self._failing = exc.reason
            else:
                if self._failing is not None:
                    log.info("snapshot collector: the backend answers again, erased contents are being removed")
                self._failing = None
                self.metrics.snapshot_gc_last_run.set(time.time())
            self._log_run(report)
            self.last_report = report
            return report

    def _collect(self, report: RunReport) -> None:
        seen: set[str] = set()
        while True:
            page = self._fetch_page()
            report.pages += 1
            report.pending = page.pending
            new = [sha for sha in page.sha256 if sha not in seen]
            seen.update(new)
            gone, kept = [], []
            for sha in new:
                if self._stop.is_set():
                    break
                result = self._remove(sha, report)
                if result in ("removed", "missing"):
                    gone.append(sha)
                elif result == "recent":
                    kept.append(sha)
            if gone or kept:
                self._report(gone, kept)
            report.reported += gone
            if self._stop.is_set() or not next_page_wanted(
                len(page.sha256), self.page_size, len(new), len(gone) + len(kept)
            ):
                return

    def _remove(self, sha: str, report: RunReport) -> str:
        try:
            size = stored_size(self.snapshot_dir, sha)
            result = snapshots.remove_unreferenced(self.snapshot_dir, sha, self.grace)
        except OSError as exc:  # e.g. the store is mounted read-only here, or a permission problem
            report.errors += 1
            self.metrics.snapshot_gc.labels("error").inc()
            if not self._file_errors_logged:
                log.warning(
                    "snapshot collector: cannot remove %s from %s (%s); it is kept and asked for again "
                    "next time. Is --snapshot-dir (WATCHER_SNAPSHOT_DIR) writable by filemon?",
                    sha,
                    self.snapshot_dir,
                    exc,
                )
                self._file_errors_logged = True
            return "error"
        self.metrics.snapshot_gc.labels(result).inc()
        setattr(report, result, getattr(report, result) + 1)
        if result == "removed":
            report.bytes_removed += size
            self.metrics.snapshot_gc_bytes.inc(size)
        return result

    def _log_run(self, report: RunReport) -> None:
        if report.ok and not report.errors:
            self._file_errors_logged = False
        if report.removed or report.missing or report.errors:
            log.info(
                "snapshot collector: %d erased contents removed (%d bytes), %d already gone, %d kept as "
                "saved within the grace period, %d could not be removed; %s more queued at the backend",
                report.removed,
                report.bytes_removed,
                report.missing,
                report.recent,
                report.errors,
                "?" if report.pending is None else report.pending,
            )

    # --- the exchange with the backend --------------------------------------------------------------

    def _fetch_page(self) -> wire.UnreferencedSnapshots:
        resp = self._request("GET", UNREFERENCED_PATH, params={"limit": self.page_size})
        return self._parse(resp, wire.UnreferencedSnapshots)

    def _report(self, gone: list[str], kept: list[str]) -> int:
        body = wire.RemovedSnapshots(sha256=gone, kept=kept).model_dump(mode="json")
        resp = self._request("POST", REMOVED_PATH, json=body)
        return self._parse(resp, wire.ForgottenSnapshots).forgotten

    def _request(self, method: str, path: str, **kwargs) -> httpx.Response:
        url = self.backend_url + path
        again = f"erased contents stay on disk meanwhile; trying again every {self.interval:g} s"
        try:
            resp = self.client.request(method, url, **kwargs)
        except httpx.TimeoutException:
            raise ExchangeFailed(
                "timeout",
                f"the backend at {self.backend_url} did not answer {method} {path} in time; {again}. Is it overloaded?",
            ) from None
        except httpx.TransportError as exc:
            raise ExchangeFailed(
                "connection",
                f"cannot reach the backend at {self.backend_url} ({exc}); {again}. "
                "Check --backend-url (WATCHER_BACKEND_URL) and that the backend runs",
            ) from None
        status = resp.status_code
        if status == 200:
            return resp
        if status == 404:
            raise ExchangeFailed(
                "unsupported",
                f"the backend at {self.backend_url} does not support removing "
                f"erased snapshot contents ({method} {path} answered 404: it is older than this "
                f"filemon); erased contents stay on disk until it is upgraded. "
                "--snapshot-gc-interval 0 turns the collector off",
            )
        if status in (401, 403):
            raise ExchangeFailed(
                "auth",
                f"the backend refused the ingest token ({method} {path} answered "
                f"{status}); {again}. Check WATCHER_INGEST_TOKEN or --token-file "
                "(WATCHER_INGEST_TOKEN_FILE)",
            )
        if status >= 500:
            raise ExchangeFailed(
                "http_5xx", f"the backend failed on {method} {path} (HTTP {status}); {again}. See the backend's log"
            )
        raise ExchangeFailed(
            f"http_{status}",
            f"the backend refused {method} {path} (HTTP {status}: "
            f"{resp.text[:200]!r}); {again}. Are filemon and the backend the same version?",
        )

    def _parse(self, resp: httpx.Response, model):
        try:
            return model.model_validate(resp.json())
        except (ValueError, ValidationError):
            raise ExchangeFailed(
                "bad_response",
                f"the backend at {self.backend_url} answered {resp.request.method} "
                f"{resp.request.url.path} with something that is not a {model.__name__} "
                f"({resp.text[:120]!r}); is --backend-url (WATCHER_BACKEND_URL) a JCode Watcher "
                "backend?",
            ) from None
