"""Concurrent single-event writes share commits (ingest_writer) and the common case skips FastAPI's machinery
(ingest_lane), and neither changes what a request is answered or what is stored.

Real server, real HTTP, 32 concurrent connections. SQLite here; tests/system/backend runs this module again
on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import httpx
from prometheus_client.parser import text_string_to_metric_families

from support.backend import wire_event

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
CONNECTIONS = 32


def samples(backend) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(httpx.get(backend.url + "/metrics").text):
        for s in family.samples:
            out[s.name, tuple(sorted(s.labels.items()))] = s.value
    return out


def counted(before: dict, after: dict, name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


async def post_all(backend, requests: list[tuple[str, bytes]]) -> list[httpx.Response]:
    """Every (path, body) as its own request, CONNECTIONS at a time."""
    limits = httpx.Limits(max_connections=CONNECTIONS, max_keepalive_connections=CONNECTIONS)
    headers = {**backend.headers("ingest"), "Content-Type": "application/json"}
    gate = asyncio.Semaphore(CONNECTIONS)
    async with httpx.AsyncClient(base_url=backend.url, headers=headers, limits=limits, timeout=60) as http:

        async def post(path: str, body: bytes) -> httpx.Response:
            async with gate:
                return await http.post(path, content=body)

        return await asyncio.gather(*(post(path, body) for path, body in requests))


def legacy_writes(ident: dict, n: int) -> list[tuple[str, bytes]]:
    """The old filemon's, procmon's and notebook hook's writes, in turn, each another event."""
    base = f"/api/{ident['course']}-{ident['section']}/hw1/{ident['student_id']}"
    out = []
    for i in range(n):
        when = (T0 + timedelta(seconds=7 * i)).replace(tzinfo=None)
        if i % 3 == 0:
            out.append((f"{base}/main{i}.c/{when:%Y%m%d_%H%M%S}", json.dumps({"bytes": 100 + i}).encode()))
            continue
        common = {"timestamp": when.isoformat(), "exit_code": i % 2, "cwd": "/home/coder/project/hw1"}
        if i % 3 == 1:
            body = {**common, "cmdline": f"gcc -o m{i} main.c", "binary_path": "/usr/bin/gcc"}
            out.append(
                (f"{base}/logs/build", json.dumps(body | {"target_path": "/home/coder/project/hw1/main.c"}).encode())
            )
        else:
            body = {
                **common,
                "cmdline": f"./m{i}",
                "target_path": "/home/coder/project/hw1/m",
                "process_type": "binary",
            }
            out.append((f"{base}/logs/run", json.dumps(body).encode()))
    return out


def test_concurrent_single_event_requests_each_get_their_own_answer(backend, ident):
    """Many at once, some carrying the same event: each event is stored once, by exactly one request; every
    request counts exactly its own events; the metrics count each event once; each request's rows carry
    their own received_at; and the rollups equal the scan over the stored events."""
    kinds = ("file.save", "process.compile", "process.run")
    fields = {k: ident[k] for k in ("course", "section", "student_id", "assignment")}
    events = [
        wire_event(kinds[i % 3], **fields, timestamp=T0 + timedelta(seconds=5 * i), path=f"f{i % 4}.c")
        for i in range(240)
    ]
    requests = [("/api/v1/events", json.dumps([ev]).encode()) for ev in events]
    # 40 requests carry an event another request carries too (a resend racing the original)
    requests += [("/api/v1/events", json.dumps([events[i]]).encode()) for i in range(0, 240, 6)]
    requests += legacy_writes(ident, 90)
    before = samples(backend)

    answers = asyncio.run(post_all(backend, requests))

    assert [r.status_code for r in answers] == [200] * len(requests), [r.text for r in answers if r.status_code != 200]
    v1, legacy = answers[:280], answers[280:]
    assert all(r.json()["accepted"] + r.json()["duplicates"] == 1 for r in v1)
    by_event: dict[str, int] = {}
    for (_, body), r in zip(requests[:280], v1):
        event_id = json.loads(body)[0]["event_id"]
        by_event[event_id] = by_event.get(event_id, 0) + r.json()["accepted"]
    assert by_event == {ev["event_id"]: 1 for ev in events}  # each stored by exactly one of its requests
    messages = {r.json()["message"] for r in legacy}
    assert messages == {
        "Snapshot registered successfully",
        "Build log registered successfully",
        "Run log registered successfully",
    }

    after = samples(backend)
    accepted = sum(counted(before, after, "watcher_events_ingested_total", type=t, result="accepted") for t in kinds)
    duplicates = sum(counted(before, after, "watcher_events_ingested_total", type=t, result="duplicate") for t in kinds)
    assert (accepted, duplicates) == (240 + 90, 40)
    build = "/api/{class_div}/{hw_name}/{student_id}/logs/build"
    labels = dict(method="POST", endpoint=build, http_status="200")
    assert counted(before, after, "http_requests_total", **labels) == 30
    labels["endpoint"] = "/api/v1/events"
    assert counted(before, after, "http_requests_total", **labels) == 280

    base = f"/api/v1/courses/{ident['course']}/sections/{ident['section']}/assignments/{ident['assignment']}"
    with backend.client("read") as http:
        rows: list[dict] = []
        params: dict = {"limit": 200}
        while True:
            page = http.get(f"{base}/students/{ident['student_id']}/timeline", params=params).json()
            rows += page["events"]
            if not page["next_cursor"]:
                break
            params["cursor"] = page["next_cursor"]
        assert len(rows) == 240 + 90
        assert len({r["received_at"] for r in rows}) == len(rows)  # one received_at per request
        kept = http.get(f"{base}/summary").json()
        scanned = http.get(f"{base}/summary", params={"since": "2000-01-01T00:00:00Z"}).json()
    assert kept["events"] == 330 and kept["compiles"] == scanned["compiles"] == 80 + 30
    for key in ("events", "saves", "compiles", "compile_successes", "runs", "run_successes", "code_size", "students"):
        assert kept[key] == scanned[key], key
    assert abs(kept["active_seconds"] - scanned["active_seconds"]) < 0.1


