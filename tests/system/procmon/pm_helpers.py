"""Helpers for procmon's system tests: the real agent as a subprocess, simulated student containers.

A student container is simulated with real kernel parts: its own cgroup v2 (the unit the in-kernel
filter learns), and for the pod view its own UTS namespace (hostname ``jcode-...``) and mount
namespace (the student's files bind-mounted at /home/coder/project).
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx

from support.cgroups import cgroup2_root
from support.ports import free_port


def why_no_ebpf() -> str | None:
    if os.geteuid() != 0:
        return "needs root (eBPF programs, cgroups, namespaces)"
    try:
        from watcher_agents.procmon.ebpf import import_bcc

        import_bcc()
    except Exception as exc:  # noqa: BLE001 - the reason is the skip message
        return f"bcc is not installed (scripts/deps/bcc.sh): {exc}"
    return None


class Container:
    """A cgroup (and optionally UTS + mount namespaces) that student commands run in."""

    def __init__(self, name: str):
        root = cgroup2_root()
        self.path = Path(root, f"procmon-test-{name}-{uuid.uuid4().hex[:8]}") if root else None
        if self.path:
            self.path.mkdir()

    def _enter(self) -> str:
        return f"echo $$ > {self.path}/cgroup.procs && " if self.path else ""

    def sh(self, script: str, cwd: str | Path, timeout: float = 120) -> subprocess.CompletedProcess:
        """Run ``script`` with sh in this cgroup, cwd on the node (node view). Like a terminal, the shell
        forks each command from the student's directory."""
        inner = f"cd {shlex.quote(str(cwd))} && {{ {script}\n}}; exit $?"
        return subprocess.run(["sh", "-c", self._enter() + inner], capture_output=True, text=True, timeout=timeout)

    def spawn(self, script: str, cwd: str | Path) -> subprocess.Popen:
        """Start ``script`` with sh in this cgroup and return at once (``exec`` in the script keeps the
        pid: the returned process is the program)."""
        inner = f"cd {shlex.quote(str(cwd))} && {script}"
        return subprocess.Popen(
            ["sh", "-c", self._enter() + inner],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def pod(
        self, script: str, hostname: str, files: str | Path, workdir: str = "", timeout: float = 120
    ) -> subprocess.CompletedProcess:
        """Run ``script`` as in a student pod: new UTS + mount namespaces, ``files`` at /home/coder/project."""
        return subprocess.run(
            ["sh", "-c", self._pod_command(script, hostname, files, workdir)],
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def pod_spawn(self, script: str, hostname: str, files: str | Path, workdir: str = "") -> subprocess.Popen:
        """``pod`` without waiting (``exec`` in the script keeps the pid: the returned process is the program)."""
        return subprocess.Popen(
            ["sh", "-c", self._pod_command(script, hostname, files, workdir)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def _pod_command(self, script: str, hostname: str, files: str | Path, workdir: str) -> str:
        # as the kubelet does: the pod name is the UTS hostname and is bind-mounted at /etc/hostname (what a
        # procmon without CAP_SYS_ADMIN, which cannot setns into the pod's UTS namespace, reads)
        setup = (
            f"hostname {shlex.quote(hostname)} && mount -t tmpfs none /home && "
            f"echo {shlex.quote(hostname)} > /home/.hostname && mount --bind /home/.hostname /etc/hostname && "
            "mkdir -p /home/coder/project && "
            f"mount --bind {shlex.quote(str(files))} /home/coder/project && "
            f"cd /home/coder/project/{workdir} && {script}"
        )
        return self._enter() + f"exec unshare --uts --mount sh -c {shlex.quote(setup)}"

    def remove(self) -> None:
        """Kill whatever still runs in the cgroup (a test's background program, a fork bomb), then remove it."""
        if not self.path:
            return
        kill = self.path / "cgroup.kill"
        if kill.exists():
            kill.write_text("1")
        for _ in range(50):
            try:
                self.path.rmdir()
                return
            except OSError:
                time.sleep(0.1)


class Procmon:
    """``python -m watcher_core procmon`` as a subprocess, its log in a file."""

    def __init__(
        self, tmp: Path, workspace: Path, backend_url: str, token: str | None, *args: str, env: dict | None = None
    ):
        self.tmp = tmp
        self.port = free_port()
        self.log_path = tmp / f"procmon-{self.port}.log"
        self.state = tmp / f"state-{self.port}"
        self.cmd = [
            sys.executable,
            "-m",
            "watcher_core",
            "procmon",
            "--workspace-root",
            str(workspace),
            "--state-dir",
            str(self.state),
            "--backend-url",
            backend_url,
            "--metrics-port",
            str(self.port),
            "--node-name",
            "test-node",
            "--flush-timeout",
            "5",
            "--log-level",
            "DEBUG",
            *args,
        ]
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHER_")}
        if token:
            self.env["WATCHER_INGEST_TOKEN"] = token
        self.env.update(env or {})
        self.proc: subprocess.Popen | None = None

    def start(self, ready: bool = True, timeout: float = 60) -> Procmon:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        if ready:
            deadline = time.monotonic() + timeout
            while "procmon ready" not in self.log():
                if self.proc.poll() is not None:
                    raise RuntimeError(f"procmon exited with {self.proc.returncode}:\n{self.log()}")
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"procmon not ready in {timeout}s:\n{self.log()}")
                time.sleep(0.1)
        return self

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def metrics(self) -> str:
        return httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=5).text

    def metric(self, series: str) -> float:
        """One sample by its exact series, e.g. ``procmon_mode{mode="ebpf"}``; NaN when absent."""
        for line in self.metrics().splitlines():
            if not line.startswith("#") and " " in line:
                key, value = line.rsplit(" ", 1)
                if key == series:
                    return float(value)
        return float("nan")

    def health(self) -> httpx.Response:
        return httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=5)

    def wait_metric(self, name: str, predicate, timeout: float = 30) -> float:
        deadline = time.monotonic() + timeout
        value = float("nan")
        while time.monotonic() < deadline:
            value = self.metric(name)
            if predicate(value):
                return value
            time.sleep(0.2)
        raise AssertionError(f"{name} = {value} after {timeout}s\n{self.log()[-3000:]}")

    def stop(self, timeout: float = 30) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


def wait_healthy(pm: Procmon, timeout: float = 90) -> None:
    """Wait for /healthz 200 (not the log: after a restart it still holds the first run's "procmon ready")."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert pm.proc.poll() is None, pm.log()[-3000:]
        try:
            if httpx.get(f"http://127.0.0.1:{pm.port}/healthz", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"procmon not healthy in {timeout}s:\n{pm.log()[-3000:]}")


def wait_events(
    backend, course: str, section: str, student: str, assignment: str, n: int, timeout: float = 45, **match
) -> list[dict]:
    """Poll the student's timeline until at least ``n`` process events (matching ``match``) are stored."""
    deadline = time.monotonic() + timeout
    found: list[dict] = []
    url = f"/api/v1/courses/{course}/sections/{section}/assignments/{assignment}/students/{student}/timeline"
    while time.monotonic() < deadline:
        with backend.client("read") as http:
            r = http.get(url, params={"limit": 1000})
        if r.status_code == 200:
            found = [
                e
                for e in r.json()["events"]
                if e["type"].startswith("process.") and all(e.get(k) == v for k, v in match.items())
            ]
            if len(found) >= n:
                return found
        time.sleep(0.25)
    raise AssertionError(f"{len(found)} of {n} events for {student}/{assignment} {match}: {found}")


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
GCC = shutil.which("gcc") or "gcc"
