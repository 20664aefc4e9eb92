"""The API as a target: paths that try to leave the snapshot store, hostile paging and filters, and
credentials in every odd form. A real backend over real HTTP; the answer is always a clear 4xx, never a
500, never a byte from outside the store."""

from __future__ import annotations

import secrets

import httpx
import pytest

from support.backend import run_backend, wire_event

A = "/api/v1/courses/os/sections/1/assignments/hw1"


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("api")
    with run_backend(tmp) as b:
        # a file next to the store that a traversal would reach
        (b.snapshot_dir.parent / "secret.txt").write_text("not for you\n")
        b.post_events([wire_event()])
        yield b


def raw_get(backend, target: str, headers: dict | None = None) -> tuple[int, bytes]:
    """A GET whose target is sent exactly as written (no client-side normalisation of ``..``)."""
    with httpx.Client(base_url=backend.url, headers={**backend.headers("read"), **(headers or {})}) as http:
        request = http.build_request("GET", backend.url)
        request.url = request.url.copy_with(raw_path=target.encode())
        r = http.send(request)
        return r.status_code, r.content


@pytest.mark.parametrize(
    "target",
    [
        "/api/v1/snapshots/../secret.txt",
        "/api/v1/snapshots/..%2Fsecret.txt",
        "/api/v1/snapshots/%2e%2e%2fsecret.txt",
        "/api/v1/snapshots/" + "a" * 63 + "/",
        "/api/v1/snapshots/" + "A" * 64,  # upper case is not how the store names contents
        "/api/v1/diff?from=../secret.txt&to=" + "0" * 64,
        A + "/students/202400001/snapshots?path=../../secret.txt",
        A + "/students/202400001/snapshots?path=/etc/passwd",
        A + "/students/..%2F..%2Fsecret/files",
    ],
)
def test_no_path_leaves_the_snapshot_store(backend, target):
    status, body = raw_get(backend, target)
    # 4xx, or FastAPI's redirect away from a trailing slash (to a path that is then a 422)
    assert 400 <= status < 500 or status == 307, (target, status, body[:200])
    assert b"not for you" not in body


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=-1",
        "limit=1000001",
        "limit=abc",
        "cursor=not-a-cursor",
        "cursor=" + "A" * 5000,
        "since=yesterday",
        "since=2026-01-01T00:00:00",
        "type=process.exec",
        "type=' OR 1=1 --",
    ],
)
def test_hostile_paging_and_filters_are_422_naming_the_field(backend, query):
    r = httpx.get(f"{backend.url}{A}/students/202400001/timeline?{query}", headers=backend.headers("read"))
    assert r.status_code == 422, (query, r.status_code, r.text)
    assert query.split("=")[0] in r.text


@pytest.mark.parametrize("course", ["os' OR '1'='1", "os;DROP TABLE event", "%00", "a" * 65])
def test_injection_in_path_filters_is_refused(backend, course):
    r = httpx.get(f"{backend.url}/api/v1/courses?course={course}", headers=backend.headers("read"))
    assert r.status_code in (200, 422) and r.status_code != 500
    if r.status_code == 200:
        assert r.json()["courses"] == []  # a filter value, never SQL


def test_every_odd_form_of_a_credential_is_401_and_says_why(backend):
    token = backend.tokens["read"]
    cases = {
        "Token " + token: "missing bearer token",  # another scheme
        "Bearer": "missing bearer token",  # no token at all
        "Bearer " + token[:-1]: "invalid bearer token",  # one character short
        "bearer " + token[:-1]: "invalid bearer token",  # the scheme in any case
        "Bearer " + secrets.token_urlsafe(32): "invalid bearer token",
        "Bearer " + backend.tokens["ingest"]: "lacks the 'read' scope",
    }
    for header, why in cases.items():
        r = httpx.get(backend.url + "/api/v1/status", headers={"Authorization": header})
        assert r.status_code in (401, 403), (header, r.status_code)
        assert why in r.json()["detail"], (header, r.text)
        if r.status_code == 401:
            assert r.headers["WWW-Authenticate"].startswith("Bearer")


def test_cors_is_off_by_default(backend):
    r = httpx.options(
        backend.url + "/api/v1/status",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
    )
    assert "access-control-allow-origin" not in {k.lower() for k in r.headers}


def test_user_controlled_values_never_become_metric_labels(backend):
    event = wire_event()
    event["type"] = "x" * 40 + secrets.token_hex(4)
    httpx.post(backend.url + "/api/v1/events", json=[event], headers=backend.headers("ingest"))
    httpx.get(backend.url + "/api/v1/courses/" + secrets.token_hex(8), headers=backend.headers("read"))
    text = httpx.get(backend.url + "/metrics").text
    assert event["type"] not in text
    assert 'type="unknown"' in text  # counted, under a fixed label
