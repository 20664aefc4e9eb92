"""Delivery under one student's storm, with the real outbox, the real sender and the real backend on
loopback: a classmate's events put behind 20,000 of the storm reach the backend in the next batch, not
after the storm (38 batches of it, all that was left, with the FIFO outbox). The storm is procmon's: process.run events
written as procmon writes them (``Serialized``, 200 per transaction)."""

import time
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry

from support.backend import run_backend, wire_event
from watcher_agents.delivery.outbox import Outbox, Serialized
from watcher_agents.delivery.sender import Sender
from watcher_core import wire

STORM = 20_000
BATCH = 500


def _timeline(backend, student_id: str) -> list[dict]:
    url = f"/api/v1/courses/os/sections/1/assignments/hw1/students/{student_id}/timeline"
    out, cursor = [], None
    with backend.client("read") as http:
        while True:
            r = http.get(url, params={"limit": 1000, **({"cursor": cursor} if cursor else {})})
            if r.status_code == 404:
                return out
            r.raise_for_status()
            out += r.json()["events"]
            cursor = r.json().get("next_cursor")
            if not cursor:
                return out


def _received(event: dict) -> datetime:
    return datetime.fromisoformat(event["received_at"].replace("Z", "+00:00"))


def test_a_classmates_compile_is_delivered_in_the_next_batch_during_an_exec_storm(tmp_path):
    storm = [
        Serialized.of(wire.parse_event(wire_event("process.run", student_id="666", argv=["./noop", str(i)])))
        for i in range(STORM)
    ]
    box = Outbox(tmp_path / "outbox.sqlite3")
    for i in range(0, STORM, 200):
        box.put(storm[i : i + 200])
    with run_backend(tmp_path) as backend:
        registry = CollectorRegistry()
        sender = Sender(box, backend.url, backend.tokens["ingest"], registry, batch_size=BATCH, backoff_base=0.05)
        sender.start()
        try:
            # the storm is being delivered; the classmate compiles and runs while most of it still waits
            while (registry.get_sample_value("watcher_send_batches_total") or 0) < 2:
                time.sleep(0.01)
            put_at = datetime.now(UTC)
            waiting = box.depth()
            classmate = [
                wire_event("process.compile", student_id="7"),
                wire_event("process.run", student_id="7", timestamp=datetime.now(UTC)),
            ]
            box.put([Serialized.of(wire.parse_event(e)) for e in classmate])
            assert sender.flush(120), f"{box.depth()} events left"
        finally:
            sender.stop()
        mine = _timeline(backend, "7")
        assert sorted(e["type"] for e in mine) == ["process.compile", "process.run"]
        theirs = _timeline(backend, "666")
        assert len(theirs) == STORM  # nothing of the storm lost or doubled
        arrived = max(_received(e) for e in mine)
        ahead = {_received(e) for e in theirs if put_at < _received(e) < arrived}  # one received_at per batch
        print(f"the classmate's events waited {len(ahead)} batch(es) of the storm, {waiting} of its events queued")
        assert waiting > 15_000, "the storm was already delivered: the test proves nothing"
        # at most the batch already on its way when the classmate's events were put
        assert len(ahead) <= 1, f"the classmate's events waited behind {len(ahead)} batches of the storm"
    box.close()
