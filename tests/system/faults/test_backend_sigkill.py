"""The backend is killed with SIGKILL while events pour in (a test client AND the agents), then restarted.

SQLite must pass ``PRAGMA integrity_check``, and no event acknowledged to anyone may be missing: every
event of a batch the test POSTed and got 200 for is in the database, and every event filemon's outbox
had acknowledged (its sent counter minus the duplicates) is stored.
"""

from __future__ import annotations

import sqlite3
import threading
import time

import httpx
from system.e2e.session import metrics, reader, settle, student_hw, wait_until
from system.faults.burst import Burst, wait_and_check

from support.backend import wire_event


class Poster(threading.Thread):
    """POSTs batches of 100 fresh events as fast as the backend answers; remembers what was acknowledged."""

    def __init__(self, url: str, token: str):
        super().__init__(daemon=True)
        self.url, self.token = url, token
        self.acked: set[str] = set()
        self.unanswered = 0
        self.stopping = threading.Event()

    def run(self) -> None:
        with httpx.Client(headers={"Authorization": f"Bearer {self.token}"}, timeout=10) as http:
            while not self.stopping.is_set():
                batch = [
                    wire_event("process.run", student_id="202300009", path="main", node="poster", source="procmon")
                    for _ in range(100)
                ]
                try:
                    r = http.post(self.url + "/api/v1/events", json=batch)
                except httpx.HTTPError:
                    self.unanswered += 1
                    time.sleep(0.05)
                    continue
                if r.status_code == 200:
                    body = r.json()
                    rejected = {x["index"] for x in body["rejected"]}
                    assert not rejected, body
                    self.acked.update(ev["event_id"] for ev in batch)


def test_sigkill_during_ingest_keeps_sqlite_intact_and_every_acknowledged_event(stack):
    burst = Burst(student_hw(stack, "202300001"), "202300001", compile_every=4).start()
    poster = Poster(stack.url, stack.tokens["ingest"])
    poster.start()
    try:
        wait_until(lambda: len(poster.acked) >= 2000, 60, "2000 acknowledged events")
        assert stack.kill_component("backend") == -9  # mid-ingest: the poster never pauses
        acked_before_kill = len(poster.acked)
        db = stack.sqlite_path
        with sqlite3.connect(db) as conn:  # as found after the crash (WAL recovery included)
            assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
            stored = {row[0] for row in conn.execute("select event_id from event where node = 'poster'")}
        conn.close()
        lost = poster.acked - stored
        assert not lost, f"{len(lost)} of {acked_before_kill} acknowledged events are missing after SIGKILL"
        time.sleep(2)
        stack.start_component("backend")
        wait_until(lambda: len(poster.acked) >= acked_before_kill + 1000, 60, "ingest to resume")
    finally:
        poster.stopping.set()
        poster.join(30)
        burst.stop()
    assert poster.unanswered > 0  # the kill really happened while a request was on its way
    with reader(stack) as http:
        wait_and_check(stack, http, [burst], timeout=120)
    settle(stack)
    with sqlite3.connect(stack.sqlite_path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        stored = {row[0] for row in conn.execute("select event_id from event where node = 'poster'")}
        by_source = dict(conn.execute("select source, count(*) from event where node != 'poster' group by source"))
    conn.close()
    assert poster.acked <= stored
    # what the agents' outboxes were told is stored (acknowledged, minus acknowledged duplicates) is all there
    for agent in ("filemon", "procmon"):
        m = metrics(stack, agent)
        acknowledged = m["watcher_events_sent_total"] - m["watcher_events_duplicate_total"]
        assert by_source.get(agent, 0) == acknowledged, (agent, by_source, acknowledged)
