"""``watcher backend`` as a command: help, bad settings (one line, exit 2), defaults, token files, no-auth mode."""

import os
import re
import subprocess
import sys
import time

import httpx

from support.backend import run_backend, wire_event
from support.ports import free_port

TOKENS = {"WATCHER_INGEST_TOKEN": "ingest-" + "x" * 20, "WATCHER_READ_TOKEN": "read-" + "y" * 20}


def run_cli(args, env, cwd, timeout=60):
    clean = {k: v for k, v in os.environ.items() if not k.startswith("WATCHER_")}
    return subprocess.run(
        [sys.executable, "-m", "watcher_core", "backend", *args],
        env={**clean, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_help_lists_the_settings(tmp_path):
    r = run_cli(["--help"], {}, tmp_path)
    assert r.returncode == 0
    for name in (
        "--database-url",
        "--snapshot-dir",
        "WATCHER_INGEST_TOKEN",
        "WATCHER_RETENTION_DAYS",
        "--insecure-no-auth",
    ):
        assert name in r.stdout


def test_bad_settings_print_one_line_naming_the_setting_and_exit_2(tmp_path):
    cases = [
        ({**TOKENS, "WATCHER_RETENTION_DAYS": "often"}, [], "WATCHER_RETENTION_DAYS"),
        ({**TOKENS, "WATCHER_DATABASE_URL": "mysql://db/x"}, [], "WATCHER_DATABASE_URL"),
        ({}, [], "WATCHER_INGEST_TOKEN"),  # no tokens and auth not switched off
        ({**TOKENS, "WATCHER_READ_TOKEN_FILE": str(tmp_path / "missing")}, [], "WATCHER_READ_TOKEN"),
        (TOKENS, ["--port", "0"], "WATCHER_PORT"),
    ]
    for env, args, setting in cases:
        r = run_cli(args, env, tmp_path)
        assert r.returncode == 2, (setting, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and setting in lines[0], (setting, r.stderr)
        assert "Traceback" not in r.stderr


def test_an_unreachable_database_is_one_line_and_a_non_zero_exit(tmp_path):
    url = f"postgresql://watcher@127.0.0.1:{free_port()}/watcher"  # nothing listens there
    r = run_cli(
        ["--port", str(free_port())],
        {**TOKENS, "WATCHER_DATABASE_URL": url, "WATCHER_DATABASE_WAIT_SECONDS": "1"},
        tmp_path,
    )
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot reach the database (WATCHER_DATABASE_URL)" in lines[0], r.stderr
    unwritable = run_cli([], {**TOKENS, "WATCHER_DATABASE_URL": "sqlite:////proc/nope/watcher.db"}, tmp_path)
    assert unwritable.returncode == 2 and "WATCHER_DATABASE_URL" in unwritable.stderr
    assert "Traceback" not in unwritable.stderr


def test_defaults_create_sqlite_under_data_in_the_working_directory(tmp_path):
    port = free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("WATCHER_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "watcher_core", "backend", "--host", "127.0.0.1", "--port", str(port)],
        env={**clean, **TOKENS},
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        r = httpx.post(
            f"http://127.0.0.1:{port}/api/v1/events",
            json=[wire_event()],
            headers={"Authorization": "Bearer " + TOKENS["WATCHER_INGEST_TOKEN"]},
        )
        assert r.json()["accepted"] == 1
        assert (tmp_path / "data" / "watcher.db").is_file()
        assert (tmp_path / "data" / "snapshots").is_dir()
    finally:
        proc.terminate()
        proc.wait(15)
    assert f"Server starting on port {port}" in proc.stderr.read().decode()


def test_tokens_from_files(tmp_path):
    (tmp_path / "read.tok").write_text("read-token-from-a-file-123\n")
    with run_backend(
        tmp_path,
        tokens={"ingest": "ingest-token-from-env-1234"},
        env={"WATCHER_READ_TOKEN_FILE": str(tmp_path / "read.tok")},
    ) as backend:
        ok = httpx.get(backend.url + "/api/v1/status", headers={"Authorization": "Bearer read-token-from-a-file-123"})
        assert ok.status_code == 200
        # the admin scope has no token: nobody can delete
        r = httpx.delete(
            backend.url + "/api/v1/students/1", headers={"Authorization": "Bearer read-token-from-a-file-123"}
        )
        assert r.status_code == 403


def test_insecure_no_auth_mode_needs_no_token(tmp_path):
    with run_backend(tmp_path, tokens=False) as backend:
        assert httpx.post(backend.url + "/api/v1/events", json=[wire_event()]).json()["accepted"] == 1
        assert httpx.get(backend.url + "/api/v1/status").status_code == 200
        assert "authentication is OFF" in backend.logs()


def test_no_auth_is_refused_on_a_network_address_unless_said_twice(tmp_path):
    for env, args in (
        ({}, ["--insecure-no-auth"]),  # the default host, 0.0.0.0
        ({"WATCHER_AUTH": "off"}, ["--host", "::"]),
        ({"WATCHER_AUTH": "off", "WATCHER_HOST": "10.0.0.5"}, []),
    ):
        r = run_cli(args, env, tmp_path)
        assert r.returncode == 2, r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "WATCHER_AUTH" in lines[0] and "--host 127.0.0.1" in lines[0], r.stderr
    # said twice: it starts, and answers without a token (on a loopback port, so nothing leaves this machine)
    port = free_port()
    for env, args in (
        ({}, ["--insecure-no-auth-on-network", "--host", "0.0.0.0"]),
        ({"WATCHER_AUTH": "off-on-network"}, ["--host", "0.0.0.0"]),
    ):
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "watcher_core",
                "backend",
                *args,
                "--port",
                str(port),
                "--database-url",
                f"sqlite:///{tmp_path / 'open.db'}",
                "--snapshot-dir",
                str(tmp_path / "s"),
            ],
            env={**{k: v for k, v in os.environ.items() if not k.startswith("WATCHER_")}, **env},
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    assert httpx.get(f"http://127.0.0.1:{port}/api/v1/status").status_code == 200
                    break
                except httpx.TransportError:
                    assert proc.poll() is None and time.monotonic() < deadline, "backend did not start"
                    time.sleep(0.2)
        finally:
            proc.terminate()
            assert "authentication is OFF" in proc.communicate(timeout=30)[1]


def test_cors_allows_only_the_configured_origins(tmp_path):
    with run_backend(tmp_path, env={"WATCHER_CORS_ORIGINS": "https://dash.example.org"}) as backend:
        pre = {"Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "authorization"}
        ok = httpx.options(backend.url + "/api/v1/status", headers={"Origin": "https://dash.example.org", **pre})
        assert ok.headers.get("access-control-allow-origin") == "https://dash.example.org"
        assert ok.headers.get("access-control-allow-credentials") is None
        other = httpx.options(backend.url + "/api/v1/status", headers={"Origin": "https://evil.example", **pre})
        assert other.headers.get("access-control-allow-origin") is None


def test_the_body_limit_is_configurable(tmp_path):
    with run_backend(tmp_path, env={"WATCHER_MAX_BODY_BYTES": "4096"}) as backend:
        small = [wire_event()]
        assert backend.post_events(small).status_code == 200
        big = [wire_event(path=f"f{i}.c") for i in range(20)]  # about 6 KB of JSON
        r = backend.post_events(big)
        assert r.status_code == 413 and "4096" in r.json()["detail"]


def test_log_lines_have_a_time_and_a_level_and_can_be_json(tmp_path):
    import json

    with run_backend(tmp_path / "plain") as backend:  # the default: the guide's lines, exactly
        assert f"Server starting on port {backend.port}" in backend.logs().splitlines()
    with run_backend(tmp_path / "text", env={"WATCHER_LOG_FORMAT": "text"}) as backend:
        line = next(x for x in backend.logs().splitlines() if "Server starting on port" in x)
    # 2026-12-04T10:00:00+0000 INFO backend watcher_backend: Server starting on port 3000
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} INFO backend ", line), line
    with run_backend(tmp_path / "json", env={"WATCHER_LOG_FORMAT": "json"}) as backend:
        records = [json.loads(x) for x in backend.logs().splitlines() if x.startswith("{")]
    starting = next(r for r in records if r["message"].startswith("Server starting on port"))
    assert starting["level"] == "INFO" and starting["component"] == "backend" and starting["time"].endswith("+00:00")
    assert any(r["logger"].startswith("uvicorn") for r in records)  # uvicorn's own lines too
    r = run_cli([], {**TOKENS, "WATCHER_LOG_FORMAT": "yaml"}, tmp_path)
    assert r.returncode == 2 and "WATCHER_LOG_FORMAT" in r.stderr and len(r.stderr.strip().splitlines()) == 1