def test_a_write_is_answered_alike_in_the_ingest_lane_and_by_its_route(backend, ident):
    """The lane takes ``Content-Type: application/json`` only; the same request with a charset goes through
    FastAPI's route. Both answer the same, for new events, resends and refused ones."""
    headers = backend.headers("ingest")
    fields = {k: ident[k] for k in ("course", "section", "student_id", "assignment")}
    base = f"/api/{ident['course']}-{ident['section']}/hw1/{ident['student_id']}"
    build = {
        "timestamp": "2026-03-02T09:00:00",
        "exit_code": 0,
        "cmdline": "gcc main.c",
        "cwd": "/home/coder/project/hw1",
        "binary_path": "/usr/bin/gcc",
        "target_path": "/home/coder/project/hw1/main.c",
    }
    run = {k: v for k, v in build.items() if k != "binary_path"} | {"process_type": "python", "target_path": "a.py"}
    cases = [
        ("/api/v1/events", lambda n: [wire_event("file.save", **fields, path=f"lane{n}.c")], {}),
        ("/api/v1/events", lambda n: [wire_event("process.run", **fields, path=f"r{n}")], {"X-Watcher-Backlog": "7"}),
        ("/api/v1/events", lambda n: [{"type": "file.save", "event_id": "x"}], {}),  # refused: 422 naming fields
        ("/api/v1/events", lambda n: [], {"X-Watcher-Node": "node-9", "X-Watcher-Source": "filemon"}),  # heartbeat
        ("/api/v1/events", lambda n: [wire_event("file.save", **fields)], {"X-Watcher-Node": "bad node"}),  # 422
        (f"{base}/logs/build", lambda n: build | {"cmdline": f"gcc -o m{n} main.c"}, {}),
        (f"{base}/logs/run", lambda n: run | {"exit_code": n}, {}),
        (f"{base}/logs/run", lambda n: run | {"exit_code": 999}, {}),  # refused: 422 naming exit_code
        (f"{base}/main.c/20260302_090001", lambda n: {"bytes": 10 + n}, {}),
        (f"{base}/main.c/2026-03-02", lambda n: {"bytes": 1}, {}),  # refused: 422 naming timestamp
        (f"/api/v1/hw1/{ident['student_id']}/logs/build", lambda n: build, {}),  # not a class_div: 422
    ]
    with httpx.Client(base_url=backend.url, timeout=30) as http:
        for path, body_of, extra in cases:
            answers = []
            for n, content_type in ((1, "application/json"), (2, "application/json; charset=utf-8")):
                body = json.dumps(body_of(n)).encode()
                r = http.post(path, content=body, headers={**headers, **extra, "Content-Type": content_type})
                again = http.post(path, content=body, headers={**headers, **extra, "Content-Type": content_type})
                answers.append((r.status_code, r.json(), r.headers["content-type"], again.status_code, again.json()))
            assert answers[0] == answers[1], (path, answers)
        for content_type in ("application/json", "application/json; charset=utf-8"):  # no token: 401 either way
            r = http.post("/api/v1/events", content=b"[]", headers={"Content-Type": content_type})
            assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
