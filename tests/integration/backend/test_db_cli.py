"""``watcher db``: a backup taken while the backend runs, restored into a fresh database, gives a new
backend the same answers; refusals say what to do. Real backends, real SQLite (PostgreSQL:
tests/system/backend/test_db_cli_postgres.py)."""

from __future__ import annotations

import os
import subprocess
import sys

from support.backend import run_backend, wire_event
from watcher_backend import migrate

STUDENTS = ("202400001", "202400002")


def watcher_db(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("WATCHER_")}
    return subprocess.run(
        [sys.executable, "-m", "watcher_core", "db", *args],
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


def fill(backend) -> None:
    events = []
    for sid in STUDENTS:
        events += [wire_event(student_id=sid, path=f"f{i}.c", size=10 * i) for i in range(50)]
        events += [
            wire_event("process.compile", student_id=sid),
            wire_event("process.run", student_id=sid, exit_code=1),
        ]
    assert backend.post_events(events).json()["accepted"] == len(events)


def answers(backend) -> list:
    base = "/api/v1/courses/os/sections/1/assignments/hw1"
    with backend.client("read") as http:
        out = [http.get(base + "/summary").json()]
        out += [http.get(f"{base}/students/{sid}/timeline", params={"limit": 1000}).json() for sid in STUDENTS]
        out.append(http.get("/api/os-1/hw1/202400001/logs/run").json())
    return out


def test_a_backup_taken_while_writing_restores_to_the_same_answers(tmp_path):
    old_url = f"sqlite:///{tmp_path / 'old' / 'watcher.db'}"
    new_url = f"sqlite:///{tmp_path / 'new' / 'watcher.db'}"
    with run_backend(tmp_path / "a", database_url=old_url) as old:
        fill(old)
        before = answers(old)
        r = watcher_db("backup", "--database-url", old_url, "--output", str(tmp_path / "backup.db"))
        assert r.returncode == 0 and "backed up" in r.stderr, r.stderr
        # the backend kept running: writing after the backup is fine, the backup is the state before
        old.post_events([wire_event(student_id="202400003")])
    r = watcher_db("restore", "--input", str(tmp_path / "backup.db"), env={"WATCHER_DATABASE_URL": new_url})
    assert r.returncode == 0 and "restored" in r.stderr, r.stderr
    with run_backend(tmp_path / "b", database_url=new_url) as new:
        after = answers(new)
    assert after == before
    head = migrate.head_revision()
    assert watcher_db("current", "--database-url", new_url).stdout.strip() == f"revision {head}; newest {head}"


def test_refusals_say_what_to_do(tmp_path):
    url = f"sqlite:///{tmp_path / 'db' / 'watcher.db'}"
    with run_backend(tmp_path / "a", database_url=url) as b:
        b.post_events([wire_event()])
    cases = [
        (
            ("backup", "--database-url", f"sqlite:///{tmp_path / 'none.db'}", "--output", str(tmp_path / "x.db")),
            "no database at",
        ),
        (("backup", "--database-url", url, "--output", str(tmp_path)), "exists; choose a new file"),
        (("restore", "--database-url", url, "--input", str(tmp_path / "missing.db")), "no backup at"),
        (
            ("restore", "--database-url", url, "--input", url.removeprefix("sqlite:///")),
            "already holds events; restore into a new one, or add --force",
        ),
    ]
    (tmp_path / "junk.db").write_bytes(b"not sqlite at all" * 100)
    cases.append(
        (
            ("restore", "--database-url", f"sqlite:///{tmp_path / 'fresh.db'}", "--input", str(tmp_path / "junk.db")),
            "is not a Watcher SQLite backup",
        )
    )
    for args, why in cases:
        r = watcher_db(*args)
        assert r.returncode == 1, (args, r.stderr)
        assert why in r.stderr and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, r.stderr
