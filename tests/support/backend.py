"""Start a REAL backend (``python -m watcher_core backend``) on a free loopback port, for any test.

Usage (pytest)::

    from support.backend import run_backend

    def test_something(tmp_path):
        with run_backend(tmp_path) as backend:          # waits until GET /health answers
            r = backend.post_events([event.model_dump(mode="json")])
            assert r.json()["accepted"] == 1
            with backend.client("read") as http:       # httpx.Client with base_url and the read token
                http.get("/api/v1/status").json()

``run_backend(tmp_path, database_url=None, tokens=None, snapshot_dir=None, env=None, args=(), timeout=30)``:

* ``database_url``: default SQLite at ``tmp_path/backend/watcher.db``; pass a ``postgresql://`` URL
  (see ``support.postgres``) to run against PostgreSQL.
* ``tokens``: ``None`` -> fresh random tokens for ingest/read/admin; a dict -> exactly those;
  ``False`` -> ``--insecure-no-auth`` (every request has every scope).
* ``snapshot_dir``: default ``tmp_path/backend/snapshots`` (created); agents' tests point filemon's
  snapshot store at ``backend.snapshot_dir`` so the content API can serve what filemon wrote.
* ``env``: extra environment variables (e.g. ``{"WATCHER_RETENTION_DAYS": "7"}``); ``args``: extra flags.

The handle has ``.url``, ``.port``, ``.tokens`` (scope -> token), ``.snapshot_dir``, ``.database_url``,
``.log_path``, ``.headers(scope)``, ``.client(scope)``, ``.post_events(events, scope="ingest")``,
``.logs()``, ``.restart()`` and ``.stop()``. ``wire_event(type, **fields)`` builds a valid event dict.
The server's stdout/stderr go to ``.log_path``; if it fails to
start, the error includes its log. Every started server is stopped at interpreter exit as a safety net.
"""

from __future__ import annotations

import atexit
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from datetime import UTC
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.ports import free_port

SCOPES = ("ingest", "read", "admin")
_RUNNING: set[subprocess.Popen] = set()


def _cleanup() -> None:
    for proc in list(_RUNNING):
        if proc.poll() is None:
            proc.kill()


atexit.register(_cleanup)


def make_tokens() -> dict[str, str]:
    return {scope: f"{scope}-{secrets.token_hex(16)}" for scope in SCOPES}


