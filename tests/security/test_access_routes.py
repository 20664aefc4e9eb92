"""A teaching assistant's token (named, limited to section os/1) against every read route of a real
backend: nothing of section os/2 comes back, on any route the backend serves. The routes are taken from
the backend's own OpenAPI schema, so a new read route that is not classified here fails the test until
someone says how it is protected."""

from __future__ import annotations

import re

import httpx
import pytest

from support.backend import run_backend, wire_event
from watcher_core import snapshots

MINE = {"course": "os", "section": "1", "assignment": "hw1", "student_id": "202400001"}
THEIRS = {"course": "os", "section": "2", "assignment": "hw1", "student_id": "202400002"}
ELSEWHERE = {"course": "db", "section": "1", "assignment": "hw1", "student_id": "202400003"}

# path parameters of a route -> a value naming os/1 (MINE) or the other section; the rest are fixed
SAMPLES = {
    "assignment": "hw1",
    "hw_name": "hw1",
    "filename": "main.c",
    "interval": "5",
    "start": "20200101_000000",
    "end": "20990101_000000",
    "path": "main.c",
}
# GET routes that name no course: how each is kept from leaking another section (asserted below)
NO_COURSE_IN_PATH = {
    "/api/v1/courses": "filtered to the token's sections",
    "/api/v1/courses/{course}/activity": "filtered to the token's sections; 403 for a course it has none of",
    "/api/v1/snapshots/{sha256}": "needs the student whose save it is",
    "/api/v1/diff": "needs the student whose saves they are",
    "/api/v1/status": "names no student: counts by type and agents",
    "/api/v1/admin/tokens": "admin scope",
    "/api/v1/admin/audit": "admin scope",
    "/api/v1/snapshots/unreferenced": "ingest scope (filemon's store clean-up)",
    "/health": "public",
    "/healthz": "public",
    "/ready": "public",
    "/metrics": "public: counts only",
}


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("access")
    with run_backend(tmp, env={"WATCHER_LEGACY_READS_FROM": "10.99.0.0/16"}) as b:
        contents = {}
        events = []
        for who in (MINE, THEIRS, ELSEWHERE):
            data = f"/* {who['student_id']} */\n".encode()
            sha, _ = snapshots.write_snapshot(b.snapshot_dir, data)
            contents[who["student_id"]] = sha
            events += [
                wire_event("file.save", **who, sha256=sha, size=len(data)),
                wire_event("process.compile", **who),
                wire_event("process.run", **who),
            ]
        assert b.post_events(events).json()["accepted"] == len(events)
        with b.client("admin") as http:
            r = http.post("/api/v1/admin/tokens", json={"name": "ta-os-1", "courses": ["os/1"]})
            assert r.status_code == 201
        b.ta = {"Authorization": f"Bearer {r.json()['token']}"}
        b.contents = contents
        yield b


def read_routes(backend) -> list[str]:
    schema = httpx.get(backend.url + "/openapi.json").json()
    return sorted(path for path, ops in schema["paths"].items() if "get" in ops)


def fill(path: str, who: dict[str, str]) -> str:
    values = SAMPLES | who | {"class_div": f"{who['course']}-{who['section']}"}
    return re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], path)


def names_a_section(path: str) -> bool:
    return "{class_div}" in path or ("{course}" in path and "{section}" in path)


def test_every_read_route_is_classified(backend):
    routes = read_routes(backend)
    unclassified = [p for p in routes if not names_a_section(p) and p not in NO_COURSE_IN_PATH]
    assert unclassified == [], "say how these routes keep a section token to its section"
    assert sum(names_a_section(p) for p in routes) >= 12  # the v1 reads and the old API's


def test_a_section_token_is_refused_every_route_that_names_another_section(backend):
    refused, served = [], []
    with httpx.Client(base_url=backend.url, headers=backend.ta) as http:
        for path in filter(names_a_section, read_routes(backend)):
            for who in (THEIRS, ELSEWHERE):
                r = http.get(fill(path, who), params={"path": "main.c"})
                refused.append((path, r.status_code))
                assert r.status_code == 403, (path, who["section"], r.status_code, r.text[:200])
                assert who["student_id"] not in r.text and "ta-os-1" in r.text
            r = http.get(fill(path, MINE), params={"path": "main.c"})
            served.append(path)
            assert r.status_code == 200, (path, r.status_code, r.text[:300])
    assert len(served) >= 12


def test_the_course_listing_shows_only_the_tokens_section(backend):
    with httpx.Client(base_url=backend.url, headers=backend.ta) as http:
        listing = http.get("/api/v1/courses").json()["courses"]
    assert [(c["course"], s["section"]) for c in listing for s in c["sections"]] == [("os", "1")]


def test_the_dashboards_course_page_shows_only_the_tokens_section(backend):
    with httpx.Client(base_url=backend.url, headers=backend.ta) as http:
        course = http.get("/api/v1/courses/os/activity").json()
        assert [(a["section"], a["students"]) for a in course["assignments"]] == [("1", 1)]
        r = http.get("/api/v1/courses/db/activity")
        assert r.status_code == 403 and "ta-os-1" in r.text and "202400003" not in r.text


def test_another_sections_contents_and_diffs_stay_closed_even_by_hash(backend):
    mine, theirs = backend.contents[MINE["student_id"]], backend.contents[THEIRS["student_id"]]
    with httpx.Client(base_url=backend.url, headers=backend.ta) as http:
        assert http.get(f"/api/v1/snapshots/{theirs}").status_code == 422  # must say whose it is
        assert http.get(f"/api/v1/snapshots/{theirs}", params=THEIRS).status_code == 403
        r = http.get(f"/api/v1/snapshots/{theirs}", params=MINE)  # passed off as a save of the own section
        assert r.status_code == 404 and b"202400002" not in r.content
        assert http.get("/api/v1/diff", params={"from": mine, "to": theirs} | MINE).status_code == 404
        assert http.get("/api/v1/diff", params={"from": theirs, "to": theirs} | THEIRS).status_code == 403
        r = http.get(f"/api/v1/snapshots/{mine}", params=MINE)
        assert r.status_code == 200 and r.content == b"/* 202400001 */\n"


def test_the_admin_routes_refuse_a_section_token(backend):
    with httpx.Client(base_url=backend.url, headers=backend.ta) as http:
        assert http.get("/api/v1/admin/tokens").status_code == 403
        assert http.get("/api/v1/admin/audit").status_code == 403
        assert http.get("/api/v1/snapshots/unreferenced").status_code == 401  # never ingest
        assert http.delete("/api/v1/students/202400002").status_code == 403
        assert http.post("/api/v1/admin/retention").status_code == 403
