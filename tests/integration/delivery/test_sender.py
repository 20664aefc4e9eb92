"""The sender against a real HTTP server on loopback: batching, acks, dead letters, backoff, auth, 413."""

import logging
import threading

import httpx
import pytest
from integration.delivery.recording_server import RecordingServer
from prometheus_client import CollectorRegistry

from support.ports import free_port
from watcher_agents.delivery.agent_http import AgentHTTPServer, HealthChecks
from watcher_agents.delivery.outbox import Outbox
from watcher_agents.delivery.sender import Sender
from watcher_core import wire


def _save(i: int) -> wire.FileSave:
    return wire.FileSave(
        event_id=wire.make_event_id("sender-test", i),
        timestamp=wire.utcnow(),
        node="n1",
        source="filemon",
        course="os",
        section="1",
        student_id="2020",
        assignment="hw1",
        path=f"f{i}.c",
        sha256="b" * 64,
        size=i,
    )


@pytest.fixture
def server():
    srv = RecordingServer(token="tok")
    yield srv
    srv.close()


@pytest.fixture
def outbox(tmp_path):
    box = Outbox(tmp_path / "outbox.db")
    yield box
    box.close()


def _sender(outbox, url, token="tok", **kw):
    kw.setdefault("backoff_base", 0.05)
    kw.setdefault("backoff_cap", 0.3)
    registry = CollectorRegistry()
    return Sender(outbox, url, token, registry, **kw), registry


def _metric(registry, name, labels=None):
    return registry.get_sample_value(name, labels or {}) or 0.0


def test_delivers_in_batches_with_the_token(server, outbox):
    sender, registry = _sender(outbox, server.url, batch_size=40)
    outbox.put([_save(i) for i in range(100)])
    sender.start()
    try:
        assert sender.flush(15)
        assert len(server.stored()) == 100
        posts = [r for r in server.requests if r["path"] == "/api/v1/events"]
        assert len(posts) == 3  # 40 + 40 + 20
        assert all(r["headers"]["Authorization"] == "Bearer tok" for r in posts)
        assert _metric(registry, "watcher_events_sent_total") == 100
        assert _metric(registry, "watcher_send_batches_total") == 3
        assert _metric(registry, "watcher_outbox_events") == 0
    finally:
        sender.stop()


def test_retries_on_503_and_connection_errors_without_loss(server, outbox):
    server.fail_next(503, 503, 500, 429)
    sender, registry = _sender(outbox, server.url)
    outbox.put([_save(i) for i in range(10)])
    sender.start()
    try:
        assert sender.flush(20)
        assert len(server.stored()) == 10
        assert _metric(registry, "watcher_send_failures_total", {"reason": "http_503"}) == 2
        assert _metric(registry, "watcher_send_failures_total", {"reason": "http_5xx"}) == 1
        assert _metric(registry, "watcher_send_failures_total", {"reason": "http_429"}) == 1
        assert _metric(registry, "watcher_send_retries_total") >= 4
    finally:
        sender.stop()


def test_backend_down_then_up_nothing_lost(outbox):
    port = free_port()
    sender, registry = _sender(outbox, f"http://127.0.0.1:{port}", token=None)
    sender.start()
    try:
        outbox.put([_save(i) for i in range(30)])
        assert not sender.flush(1.0)
        assert _metric(registry, "watcher_send_failures_total", {"reason": "connection"}) >= 1
        assert outbox.depth() == 30
        assert _metric(registry, "watcher_outbox_oldest_age_seconds") > 0
        srv = RecordingServer(port=port)  # the backend comes up on that port
        try:
            assert sender.flush(15)
            assert len(srv.stored()) == 30
        finally:
            srv.close()
    finally:
        sender.stop()


def test_rejected_events_are_dead_lettered_and_the_rest_acked(server, outbox):
    events = [_save(i) for i in range(6)]
    server.reject_ids = {events[2].event_id, events[4].event_id}
    sender, registry = _sender(outbox, server.url)
    outbox.put(events)
    sender.start()
    try:
        assert sender.flush(10)
        assert len(server.stored()) == 4
        assert outbox.dead_letter_count() == 2
        assert {d["event_id"] for d in outbox.dead_letters()} == server.reject_ids
        assert _metric(registry, "watcher_dead_letters_total") == 2
        assert _metric(registry, "watcher_events_sent_total") == 4
    finally:
        sender.stop()