class BackendHandle:
    def __init__(
        self,
        workdir: Path,
        database_url: str,
        snapshot_dir: Path,
        tokens: Mapping[str, str] | None,
        env: Mapping[str, str] | None,
        args: Iterable[str],
        timeout: float,
        python: str | None = None,
    ):
        self.python = python or sys.executable
        self.workdir = workdir
        self.database_url = database_url
        self.snapshot_dir = snapshot_dir
        self.tokens: dict[str, str] = dict(tokens or {})
        self.insecure = tokens is None
        self.extra_env = dict(env or {})
        self.extra_args = list(args)
        self.timeout = timeout
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "backend.log"
        self.process: subprocess.Popen | None = None

    # -- lifecycle -----------------------------------------------------------------------------------
    def start(self) -> BackendHandle:
        env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHER_")}
        for scope, token in self.tokens.items():
            env[f"WATCHER_{scope.upper()}_TOKEN"] = token
        env.update(self.extra_env)
        cmd = [
            self.python,
            "-m",
            "watcher_core",
            "backend",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--database-url",
            self.database_url,
            "--snapshot-dir",
            str(self.snapshot_dir),
            *(["--insecure-no-auth"] if self.insecure else []),
            *self.extra_args,
        ]
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            cmd, cwd=self.workdir, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        _RUNNING.add(self.process)
        self._wait_healthy()
        return self

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.timeout
        last_error = "no answer"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"backend exited with {self.process.returncode} before answering /health:\n{self.logs()}"
                )
            try:
                r = httpx.get(self.url + "/health", timeout=2)
                if r.status_code == 200:  # uvicorn serves only after the startup (migrations) finished
                    return
                last_error = f"HTTP {r.status_code}"
            except httpx.HTTPError as exc:
                last_error = repr(exc)
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"backend did not become healthy in {self.timeout}s ({last_error}):\n{self.logs()}")

    def stop(self, timeout: float = 15) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``. Returns the exit code. Safe to call twice."""
        proc = self.process
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        _RUNNING.discard(proc)
        return proc.returncode

    def restart(self) -> BackendHandle:
        """Stop and start again on the same port, database and snapshot store."""
        self.stop()
        return self.start()

    def __enter__(self) -> BackendHandle:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- helpers -------------------------------------------------------------------------------------
    def logs(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def headers(self, scope: str | None = "read") -> dict[str, str]:
        if scope is None or self.insecure:
            return {}
        return {"Authorization": f"Bearer {self.tokens[scope]}"}

    def client(self, scope: str | None = "read", **kwargs: Any) -> httpx.Client:
        kwargs.setdefault("timeout", 30)
        return httpx.Client(base_url=self.url, headers=self.headers(scope), **kwargs)

    def post_events(self, events: list, scope: str = "ingest", **kwargs: Any) -> httpx.Response:
        """POST a batch (wire models or plain dicts) to /api/v1/events."""
        body = [e.model_dump(mode="json") if hasattr(e, "model_dump") else e for e in events]
        return httpx.post(self.url + "/api/v1/events", json=body, headers=self.headers(scope), timeout=30, **kwargs)


def run_backend(
    tmp_path: Path,
    database_url: str | None = None,
    tokens: Mapping[str, str] | bool | None = None,
    snapshot_dir: Path | None = None,
    env: Mapping[str, str] | None = None,
    args: Iterable[str] = (),
    timeout: float = 30,
    python: str | None = None,
) -> BackendHandle:
    """Start a backend and wait until it is healthy; use as a context manager or call ``.stop()``.
    ``python``: the interpreter that runs it (default: this one)."""
    workdir = Path(tmp_path) / "backend"
    workdir.mkdir(parents=True, exist_ok=True)
    snapshot_dir = Path(snapshot_dir) if snapshot_dir else workdir / "snapshots"
    snapshot_dir.mkdir(parents=True, exist_ok=True)
    database_url = database_url or f"sqlite:///{workdir / 'watcher.db'}"
    if tokens is None or tokens is True:
        tokens = make_tokens()
    elif tokens is False:
        tokens = None
    return BackendHandle(workdir, database_url, snapshot_dir, tokens, env, args, timeout, python).start()


# -- event builders ------------------------------------------------------------------------------------

_COUNTER = iter(range(1, 10**9))


def wire_event(type: str = "file.save", **fields: Any) -> dict[str, Any]:
    """A valid wire event as a JSON-ready dict; override any field. Every call gets a fresh event_id.

    Defaults: course ``os``, section ``1``, student ``202400001``, assignment ``hw1``, path ``main.c``,
    node ``node-1``, timestamp now (UTC). Process events get argv/cwd/started_at/ended_at/exit_code 0; a
    notebook.cell is a successful run of cell ``c1`` of ``lab.ipynb`` (source ``ipynb``).
    """
    from datetime import datetime, timedelta

    now = datetime.now(UTC)
    ts = fields.pop("timestamp", now)
    if isinstance(ts, datetime):
        ts = ts.isoformat()
    event: dict[str, Any] = {
        "event_id": f"test-{secrets.token_hex(8)}-{next(_COUNTER)}",
        "type": type,
        "timestamp": ts,
        "node": "node-1",
        "source": "procmon" if type.startswith("process.") else "filemon",
        "course": "os",
        "section": "1",
        "student_id": "202400001",
        "assignment": "hw1",
        "path": "main.c",
    }
    if type == "file.save":
        event.update(sha256="0" * 64, size=0)
    elif type == "file.too_large":
        event.update(size=2_000_000, limit=1_048_576)
    elif type in ("process.compile", "process.run"):
        start = datetime.fromisoformat(ts)
        event.update(
            argv=["gcc", "main.c", "-o", "main"] if type == "process.compile" else ["./main"],
            cwd=".",
            exit_code=0,
            started_at=start.isoformat(),
            ended_at=(start + timedelta(milliseconds=250)).isoformat(),
        )
        if type == "process.compile":
            event.update(compiler="gcc", sources=["main.c"], output="main")
        else:
            event.update(kind="binary", target="main")
    elif type == "notebook.cell":
        start = datetime.fromisoformat(ts)
        event.update(
            source="ipynb",
            path="lab.ipynb",
            node="jcode-os-1-202400001-abcde",
            started_at=start.isoformat(),
            ended_at=(start + timedelta(milliseconds=40)).isoformat(),
            cell_id="c1",
            execution_count=1,
        )
    event.update(fields)
    return event


@pytest.fixture
def ident():
    """A fresh course/section/student for each test, so tests sharing a server never see each other's data."""
    return {
        "course": "c" + secrets.token_hex(4),
        "section": "1",
        "student_id": str(secrets.randbelow(10**9)).zfill(9),
        "assignment": "hw1",
    }
