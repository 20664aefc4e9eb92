"""Helpers for filemon's integration tests: run filemon (in-process or as `watcher filemon`), query the
real backend, poll with deadlines. Import as ``from integration.filemon.harness import ...``."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from support.ports import free_port
from watcher_agents import config
from watcher_agents.filemon.cli import Filemon, build_parser, resolve_filemon

_IDS = itertools.count(1)


def new_student(course: str = "os", section: str = "1") -> tuple[str, str, str]:
    """A fresh (course, section, student_id) so tests sharing a backend never see each other's events."""
    return course, section, f"{os.getpid() % 10000:04d}{next(_IDS):05d}"


def student_dir(root: Path, student: tuple[str, str, str]) -> Path:
    return Path(root) / "-".join(student)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def wait_until(predicate, timeout: float = 20.0, interval: float = 0.1, message: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    last = predicate()
    assert last, f"timed out after {timeout}s waiting for {message}"
    return last


def filemon_argv(root: Path, state_dir: Path, backend, *, port: int | None = None, extra: list[str] = ()) -> list[str]:
    return [
        "--workspace-root",
        str(root),
        "--state-dir",
        str(state_dir),
        "--snapshot-dir",
        str(backend.snapshot_dir),
        "--backend-url",
        backend.url,
        "--metrics-port",
        str(port if port is not None else 0),
        "--node-name",
        "test-node",
        *extra,
    ]


def filemon_env(backend) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHER_")}
    if backend.tokens:
        env["WATCHER_INGEST_TOKEN"] = backend.tokens["ingest"]
    return env


@contextlib.contextmanager
def running_filemon(
    root: Path,
    state_dir: Path,
    backend,
    extra: list[str] = (),
    before_start=None,
    collector_options: dict | None = None,
    kube=None,
):
    """filemon in this process (so tests can read its metrics and inject faults). ``collector_options``
    go to its snapshot collector (e.g. ``{"initial_delay": 0}``); ``kube``: the API server of node mode."""
    args = build_parser().parse_args(filemon_argv(root, state_dir, backend, extra=list(extra)))
    env = filemon_env(backend)
    settings = config.resolve(args, agent="filemon", env=env)
    fm = resolve_filemon(args, env=env)
    agent = Filemon(
        settings,
        fm,
        metrics_host="127.0.0.1",
        sender_options={"backoff_base": 0.05, "backoff_cap": 1.0, "idle_wait": 0.2},
        collector_options=collector_options,
        kube=kube,
    )
    if before_start:
        before_start(agent)
    agent.start()
    try:
        # a wait, not a speed claim: the 100,000-file scans took 29-30 s at a load average of 15
        assert agent.watcher.wait_ready(180), "startup scan did not finish"
        yield agent
    finally:
        agent.stop()


def metric(agent, name: str, labels: dict | None = None) -> float:
    return agent.runtime.registry.get_sample_value(name, labels or {}) or 0.0


class FilemonProcess:
    """`watcher filemon` as a real subprocess (for SIGKILL / SIGTERM / restart tests)."""

    def __init__(self, root: Path, state_dir: Path, backend, log_path: Path, extra: list[str] = ()):
        self.port = free_port()
        self.argv = [
            sys.executable,
            "-m",
            "watcher_core",
            "filemon",
            *filemon_argv(root, state_dir, backend, port=self.port, extra=list(extra)),
        ]
        self.env = filemon_env(backend)
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    def start(self) -> FilemonProcess:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        wait_until(self.ready, timeout=30, message=f"filemon to serve /healthz; log:\n{self.logs()}")
        return self

    def ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"filemon exited with {self.proc.returncode}:\n{self.logs()}")
        try:
            ok = httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False
        return ok and "startup scan:" in self.logs()

    def metrics_text(self) -> str:
        return httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=5).text

    def logs(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self, timeout: float = 30) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def timeline(backend, student: tuple[str, str, str], assignment: str = "hw1") -> list[dict]:
    course, section, sid = student
    out: list[dict] = []
    cursor = None
    with backend.client("read") as http:
        while True:
            params = {"limit": 1000}
            if cursor:
                params["cursor"] = cursor
            r = http.get(
                f"/api/v1/courses/{course}/sections/{section}/assignments/{assignment}/students/{sid}/timeline",
                params=params,
            )
            if r.status_code == 404:
                return out
            r.raise_for_status()
            doc = r.json()
            out += doc["events"]
            cursor = doc.get("next_cursor")
            if not cursor:
                return out


def by_path(events: list[dict], type_: str | None = None) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for ev in events:
        if type_ is None or ev["type"] == type_:
            out.setdefault(ev["path"], []).append(ev)
    return out
