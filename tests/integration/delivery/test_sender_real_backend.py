"""The sender against the REAL backend on loopback: delivery, dedupe of resends, rejects, heartbeat, outage."""

import httpx
from prometheus_client import CollectorRegistry

from support.backend import run_backend
from watcher_agents.delivery.outbox import Outbox
from watcher_agents.delivery.sender import Sender
from watcher_core import wire


def _save(i: int, **kw) -> dict:
    ev = wire.FileSave(
        event_id=wire.make_event_id("real-backend-test", i),
        timestamp=wire.utcnow(),
        node="node-7",
        source="filemon",
        course="os",
        section="1",
        student_id="202400001",
        assignment="hw1",
        path=f"f{i}.c",
        sha256="c" * 64,
        size=i,
    ).model_dump(mode="json")
    ev.update(kw)
    return ev


def _status(backend):
    with backend.client("read") as http:
        return http.get("/api/v1/status").json()


def test_real_backend_delivery_dedupe_and_rejects(tmp_path):
    box = Outbox(tmp_path / "outbox.db")
    with run_backend(tmp_path) as backend:
        registry = CollectorRegistry()
        sender = Sender(
            box,
            backend.url,
            backend.tokens["ingest"],
            registry,
            batch_size=50,
            node="node-7",
            source="filemon",
            backoff_base=0.05,
            backoff_cap=0.5,
        )
        bad = _save(999, path="../escape.c")  # the backend rejects it permanently
        box.put([_save(i) for i in range(120)] + [bad] + [_save(i) for i in range(10)])  # 10 resends
        sender.start()
        try:
            assert sender.flush(30)
            status = _status(backend)
            assert status["events_by_type"].get("file.save") == 120
            assert box.dead_letter_count() == 1
            assert "path" in box.dead_letters()[0]["error"]
            assert registry.get_sample_value("watcher_events_duplicate_total") == 10
            assert any(a["node"] == "node-7" and a["source"] == "filemon" for a in status["agents"])

            # outage: stop the backend, queue more, start it again: everything arrives once
            backend.stop()
            box.put([_save(i) for i in range(200, 260)])
            assert not sender.flush(1.5)
            assert registry.get_sample_value("watcher_send_failures_total", {"reason": "connection"}) >= 1
            backend.start()
            assert sender.flush(40)
            assert _status(backend)["events_by_type"]["file.save"] == 180
        finally:
            sender.stop()
            box.close()


def test_real_backend_wrong_token_keeps_events(tmp_path):
    box = Outbox(tmp_path / "outbox.db")
    with run_backend(tmp_path) as backend:
        sender = Sender(box, backend.url, "not-the-token", CollectorRegistry(), backoff_base=0.05, backoff_cap=0.2)
        box.put([_save(1)])
        sender.start()
        try:
            assert not sender.flush(1.5)
            assert box.depth() == 1
            r = httpx.get(backend.url + "/api/v1/status", headers=backend.headers("read"))
            assert r.json()["events_total"] == 0
        finally:
            sender.stop()
            box.close()