def test_duplicates_are_acked(server, outbox):
    sender, registry = _sender(outbox, server.url)
    outbox.put([_save(1), _save(2)])
    sender.start()
    try:
        assert sender.flush(10)
        outbox.put([_save(1), _save(2), _save(3)])  # a resend after a crash
        assert sender.flush(10)
        assert len(server.stored()) == 3
        assert _metric(registry, "watcher_events_duplicate_total") == 2
    finally:
        sender.stop()


def test_wrong_token_logs_one_line_and_keeps_events(server, outbox, caplog):
    sender, registry = _sender(outbox, server.url, token="wrong")
    outbox.put([_save(1)])
    with caplog.at_level(logging.ERROR, logger="watcher_agents.delivery.sender"):
        sender.start()
        try:
            assert server.wait_for(lambda s: len(s.requests) >= 4, timeout=10)
        finally:
            sender.stop()
    lines = [r.getMessage() for r in caplog.records if "ingest token rejected" in r.getMessage()]
    assert len(lines) == 1 and "WATCHER_INGEST_TOKEN" in lines[0]
    assert outbox.depth() == 1  # not dropped
    assert _metric(registry, "watcher_send_failures_total", {"reason": "auth_401"}) >= 4


def test_413_halves_the_batch(server, outbox):
    server.max_events_per_request = 7
    sender, registry = _sender(outbox, server.url, batch_size=40)
    outbox.put([_save(i) for i in range(40)])
    sender.start()
    try:
        assert sender.flush(15)
        assert len(server.stored()) == 40
        assert outbox.dead_letter_count() == 0
    finally:
        sender.stop()


def test_unparseable_422_isolates_the_poison_event(server, outbox):
    # A 422 without a BatchResult (the whole body refused) for any batch containing the poison event.
    events = [_save(i) for i in range(9)]
    poison = events[5].event_id
    original = server._handle

    def handle(path, headers, body):
        if poison.encode() in body:
            return 422, {"detail": [{"loc": ["body", 5], "msg": "bad"}]}
        return original(path, headers, body)

    server._handle = handle
    sender, _ = _sender(outbox, server.url)
    outbox.put(events)
    sender.start()
    try:
        assert sender.flush(15)
        assert len(server.stored()) == 8
        assert [d["event_id"] for d in outbox.dead_letters()] == [poison]
    finally:
        sender.stop()


def test_metrics_and_health_server(outbox):
    registry = CollectorRegistry()
    sender = Sender(outbox, "http://127.0.0.1:9", None, registry)
    health = HealthChecks()
    health.register("sender alive", sender.alive)
    http = AgentHTTPServer(registry, health, port=0, host="127.0.0.1", agent="test").start()
    try:
        base = f"http://127.0.0.1:{http.port}"
        r = httpx.get(base + "/healthz")
        assert r.status_code == 503 and r.json()["failed"] == ["sender alive"]
        sender.start()
        r = httpx.get(base + "/healthz")
        assert r.status_code == 200 and r.json()["status"] == "healthy" and "timestamp" in r.json()
        text = httpx.get(base + "/metrics").text
        assert "watcher_outbox_events" in text and "watcher_send_failures_total" in text
        assert httpx.get(base + "/nope").status_code == 404
    finally:
        sender.stop()
        http.stop()


def test_nearly_full_outbox_shows_in_metrics_and_one_log_line(tmp_path, caplog):
    box = Outbox(tmp_path / "small.db", max_events=10)
    sender, registry = _sender(box, f"http://127.0.0.1:{free_port()}", token=None)  # backend unreachable
    box.put([_save(i) for i in range(9)])
    with caplog.at_level(logging.WARNING, logger="watcher_agents.delivery.sender"):
        sender.start()
        try:
            assert not sender.flush(1.0)
        finally:
            sender.stop()
    assert registry.get_sample_value("watcher_outbox_fill_ratio") == 0.9
    lines = [r.getMessage() for r in caplog.records if "outbox is" in r.getMessage()]
    assert len(lines) == 1 and "90% full" in lines[0]
    box.close()


def test_a_server_that_never_started_stops_at_once():
    # procmon builds its runtime, and may fail (no tracer) before starting the HTTP server.
    http = AgentHTTPServer(CollectorRegistry(), HealthChecks(), port=0, host="127.0.0.1", agent="test")
    done = threading.Event()
    threading.Thread(target=lambda: (http.stop(), done.set()), daemon=True).start()
    assert done.wait(5.0), "stop() of a never-started server hung"
