"""The snapshot collector's logic on a real snapshot store (tmp dir) against an in-memory backend that keeps
the contract of GET /api/v1/snapshots/unreferenced and POST .../removed (httpx.MockTransport): paging,
what is reported back, the grace period, metrics, and the faults a real backend does not produce on demand
(500s, bad JSON, an older backend's 404). The real backend is in tests/integration/filemon/test_gc_backend.py."""

from __future__ import annotations

import json
import logging
import os
import threading
import time

import httpx
import pytest
from prometheus_client import CollectorRegistry

from watcher_agents.filemon import gc
from watcher_agents.filemon.metrics import FilemonMetrics
from watcher_core import snapshots, wire

DAY = 86400.0
URL = "http://backend.test:3000"
TOKEN = "ingest-secret"


class FakeBackend:
    """The backend's side of the exchange: a queue of erased contents, oldest first."""

    def __init__(self, queued=()):
        self.queue: list[str] = list(queued)
        self.referenced: set[str] = set()
        self.fail_with: httpx.Response | Exception | None = None
        self.fail_posts = False
        self.requests: list[httpx.Request] = []
        self.reported: list[str] = []
        self.kept: list[str] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.fail_with is not None:
            if isinstance(self.fail_with, Exception):
                raise self.fail_with
            return self.fail_with
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return httpx.Response(401, json={"detail": "missing or wrong token"})
        if request.method == "GET" and request.url.path == gc.UNREFERENCED_PATH:
            limit = int(request.url.params.get("limit", 1000))
            assert 1 <= limit <= 5000
            # Queued contents that got referenced again are dropped, as the backend does.
            self.queue = [s for s in self.queue if s not in self.referenced]
            page = self.queue[:limit]
            return httpx.Response(200, json={"sha256": page, "pending": len(self.queue) - len(page)})
        if request.method == "POST" and request.url.path == gc.REMOVED_PATH:
            if self.fail_posts:
                return httpx.Response(503)
            body = wire.RemovedSnapshots.model_validate(json.loads(request.content))
            self.reported += body.sha256
            self.kept += body.kept
            before = len(self.queue)
            self.queue = [s for s in self.queue if s not in set(body.sha256)]
            forgotten = before - len(self.queue)
            # Kept contents go to the back of the queue, so they do not hide the rest.
            self.queue = [s for s in self.queue if s not in set(body.kept)] + [s for s in body.kept if s in self.queue]
            return httpx.Response(200, json={"forgotten": forgotten})
        return httpx.Response(404, json={"detail": "Not Found"})


def _store(root, data: bytes, age: float) -> str:
    sha, _ = snapshots.write_snapshot(root, data)
    past = time.time() - age
    os.utime(snapshots.snapshot_path(root, sha), (past, past))
    return sha


def _collector(root, backend: FakeBackend, **kwargs):
    client = httpx.Client(transport=httpx.MockTransport(backend.handler), headers={"Authorization": f"Bearer {TOKEN}"})
    metrics = FilemonMetrics(CollectorRegistry())
    kwargs.setdefault("interval", 600)
    kwargs.setdefault("grace", DAY)
    kwargs.setdefault("initial_delay", 3600)
    return gc.SnapshotCollector(root, client, URL, metrics, **kwargs)


def _count(collector, result: str) -> float:
    return collector.metrics.snapshot_gc.labels(result)._value.get()


def test_next_page_only_after_a_full_page_with_news_the_backend_was_told():
    assert gc.next_page_wanted(100, 100, new_in_page=100, told=3)
    assert not gc.next_page_wanted(99, 100, new_in_page=99, told=99)  # the last page
    assert not gc.next_page_wanted(100, 100, new_in_page=100, told=0)  # none removable: the same page again
    assert not gc.next_page_wanted(100, 100, new_in_page=0, told=0)  # the queue went round


def test_stored_size_also_of_a_content_a_dead_collector_left_aside(tmp_path):
    sha = _store(tmp_path, b"x" * 123, age=0)
    final = snapshots.snapshot_path(tmp_path, sha)
    on_disk = final.stat().st_size  # the bytes that leave the disk: compressed, less than the content's 123
    assert 0 < on_disk < 123 and gc.stored_size(tmp_path, sha) == on_disk
    os.rename(final, final.with_name(snapshots.GC_PREFIX + sha))
    assert gc.stored_size(tmp_path, sha) == on_disk
    assert gc.stored_size(tmp_path, "0" * 64) == 0


