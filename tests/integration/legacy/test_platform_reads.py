"""The JCode platform backend reads the old API with no Authorization header (it has no setting for one):
with WATCHER_LEGACY_READS_FROM naming its addresses those reads work and nothing else opens up.
Real backends on loopback; the platform's calls exactly as it sends them (no token)."""

from __future__ import annotations

import httpx
import pytest

from support.backend import run_backend
from watcher_backend.settings import SettingsError, from_env

# the platform's 11 reads (../shared/reference/jcode-platform-clients.md), integer student number
PLATFORM_READS = (
    "/api/os-1/hw1/123",
    "/api/os-1/hw1/123/a.c",
    "/api/snapshot_avg/os-1/hw1/123/a.c",
    "/api/assignments/snapshot_avg/os-1/hw1/123",
    "/api/graph_data/os-1/hw1/123/5",
    "/api/os-1/hw1/123/logs/build",
    "/api/os-1/hw1/123/logs/run",
    "/api/assignment/os-1/hw1",
    "/api/total_graph_data/os-1/hw1/2026-12-03T00:00/2026-12-03T23:59:59",
    "/api/build_avg/os-1/hw1",
    "/api/run_avg/os-1/hw1",
)
BUILD = {
    "binary_path": "/usr/bin/gcc",
    "cmdline": "gcc a.c",
    "exit_code": 0,
    "cwd": "/home/coder/project/hw1",
    "target_path": "/home/coder/project/hw1/a.c",
    "timestamp": "2026-12-03T10:00:00",
}


@pytest.fixture(scope="module")
def open_to_loopback(tmp_path_factory):
    with run_backend(tmp_path_factory.mktemp("platform"), env={"WATCHER_LEGACY_READS_FROM": "127.0.0.0/8"}) as b:
        yield b


def test_the_platforms_reads_work_without_a_token_from_its_address(open_to_loopback):
    b = open_to_loopback
    for path in PLATFORM_READS:
        r = httpx.get(f"{b.url}{path}")
        assert r.status_code == 200, (path, r.text)
    metrics = httpx.get(f"{b.url}/metrics").text
    assert f"watcher_legacy_tokenless_reads_total {float(len(PLATFORM_READS))}" in metrics


def test_nothing_but_the_old_apis_reads_opens(open_to_loopback):
    b = open_to_loopback
    assert httpx.post(f"{b.url}/api/os-1/hw1/123/logs/build", json=BUILD).status_code == 401
    assert httpx.post(f"{b.url}/api/os-1/hw1/123/a.c/20261203_100000", json={"bytes": 3}).status_code == 401
    for path in ("/api/v1/courses", "/api/v1/status", "/api/v1/courses/os/sections/1/assignments/hw1/summary"):
        assert httpx.get(f"{b.url}{path}").status_code == 401, path
    assert httpx.delete(f"{b.url}/api/v1/students/123", params={"course": "os", "section": "1"}).status_code == 401
    # a wrong token is still refused: the exception is for requests without one
    bad = {"Authorization": "Bearer not-a-token-at-all-xxxx"}
    assert httpx.get(f"{b.url}{PLATFORM_READS[0]}", headers=bad).status_code == 401
    # and the tokens keep working for everything
    assert (
        httpx.post(f"{b.url}/api/os-1/hw1/123/logs/build", json=BUILD, headers=b.headers("ingest")).status_code == 200
    )
    assert httpx.get(f"{b.url}/api/v1/courses", headers=b.headers("read")).status_code == 200


def test_a_refused_tokenless_read_says_why(tmp_path):
    with run_backend(tmp_path / "elsewhere", env={"WATCHER_LEGACY_READS_FROM": "10.42.0.0/16"}) as b:
        r = httpx.get(f"{b.url}{PLATFORM_READS[0]}")
        assert r.status_code == 401
        assert "127.0.0.1 is not in WATCHER_LEGACY_READS_FROM" in r.json()["detail"]
    with run_backend(tmp_path / "default") as b:
        r = httpx.get(f"{b.url}{PLATFORM_READS[0]}")
        assert r.status_code == 401 and "WATCHER_LEGACY_READS_FROM is not set" in r.json()["detail"]


def test_a_bad_source_list_names_the_setting():
    with pytest.raises(SettingsError) as err:
        from_env({"WATCHER_INGEST_TOKEN": "x" * 16, "WATCHER_LEGACY_READS_FROM": "10.0.0.0/8,jcode-backend"})
    assert err.value.setting == "WATCHER_LEGACY_READS_FROM" and "'jcode-backend'" in str(err.value)
    ok = from_env({"WATCHER_INGEST_TOKEN": "x" * 16, "WATCHER_LEGACY_READS_FROM": " 10.0.0.7, fd00::/8 "})
    assert [str(n) for n in ok.legacy_reads_from] == ["10.0.0.7/32", "fd00::/8"]
