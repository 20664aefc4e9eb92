"""``watcher outbox``: dead letters are listed and requeued, and a running agent's sender then delivers
them. A real outbox file, a real backend and the real sender; the CLI runs as a separate process, as it
does under ``kubectl exec`` next to the running agent."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from prometheus_client import CollectorRegistry

from support.backend import run_backend, wire_event
from watcher_agents.delivery.outbox import Outbox
from watcher_agents.delivery.sender import Sender


def outbox_cli(state_dir, *args):
    return subprocess.run(
        [sys.executable, "-m", "watcher_core", "outbox", *args, "--state-dir", str(state_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_dead_letters_are_listed_requeued_and_delivered_by_the_running_sender(tmp_path):
    state = tmp_path / "state"
    good = wire_event()
    refused = wire_event(student_id="0000000001")
    with run_backend(tmp_path) as backend, Outbox(state / "outbox.sqlite3") as outbox:
        outbox.put([refused])
        ((rowid, _),) = outbox.peek_batch(10)
        assert outbox.dead_letter(rowid, "422 the backend of that day refused it")
        listed = outbox_cli(state, "dead-letters", "list")
        assert listed.returncode == 0, listed.stderr
        (line,) = [json.loads(x) for x in listed.stdout.splitlines()]
        assert (line["event_id"], line["type"], line["error"]) == (
            refused["event_id"],
            "file.save",
            "422 the backend of that day refused it",
        )
        assert json.loads(outbox_cli(state, "status").stdout) == {
            "outbox": str(state / "outbox.sqlite3"),
            "queued": 0,
            "dead_letters": 1,
            "most_queued": [],
        }
        sender = Sender(
            outbox,
            backend.url,
            backend.tokens["ingest"],
            CollectorRegistry(),
            node="n1",
            source="filemon",
            idle_wait=0.2,
        ).start()
        try:
            outbox.put([good])
            requeued = outbox_cli(state, "dead-letters", "requeue", "--all")
            assert requeued.returncode == 0 and "requeued 1 event(s); 0 dead letter(s) left" in requeued.stderr
            with backend.client("read") as http:

                def stored():
                    r = http.get("/api/v1/courses/os/sections/1/assignments/hw1/students/0000000001/timeline")
                    return [e["event_id"] for e in r.json()["events"]]

                deadline = time.monotonic() + 20
                while stored() != [refused["event_id"]] and time.monotonic() < deadline:
                    time.sleep(0.2)
                assert stored() == [refused["event_id"]]
            # the agent's own count follows within its next idle wait (the gauge watcher_dead_letters_stored)
            deadline = time.monotonic() + 10
            while outbox.dead_letter_count() and time.monotonic() < deadline:
                time.sleep(0.1)
            assert outbox.dead_letter_count() == 0
        finally:
            sender.stop()


def test_requeue_of_named_events_and_a_missing_outbox_say_what_happened(tmp_path):
    state = tmp_path / "state"
    a, b = wire_event(), wire_event()
    with Outbox(state / "outbox.sqlite3") as outbox:
        outbox.put([a, b])
        for rowid, _ in outbox.peek_batch(10):
            outbox.dead_letter(rowid, "422")
    r = outbox_cli(state, "dead-letters", "requeue", "--event-id", b["event_id"])
    assert r.returncode == 0 and "requeued 1 event(s); 1 dead letter(s) left" in r.stderr
    with Outbox(state / "outbox.sqlite3") as outbox:
        assert [e["event_id"] for _, e in outbox.peek_batch(10)] == [b["event_id"]]
    with Outbox(state / "outbox.sqlite3") as outbox:
        outbox.put([wire_event(student_id="666", path=f"f{i}.c") for i in range(30)] + [wire_event(path="x.c")])
    status = json.loads(outbox_cli(state, "status").stdout)
    assert status["queued"] == 32 and status["most_queued"][:2] == [
        {"student": "os/1/666", "events": 30},
        {"student": "os/1/202400001", "events": 2},
    ]
    missing = outbox_cli(tmp_path / "nowhere", "status")
    assert missing.returncode == 2 and "no outbox at" in missing.stderr and "--state-dir" in missing.stderr