def test_old_contents_are_removed_recent_kept_and_gone_ones_reported(tmp_path):
    old = _store(tmp_path, b"erased, old\n" * 10, age=2 * DAY)
    fresh = _store(tmp_path, b"erased, saved lately\n", age=60)
    keep = _store(tmp_path, b"still referenced\n", age=2 * DAY)
    absent = snapshots.sha256_of(b"never in this store")
    backend = FakeBackend([old, fresh, absent])
    collector = _collector(tmp_path, backend)

    report = collector.run_once()

    assert report.ok and (report.removed, report.missing, report.recent, report.errors) == (1, 1, 1, 0)
    assert snapshots.read_snapshot(tmp_path, old) is None
    assert snapshots.read_snapshot(tmp_path, fresh) == b"erased, saved lately\n"
    assert snapshots.read_snapshot(tmp_path, keep) == b"still referenced\n"
    assert sorted(backend.reported) == sorted([old, absent])  # removed + missing
    assert backend.kept == [fresh] and backend.queue == [fresh]  # the recent one is asked for again later
    assert 0 < report.bytes_removed < len(b"erased, old\n" * 10)  # as stored: compressed
    assert collector.metrics.snapshot_gc_bytes._value.get() == report.bytes_removed
    assert [_count(collector, r) for r in ("removed", "missing", "recent", "error")] == [1, 1, 1, 0]
    assert abs(collector.metrics.snapshot_gc_last_run._value.get() - time.time()) < 60


def test_the_recent_content_is_removed_once_its_grace_period_is_over(tmp_path):
    fresh = _store(tmp_path, b"saved lately\n", age=60)
    backend = FakeBackend([fresh])
    assert _collector(tmp_path, backend, grace=3600).run_once().recent == 1
    assert _collector(tmp_path, backend, grace=30).run_once().removed == 1
    assert backend.queue == [] and snapshots.read_snapshot(tmp_path, fresh) is None


def test_pages_until_the_queue_is_done(tmp_path):
    shas = [_store(tmp_path, f"content {i}\n".encode(), age=2 * DAY) for i in range(7)]
    backend = FakeBackend(shas)
    collector = _collector(tmp_path, backend, page_size=3)

    report = collector.run_once()

    assert report.removed == 7 and report.pages == 3 and report.pending == 0
    assert backend.queue == [] and not any(tmp_path.rglob("*/" + "?" * 64))
    gets = [r for r in backend.requests if r.method == "GET"]
    assert {r.url.params["limit"] for r in gets} == {"3"}


def test_a_full_page_of_contents_to_keep_neither_hides_the_rest_nor_loops(tmp_path):
    recent = [_store(tmp_path, f"recent {i}\n".encode(), age=10) for i in range(3)]
    old = _store(tmp_path, b"old\n", age=2 * DAY)
    backend = FakeBackend(recent + [old])
    report = _collector(tmp_path, backend, page_size=3).run_once()
    assert report.ok and report.recent == 3 and report.removed == 1
    assert snapshots.read_snapshot(tmp_path, old) is None and all(snapshots.read_snapshot(tmp_path, s) for s in recent)
    assert sorted(backend.queue) == sorted(recent) and report.pages == 3  # stopped when the queue came round


def test_a_full_page_that_cannot_be_removed_is_asked_once(tmp_path):
    blocked = [snapshots.sha256_of(f"blocked {i}".encode()) for i in range(3)]
    for sha in blocked:
        (tmp_path / sha[:2]).write_bytes(b"not a directory")
    backend = FakeBackend(blocked)
    report = _collector(tmp_path, backend, page_size=3).run_once()
    assert report.ok and report.errors == 3 and report.pages == 1 and len(backend.requests) == 1


def test_a_content_that_cannot_be_removed_is_counted_kept_and_not_reported(tmp_path, caplog):
    old = _store(tmp_path, b"removable\n", age=2 * DAY)
    blocked = snapshots.sha256_of(b"its directory is a file")
    (tmp_path / blocked[:2]).write_bytes(b"not a directory")  # remove_unreferenced gets NotADirectoryError
    backend = FakeBackend([blocked, old])
    collector = _collector(tmp_path, backend)

    with caplog.at_level(logging.WARNING, logger=gc.__name__):
        first = collector.run_once()
        second = collector.run_once()

    assert first.ok and first.errors == 1 and first.removed == 1 and second.errors == 1
    assert backend.reported == [old] and backend.queue == [blocked]
    assert _count(collector, "error") == 2
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "WATCHER_SNAPSHOT_DIR" in warnings[0]


