"""Named tokens over real HTTP (a real backend; SQLite here, PostgreSQL in tests/system/backend): made,
listed and revoked by the admin API and by ``watcher tokens``; a section's token reads that section only;
expired and revoked tokens are a 401 saying which. Every route against a section token is in
tests/security/test_access_routes.py."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import update
from sqlmodel import Session

from support.backend import run_backend, wire_event
from support.progsnap2_spec import assert_valid_dataset
from watcher_backend import db
from watcher_backend.models import TOKEN_TABLE
from watcher_core import snapshots

TOKENS = "/api/v1/admin/tokens"


def make_token(backend, **body) -> str:
    with backend.client("admin") as http:
        r = http.post(TOKENS, json=body)
    assert r.status_code == 201, r.text
    return r.json()["token"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def watcher_tokens(backend, *args: str) -> subprocess.CompletedProcess:
    env = os.environ | {"WATCHER_DATABASE_URL": backend.database_url}
    return subprocess.run(
        [sys.executable, "-m", "watcher_core", "tokens", *args], env=env, capture_output=True, text=True, timeout=60
    )


def test_a_section_token_reads_its_section_and_nothing_else(backend, ident):
    other = ident | {"section": "2", "student_id": "9" + ident["student_id"][1:]}
    content = b"int main;\n"
    sha, _ = snapshots.write_snapshot(backend.snapshot_dir, content)
    backend.post_events(
        [wire_event("file.save", **ident, sha256=sha, size=len(content)), wire_event("process.compile", **other)]
    )
    token = make_token(backend, name=f"ta-{ident['course']}-1", courses=[f"{ident['course']}/1"])
    course = f"/api/v1/courses/{ident['course']}"
    with httpx.Client(base_url=backend.url, headers=bearer(token)) as http:
        assert http.get(f"{course}/sections/1/assignments/hw1/summary").status_code == 200
        r = http.get(f"{course}/sections/2/assignments/hw1/summary")
        assert r.status_code == 403
        assert r.json()["detail"].endswith(f"section '2' (it may read: {ident['course']}/1)")
        listing = http.get("/api/v1/courses", params={"course": ident["course"]}).json()["courses"]
        assert [s["section"] for c in listing for s in c["sections"]] == ["1"]
        # a content is named by its hash: a limited token says whose save it is
        r = http.get(f"/api/v1/snapshots/{sha}")
        assert r.status_code == 422 and r.json()["detail"].startswith("course:")
        r = http.get(f"/api/v1/snapshots/{sha}", params=ident)
        assert r.status_code == 200 and r.content == content
        assert http.get(f"/api/v1/snapshots/{sha}", params=ident | {"section": "2"}).status_code == 403
        # the read token of the environment still reads both sections
    with backend.client("read") as http:
        assert http.get(f"{course}/sections/2/assignments/hw1/summary").status_code == 200


def test_the_admin_api_makes_lists_and_revokes_and_a_revoked_token_is_401_saying_so(backend, ident):
    name = f"prof-{ident['course']}"
    token = make_token(backend, name=name, courses=[ident["course"]], expires_in_days=30)
    summary = f"/api/v1/courses/{ident['course']}/sections/7/assignments/hw1/summary"
    assert httpx.get(backend.url + summary, headers=bearer(token)).status_code == 200  # every section of it
    with backend.client("admin") as http:
        listed = {t["name"]: t for t in http.get(TOKENS).json()["tokens"]}
        assert listed[name]["courses"] == [ident["course"]] and listed[name]["state"] == "active"
        assert listed[name]["last_used_at"] is not None and "token" not in listed[name]
        assert token not in http.get(TOKENS).text
        revoked = http.delete(f"{TOKENS}/{name}")
        assert revoked.status_code == 200 and revoked.json()["state"] == "revoked"
    r = httpx.get(backend.url + summary, headers=bearer(token))
    assert r.status_code == 401 and r.json()["detail"].startswith(f"token '{name}' was revoked at ")
    assert r.headers["www-authenticate"].startswith("Bearer")


def test_an_expired_token_is_401_saying_so(backend, ident):
    name = f"old-{ident['course']}"
    token = make_token(backend, name=name, courses=[ident["course"]], expires_in_days=1)
    engine = db.make_engine(backend.database_url)  # the day passes: the stored expiry moves into the past
    try:
        with Session(engine) as session:
            past = datetime.now(UTC) - timedelta(minutes=5)
            session.execute(update(TOKEN_TABLE).where(TOKEN_TABLE.c.name == name).values(expires_at=past))
            session.commit()
    finally:
        engine.dispose()
    r = httpx.get(backend.url + "/api/v1/courses", headers=bearer(token))
    assert r.status_code == 401 and r.json()["detail"].startswith(f"token '{name}' expired at ")
    with backend.client("admin") as http:
        assert {t["name"]: t for t in http.get(TOKENS).json()["tokens"]}[name]["state"] == "expired"


def test_scopes_of_named_tokens(backend, ident):
    reader = make_token(backend, name=f"r-{ident['course']}", every_course=True)
    admin = make_token(backend, name=f"a-{ident['course']}", scope="admin")
    assert httpx.get(backend.url + TOKENS, headers=bearer(reader)).status_code == 403
    assert httpx.get(backend.url + TOKENS, headers=bearer(admin)).status_code == 200
    delete = f"{backend.url}/api/v1/students/{ident['student_id']}"
    assert httpx.delete(delete, headers=bearer(reader)).status_code == 403
    assert httpx.delete(delete, headers=bearer(admin)).status_code == 200
    r = httpx.post(backend.url + "/api/v1/events", json=[], headers=bearer(admin))
    assert r.status_code == 401 and "never ingest" in r.json()["detail"]
    r = httpx.get(backend.url + "/api/v1/courses", headers=bearer("wtk_" + "x" * 43))
    assert r.status_code == 401 and r.json()["detail"] == "invalid bearer token"


def test_bad_requests_to_the_admin_api_name_the_field(backend, ident):
    with backend.client("admin") as http:
        cases = [
            ({"name": "x y", "courses": ["os"]}, 422, "name:"),
            ({"name": "n1", "courses": ["os/1/2"]}, 422, "courses:"),
            ({"name": "n1"}, 422, "courses:"),
            ({"name": "n1", "scope": "admin", "courses": ["os"]}, 422, "courses:"),
            ({"name": "n1", "courses": ["os"], "expires_at": "2020-01-01T00:00:00Z"}, 422, "expires_at:"),
            (
                {"name": "n1", "courses": ["os"], "expires_at": "2999-01-01T00:00:00Z", "expires_in_days": 3},
                422,
                "expires_in_days:",
            ),
        ]
        for body, status, field in cases:
            r = http.post(TOKENS, json=body)
            assert r.status_code == status and r.json()["detail"].startswith(field), (body, r.text)
        assert http.post(TOKENS, json={"name": "n1", "scope": "ingest", "courses": ["os"]}).status_code == 422
        name = f"dup-{ident['course']}"
        assert http.post(TOKENS, json={"name": name, "courses": ["os"]}).status_code == 201
        r = http.post(TOKENS, json={"name": name, "courses": ["os"]})
        assert r.status_code == 409 and r.json()["detail"].startswith("name:")
        r = http.delete(f"{TOKENS}/nobody-{ident['course']}")
        assert r.status_code == 404 and r.json()["detail"].startswith("name:")


def test_the_cli_makes_lists_and_revokes_tokens_the_backend_honours(backend, ident):
    name = f"cli-{ident['course']}"
    made = watcher_tokens(
        backend, "create", "--name", name, "--course", f"{ident['course']}/1", "--expires-in-days", "9"
    )
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip()
    assert secret.startswith("wtk_") and "shown this once" in made.stderr
    summary = f"{backend.url}/api/v1/courses/{ident['course']}/sections/1/assignments/hw1/summary"
    assert httpx.get(summary, headers=bearer(secret)).status_code == 200
    assert httpx.get(summary.replace("/sections/1/", "/sections/2/"), headers=bearer(secret)).status_code == 403

    listed = watcher_tokens(backend, "list")
    line = next(row for row in listed.stdout.splitlines() if row.startswith(name + " "))
    assert f"{ident['course']}/1" in line and "active" in line and secret not in listed.stdout

    assert watcher_tokens(backend, "revoke", "--name", name).returncode == 0
    r = httpx.get(summary, headers=bearer(secret))
    assert r.status_code == 401 and "was revoked" in r.json()["detail"]
    assert watcher_tokens(backend, "revoke", "--name", "nobody-" + ident["course"]).returncode == 1
    bad = watcher_tokens(backend, "create", "--name", name + "x", "--course", "os/1/2")
    assert bad.returncode == 2 and "courses:" in bad.stderr


def test_the_cli_has_help():
    r = subprocess.run(
        [sys.executable, "-m", "watcher_core", "tokens", "create", "--help"], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0 and "--course COURSE[/SECTION]" in r.stdout and "WATCHER_DATABASE_URL" in r.stdout


# ------------------------------------------------------------------------------- single sign-on (oauth2-proxy)


@pytest.fixture(scope="module")
def behind_proxy(tmp_path_factory):
    """A backend that trusts the reverse proxy at 127.0.0.1; 127.0.0.2 plays any other peer."""
    env = {
        "WATCHER_SSO_TRUSTED_PROXIES": "127.0.0.1/32",
        "WATCHER_SSO_GROUPS": "/os-ta-1=os/1,/os-prof=os,/os-prof=db/3",
        "WATCHER_SSO_ADMIN_GROUPS": "/watcher-admins",
    }
    with run_backend(tmp_path_factory.mktemp("sso"), env=env) as b:
        b.post_events([wire_event("file.save", course="os", section=s) for s in ("1", "2")])
        yield b


def signed_in(user: str, groups: str, **extra: str) -> dict[str, str]:
    return {"X-Forwarded-User": user, "X-Forwarded-Email": f"{user}@example.org", "X-Forwarded-Groups": groups} | extra


def summary(section: str) -> str:
    return f"/api/v1/courses/os/sections/{section}/assignments/hw1/summary"


def test_a_person_signed_in_by_the_trusted_proxy_reads_what_their_groups_map_to(behind_proxy):
    with httpx.Client(base_url=behind_proxy.url) as http:
        ta = signed_in("kim", "/students,/os-ta-1")
        assert http.get(summary("1"), headers=ta).status_code == 200
        r = http.get(summary("2"), headers=ta)
        assert r.status_code == 403 and r.json()["detail"].startswith("sso 'kim' <kim@example.org> may not read")
        prof = signed_in("lee", "/os-prof")
        assert http.get(summary("2"), headers=prof).status_code == 200
        listing = http.get("/api/v1/courses", headers=prof).json()["courses"]
        assert {c["course"] for c in listing} == {"os"}
        nobody = signed_in("park", "/students")
        r = http.get(summary("1"), headers=nobody)
        assert r.status_code == 403 and "it may read: nothing" in r.json()["detail"]
        assert http.get("/api/v1/admin/tokens", headers=prof).status_code == 403
        assert http.get("/api/v1/admin/tokens", headers=signed_in("root", "/watcher-admins")).status_code == 200
        # oauth2-proxy may pass the OIDC token on as a bearer: it is not a watcher token, the person counts
        with_oidc = ta | {"Authorization": "Bearer eyJhbGciOiJSUzI1NiJ9.e30.sig"}
        assert http.get(summary("1"), headers=with_oidc).status_code == 200
        # a watcher token sent through the proxy is that token, not the person
        r = http.get(summary("2"), headers=ta | behind_proxy.headers("read"))
        assert r.status_code == 200


def test_the_headers_of_any_other_peer_are_ignored(behind_proxy):
    elsewhere = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(base_url=behind_proxy.url, transport=elsewhere) as http:
        r = http.get(summary("1"), headers=signed_in("root", "/watcher-admins,/os-prof"))
        assert r.status_code == 401 and r.json()["detail"].startswith("missing bearer token")
        assert http.get(summary("1"), headers=behind_proxy.headers("read")).status_code == 200


# ------------------------------------------------------------------------------------------- read audit


def test_who_read_whose_code_is_in_the_audit_for_admins(backend, ident):
    v1, v2 = b"v1\n", b"v2\n"
    sha1, _ = snapshots.write_snapshot(backend.snapshot_dir, v1)
    sha2, _ = snapshots.write_snapshot(backend.snapshot_dir, v2)
    backend.post_events(
        [
            wire_event("file.save", **ident, sha256=sha1, size=3),
            wire_event("file.save", **ident, sha256=sha2, size=3),
        ]
    )
    name = f"audited-{ident['course']}"
    token = make_token(backend, name=name, courses=[f"{ident['course']}/1"])
    with httpx.Client(base_url=backend.url, headers=bearer(token)) as http:
        assert http.get(f"/api/v1/snapshots/{sha1}", params=ident).status_code == 200
        assert http.get("/api/v1/diff", params={"from": sha1, "to": sha2} | ident).status_code == 200
        refused = ident | {"section": "2"}
        assert http.get(f"/api/v1/snapshots/{sha1}", params=refused).status_code == 403  # not a read
        assert http.get("/api/v1/admin/audit").status_code == 403
    with backend.client("read") as http:
        assert http.get(f"/api/v1/snapshots/{sha2}").status_code == 200  # by hash alone: no student named
    with backend.client("admin") as http:
        page = http.get("/api/v1/admin/audit", params={"reader": f"token '{name}'"}).json()
        assert [(e["route"], e["sha256"], e["to_sha256"]) for e in page["entries"]] == [
            ("GET /api/v1/diff", sha1, sha2),
            ("GET /api/v1/snapshots/{sha256}", sha1, None),
        ]
        assert all(e["student_id"] == ident["student_id"] and e["section"] == "1" for e in page["entries"])
        by_student = http.get("/api/v1/admin/audit", params={"student_id": ident["student_id"]}).json()["entries"]
        assert len(by_student) == 2
        anonymous = http.get("/api/v1/admin/audit", params={"reader": "read token", "limit": 1000}).json()
        assert any(e["sha256"] == sha2 and e["student_id"] is None for e in anonymous["entries"])
        first = http.get("/api/v1/admin/audit", params={"course": ident["course"], "limit": 1}).json()
        second = http.get(
            "/api/v1/admin/audit", params={"course": ident["course"], "limit": 1, "cursor": first["next_cursor"]}
        ).json()
        assert first["entries"][0]["route"] == "GET /api/v1/diff"
        assert second["entries"][0]["route"] == "GET /api/v1/snapshots/{sha256}" and second["next_cursor"] is None
        r = http.get("/api/v1/admin/audit", params={"cursor": "x"})
        assert r.status_code == 422 and r.json()["detail"].startswith("cursor:")
        assert http.get("/api/v1/admin/audit", params={"since": "2026-01-01T00:00:00"}).status_code == 422


# ------------------------------------------------------------------------------- secrets in command lines


def test_a_secret_in_a_command_line_is_replaced_alike_in_the_api_the_old_api_and_the_export(backend, ident, tmp_path):
    argv = ["mysql", "-uroot", "-pHunter2", "--password=Hunter2", "https://kim:Hunter2@db/x"]
    shown = ["mysql", "-uroot", "-p***", "--password=***", "https://kim:***@db/x"]
    backend.post_events([wire_event("process.compile", **ident, argv=argv)])
    student = f"/api/v1/courses/{ident['course']}/sections/1/assignments/hw1/students/{ident['student_id']}"
    legacy = f"/api/{ident['course']}-1/hw1/{ident['student_id']}/logs/build"
    with backend.client("admin") as http:  # the admin sees the same: nobody is shown the secret
        (event,) = http.get(student + "/timeline").json()["events"]
        assert event["argv"] == shown
        (log,) = http.get(legacy).json()
        assert log["cmdline"] == " ".join(shown)
    out = tmp_path / "export"
    proc = subprocess.run(
        [sys.executable, "-m", "watcher_core", "export", "progsnap2", "--database-url", backend.database_url,
         "--snapshot-dir", str(backend.snapshot_dir), "--out", str(out), "--course", ident["course"], "--with-argv"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader((out / "MainTable.csv").open(newline="", encoding="utf-8")))
    assert [json.loads(r["X-Argv"]) for r in rows if r["X-Argv"]] == [shown]
    assert "Hunter2" not in (out / "MainTable.csv").read_text(encoding="utf-8")
    assert_valid_dataset(out)  # every export the suite writes is checked against the ProgSnap2 spec
