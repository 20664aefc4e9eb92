"""Erased contents: erasing a student (or the retention purge) queues their snapshot contents; the backend
tells filemon (ingest scope) which of them no event refers to, and forgets those filemon reports removed.
A content another student saved too (starter code) is never offered for removal."""

import secrets
from datetime import UTC, datetime, timedelta

import httpx

from support.backend import run_backend, wire_event

GC = "/api/v1/snapshots/unreferenced"


def sha() -> str:
    return secrets.token_hex(32)


def all_unreferenced(backend) -> set[str]:
    """Every queued unreferenced content (the queue is shared by the tests of this module's server)."""
    with backend.client("ingest") as http:
        r = http.get(GC, params={"limit": 5000})
    assert r.status_code == 200, r.text
    assert r.json()["pending"] >= 0
    return set(r.json()["sha256"])


def erase(backend, ident) -> dict:
    r = httpx.delete(f"{backend.url}/api/v1/students/{ident['student_id']}", headers=backend.headers("admin"))
    assert r.status_code == 200, r.text
    return r.json()


def test_only_contents_nobody_refers_to_are_offered(backend, ident):
    other = dict(ident, student_id=ident["student_id"][:-1] + ("0" if ident["student_id"][-1] != "0" else "1"))
    unique, starter, twice = sha(), sha(), sha()
    assert (
        backend.post_events(
            [
                wire_event("file.save", **ident, path="main.c", sha256=unique, size=10),
                wire_event("file.save", **ident, path="start.c", sha256=starter, size=10),
                wire_event("file.save", **ident, path="a.c", sha256=twice, size=10),
                wire_event("file.save", **ident, path="b.c", sha256=twice, size=10),
                wire_event("file.save", **other, path="start.c", sha256=starter, size=10),
                wire_event("process.compile", **ident),
            ]
        ).json()["accepted"]
        == 6
    )

    answer = erase(backend, ident)
    assert answer["deleted"] == {"event": 5, "diagnostic": 0} and answer["contents_queued"] == 3
    assert "queued for removal" in answer["note"]

    offered = all_unreferenced(backend)
    assert {unique, twice} <= offered and starter not in offered  # the other student still has the starter

    with backend.client("read") as http:
        assert http.get("/api/v1/status").json()["erased_contents_pending"] >= 2
    with backend.client("ingest") as http:
        r = http.post(GC + "/removed", json={"sha256": [unique, twice]})
    assert r.status_code == 200 and r.json() == {"forgotten": 2}
    assert not {unique, twice} & all_unreferenced(backend)

    # the starter was dropped from the queue as live; erasing the other student queues it again
    erase(backend, other)
    assert starter in all_unreferenced(backend)


def test_a_content_saved_again_after_the_erasure_is_no_longer_offered(backend, ident):
    content = sha()
    backend.post_events([wire_event("file.save", **ident, sha256=content, size=3)])
    erase(backend, ident)
    assert content in all_unreferenced(backend)
    # the same student saves the same content again (e.g. restored from a backup) before filemon collected
    backend.post_events([wire_event("file.save", **ident, sha256=content, size=3)])
    assert content not in all_unreferenced(backend)


def test_kept_contents_go_to_the_back_of_the_queue(backend, ident):
    first, second = sha(), sha()
    backend.post_events([wire_event("file.save", **ident, path="a.c", sha256=first, size=1)])
    erase(backend, ident)
    backend.post_events([wire_event("file.save", **ident, path="b.c", sha256=second, size=1)])
    erase(backend, ident)
    with backend.client("ingest") as http:
        page = http.get(GC, params={"limit": 5000}).json()["sha256"]
        assert page.index(first) < page.index(second)
        assert http.post(GC + "/removed", json={"sha256": [], "kept": [first]}).json() == {"forgotten": 0}
        page = http.get(GC, params={"limit": 5000}).json()["sha256"]
        assert page.index(second) < page.index(first)
        http.post(GC + "/removed", json={"sha256": [first, second]})


def test_scopes_and_bad_input(backend):
    assert httpx.get(backend.url + GC).status_code == 401
    assert httpx.get(backend.url + GC, headers=backend.headers("read")).status_code == 403
    with backend.client("ingest") as http:
        for limit in (0, 5001, "many"):
            r = http.get(GC, params={"limit": limit})
            assert r.status_code == 422 and "limit" in r.text
        r = http.post(GC + "/removed", json={"sha256": ["not-a-sha"]})
        assert r.status_code == 422 and "sha256" in r.text
        r = http.post(GC + "/removed", json={"sha256": [sha()] * 5001})
        assert r.status_code == 422 and "sha256" in r.text
        assert http.post(GC + "/removed", json={"sha256": [sha()]}).json() == {"forgotten": 0}  # unknown: fine


def test_the_retention_purge_queues_the_purged_contents(tmp_path, database_url):
    now = datetime.now(UTC)
    old_only, still_saved = sha(), sha()
    events = [
        wire_event("file.save", sha256=old_only, size=1, path="old.c", timestamp=now - timedelta(days=60)),
        wire_event("file.save", sha256=still_saved, size=1, path="a.c", timestamp=now - timedelta(days=60)),
        wire_event("file.save", sha256=still_saved, size=1, path="a.c", timestamp=now - timedelta(days=1)),
    ]
    with run_backend(tmp_path / "a", database_url=database_url) as plain:
        assert plain.post_events(events).json()["accepted"] == 3
    with run_backend(tmp_path / "b", database_url=database_url, env={"WATCHER_RETENTION_DAYS": "30"}) as backend:
        r = httpx.post(backend.url + "/api/v1/admin/retention", headers=backend.headers("admin"))
        assert r.status_code == 200
        # the startup purge or this one removed the two old events; only the content nobody refers to is offered
        with backend.client("ingest") as http:
            assert http.get(GC).json() == {"sha256": [old_only], "pending": 0}
            http.post(GC + "/removed", json={"sha256": [old_only]})
        with backend.client("read") as http:
            assert http.get("/api/v1/status").json()["erased_contents_pending"] == 0