@pytest.mark.parametrize(
    "fault, reason, advice",
    [
        (httpx.Response(503, text="busy"), "http_5xx", "backend's log"),
        (httpx.Response(500, text="boom"), "http_5xx", "backend's log"),
        (httpx.Response(200, text="<html>proxy login</html>"), "bad_response", "WATCHER_BACKEND_URL"),
        (httpx.Response(200, json={"sha256": ["not-a-sha"], "pending": 0}), "bad_response", "WATCHER_BACKEND_URL"),
        (httpx.Response(404, json={"detail": "Not Found"}), "unsupported", "does not support"),
        (httpx.Response(401, json={"detail": "bad token"}), "auth", "WATCHER_INGEST_TOKEN"),
        (httpx.Response(422, json={"detail": "limit"}), "http_422", "same version"),
        (httpx.ConnectError("connection refused"), "connection", "WATCHER_BACKEND_URL"),
        (httpx.ReadTimeout("timed out"), "timeout", "overloaded"),
    ],
)
def test_a_failure_streak_is_counted_each_time_logged_once_and_the_next_run_recovers(
    tmp_path, caplog, fault, reason, advice
):
    old = _store(tmp_path, b"erased\n", age=2 * DAY)
    backend = FakeBackend([old])
    collector = _collector(tmp_path, backend)
    backend.fail_with = fault

    with caplog.at_level(logging.INFO, logger=gc.__name__):
        reports = [collector.run_once() for _ in range(3)]
        assert {r.failure for r in reports} == {reason}
        assert _count(collector, "error") == 3
        assert collector.metrics.snapshot_gc_last_run._value.get() == 0
        assert snapshots.read_snapshot(tmp_path, old) == b"erased\n"  # nothing removed without a valid answer
        backend.fail_with = None
        recovered = collector.run_once()

    assert recovered.ok and recovered.removed == 1 and backend.queue == []
    assert collector.metrics.snapshot_gc_last_run._value.get() > 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings  # one line per streak, not per attempt
    assert advice in warnings[0] and "\n" not in warnings[0]
    assert any("answers again" in r.getMessage() for r in caplog.records if r.levelno == logging.INFO)


def test_a_failed_report_leaves_the_queue_for_next_time_and_missing_is_then_reported(tmp_path):
    old = _store(tmp_path, b"erased\n", age=2 * DAY)
    backend = FakeBackend([old])
    collector = _collector(tmp_path, backend)
    backend.fail_posts = True
    report = collector.run_once()
    assert report.failure == "http_5xx" and report.removed == 1 and backend.queue == [old]

    backend.fail_posts = False
    report = collector.run_once()
    assert report.ok and report.missing == 1 and backend.queue == []


def test_the_thread_runs_every_interval_survives_surprises_and_stops_promptly(tmp_path):
    backend = FakeBackend()
    collector = _collector(tmp_path, backend, interval=0.05, initial_delay=0)
    backend.fail_with = RuntimeError("a bug in the transport")  # not an httpx error: an unexpected exception
    collector.start()
    try:
        deadline = time.monotonic() + 20
        while _count(collector, "error") < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _count(collector, "error") >= 2 and collector.alive()
        backend.fail_with = None
        seen = len(backend.requests)
        old = _store(tmp_path, b"erased later\n", age=2 * DAY)
        backend.queue.append(old)
        while snapshots.read_snapshot(tmp_path, old) is not None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert snapshots.read_snapshot(tmp_path, old) is None and len(backend.requests) > seen
    finally:
        started = time.monotonic()
        collector.stop(timeout=10)
    assert not collector.alive() and time.monotonic() - started < 5


def test_the_first_run_waits_a_random_time_up_to_the_interval(tmp_path):
    delays = {_collector(tmp_path, FakeBackend(), interval=600, initial_delay=None).initial_delay for _ in range(20)}
    assert all(0 <= d <= 600 for d in delays) and len(delays) > 1


def test_run_once_and_the_thread_never_collect_at_the_same_time(tmp_path):
    shas = [_store(tmp_path, f"c{i}\n".encode(), age=2 * DAY) for i in range(50)]
    backend = FakeBackend(shas)
    collector = _collector(tmp_path, backend, page_size=5)
    reports = []
    threads = [threading.Thread(target=lambda: reports.append(collector.run_once())) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sum(r.removed for r in reports) == 50 and sum(r.missing for r in reports) == 0
