"""Malicious or broken input at the running local stack's API: the backend's bad-input table replayed,
plus tokens used for the wrong scope. Every answer is a clear 4xx (never 5xx), nothing bad is stored,
and the stack keeps recording real work afterwards."""

from __future__ import annotations

import httpx
import pytest
from system.e2e.session import count_types, reader, start_stack, student_hw, timeline, wait_until

from support.backend import wire_event
from watcher_core import wire

SID = "202500001"
IDENT = {"course": "os", "section": "1", "student_id": SID, "assignment": "hw1"}

BAD_EVENTS = {  # (event type, change, field named in the error)
    "wrong field type": ("file.save", {"size": "big"}, "size"),
    "missing sha256": ("file.save", {"sha256": None}, "sha256"),
    "absolute path": ("file.save", {"path": "/etc/passwd"}, "path"),
    "dot-dot path": ("file.save", {"path": "../other/main.c"}, "path"),
    "unknown type": ("file.save", {"type": "file.rename"}, "type"),
    "naive timestamp": ("file.save", {"timestamp": "2026-03-02T09:00:00"}, "timestamp"),
    "student id with dash": ("file.save", {"student_id": "2024-01"}, "student_id"),
    "absolute cwd": ("process.compile", {"cwd": "/home/coder/project/hw1"}, "cwd"),
    "dot-dot in sources": ("process.compile", {"sources": ["ok.c", "../../x.c"]}, "sources"),
    "unknown run kind": ("process.run", {"kind": "java"}, "kind"),
    "huge argv": ("process.run", {"argv": ["x"] * (wire.MAX_ARGV_ITEMS + 1)}, "argv"),
    "huge argument": ("process.run", {"argv": ["x" * (wire.MAX_ARG_LENGTH + 1)]}, "argv"),
    "exit code out of range": ("process.run", {"exit_code": 300}, "exit_code"),
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    from system.e2e.session import why_no_ebpf

    s = start_stack(tmp_path_factory.mktemp("bad"), procmon=why_no_ebpf() is None)
    yield s
    s.stop()


def ingest_headers(stack):
    return {"Authorization": f"Bearer {stack.tokens['ingest']}", "Content-Type": "application/json"}


@pytest.mark.parametrize("type_,change,field", BAD_EVENTS.values(), ids=BAD_EVENTS.keys())
def test_a_bad_event_is_422_naming_the_field_and_nothing_is_stored(stack, type_, change, field):
    event = wire_event(type_, **IDENT) | change
    r = httpx.post(stack.url + "/api/v1/events", json=[event], headers=ingest_headers(stack))
    assert r.status_code == 422, r.text
    rejected = r.json()["rejected"]
    assert len(rejected) == 1 and field in rejected[0]["error"]
    with reader(stack) as http:
        assert timeline(http, SID) == []


@pytest.mark.parametrize(
    "content", [b"not json", b"[1, 2", b'{"event_id": "x"}', b""], ids=["garbage", "truncated", "object", "empty"]
)
def test_a_body_that_is_not_a_json_array_is_422(stack, content):
    r = httpx.post(stack.url + "/api/v1/events", content=content, headers=ingest_headers(stack))
    assert r.status_code == 422 and "detail" in r.json()


def test_a_body_over_the_limit_is_413(stack):
    big = b"[" + b" " * (wire.MAX_BATCH_BYTES + 10) + b"]"
    r = httpx.post(stack.url + "/api/v1/events", content=big, headers=ingest_headers(stack))
    assert r.status_code == 413 and "limit" in r.json()["detail"]


def test_legacy_bad_timestamps_are_422(stack):
    h = {"Authorization": f"Bearer {stack.tokens['ingest']}"}
    for url, body in (
        (f"/api/os-1/hw1/{SID}/a.c/20250730-061753", {"bytes": 1}),
        (f"/api/os-1/hw1/{SID}/a.c/19600101_000000", {"bytes": 1}),
        (
            f"/api/os-1/hw1/{SID}/logs/run",
            {
                "cmdline": "x",
                "exit_code": 0,
                "cwd": "/",
                "target_path": "/a",
                "process_type": "python",
                "timestamp": "0001-01-01T00:00:00",
            },
        ),
    ):
        r = httpx.post(stack.url + url, json=body, headers=h)
        assert r.status_code == 422, (url, r.text)
        assert any("timestamp" in [str(p) for p in d["loc"]] for d in r.json()["detail"])


def test_a_token_for_one_scope_is_refused_for_another(stack):
    timeline_url = stack.url + f"/api/v1/courses/os/sections/1/assignments/hw1/students/{SID}/timeline"
    auth = lambda scope: {"Authorization": f"Bearer {stack.tokens[scope]}"}  # noqa: E731
    assert httpx.get(timeline_url).status_code == 401
    assert httpx.get(timeline_url, headers={"Authorization": "Bearer forged-token-forged-token"}).status_code == 401
    assert httpx.get(timeline_url, headers=auth("ingest")).status_code == 403
    assert httpx.get(stack.url + "/api/v1/status", headers=auth("ingest")).status_code == 403
    assert httpx.get(stack.url + "/api/v1/snapshots/" + "0" * 64, headers=auth("ingest")).status_code == 403
    good = [wire_event("file.delete", **IDENT)]
    assert httpx.post(stack.url + "/api/v1/events", json=good).status_code == 401
    assert httpx.post(stack.url + "/api/v1/events", json=good, headers=auth("read")).status_code == 403
    assert httpx.delete(stack.url + f"/api/v1/students/{SID}", headers=auth("read")).status_code == 403
    assert httpx.delete(stack.url + f"/api/v1/students/{SID}", headers=auth("ingest")).status_code == 403
    with reader(stack) as http:
        assert timeline(http, SID) == []


def test_the_stack_keeps_working_after_the_bad_input(stack):
    """Runs last in the module: a real save through filemon is recorded, and the backend is healthy."""
    assert httpx.get(stack.url + "/health").status_code == 200
    for name, comp in stack.components.items():
        assert comp.alive(), name
    hw = student_hw(stack, "202500002")
    (hw / "main.c").write_text("int main(void) { return 0; }\n")
    with reader(stack) as http:
        wait_until(lambda: count_types(timeline(http, "202500002")) == {"file.save": 1}, 30, "the save")
        assert timeline(http, SID) == []
    for name in ("backend", "filemon"):
        log = (stack.data_dir / "logs" / f"{name}.log").read_text()
        assert "Traceback" not in log, name
