"""Retention: events older than WATCHER_RETENTION_DAYS are purged at startup and periodically; counted in metrics."""

import re
import time
from datetime import UTC, datetime, timedelta

import httpx

from support.backend import run_backend, wire_event

IDENT = dict(course="ret", section="1", student_id="42", assignment="hw1")


def stored_ids(backend):
    with backend.client("read") as http:
        r = http.get("/api/v1/courses/ret/sections/1/assignments/hw1/students/42/timeline", params={"limit": 1000})
    return {e["event_id"] for e in r.json()["events"]}


def purged_metric(backend) -> float:
    m = re.search(r"^watcher_retention_purged_total (\S+)$", httpx.get(backend.url + "/metrics").text, re.M)
    return float(m.group(1))


def test_old_events_are_purged_at_startup_and_periodically(tmp_path, database_url):
    now = datetime.now(UTC)
    old = wire_event("file.save", **IDENT, timestamp=now - timedelta(days=60))
    recent = wire_event("file.save", **IDENT, timestamp=now - timedelta(days=1))
    db_url = database_url  # SQLite here, PostgreSQL in tests/system/backend

    # stored by a backend without retention ...
    with run_backend(tmp_path / "a", database_url=db_url) as plain:
        assert plain.post_events([old, recent]).json()["accepted"] == 2
    # ... and purged when a backend with retention starts
    env = {"WATCHER_RETENTION_DAYS": "30", "WATCHER_RETENTION_INTERVAL_SECONDS": "0.5"}
    with run_backend(tmp_path / "b", database_url=db_url, env=env) as backend:
        deadline = time.monotonic() + 20
        while stored_ids(backend) != {recent["event_id"]}:
            assert time.monotonic() < deadline, stored_ids(backend)
            time.sleep(0.2)
        assert purged_metric(backend) >= 1

        # periodically: an old event arriving later is purged without a restart
        late = wire_event("process.run", **IDENT, timestamp=now - timedelta(days=45))
        assert backend.post_events([late]).json()["accepted"] == 1
        deadline = time.monotonic() + 20
        while late["event_id"] in stored_ids(backend):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert purged_metric(backend) >= 2

        # and on demand (admin)
        r = httpx.post(backend.url + "/api/v1/admin/retention", headers=backend.headers("admin"))
        assert r.status_code == 200 and r.json()["retention_days"] == 30 and r.json()["purged"] == 0


def test_retention_is_off_by_default(tmp_path, database_url):
    with run_backend(tmp_path, database_url=database_url) as backend:
        old = wire_event("file.save", **IDENT, timestamp="2001-01-01T00:00:00Z")
        backend.post_events([old])
        r = httpx.post(backend.url + "/api/v1/admin/retention", headers=backend.headers("admin"))
        assert r.status_code == 409 and "WATCHER_RETENTION_DAYS" in r.json()["detail"]
        assert stored_ids(backend) == {old["event_id"]}
