"""``watcher local``: backend, filemon and procmon together on one machine, as real processes.

Everything lives under one data directory::

    <data-dir>/tokens.json      ingest/read/admin tokens, generated on first start (mode 0600)
    <data-dir>/watcher.db       the backend's SQLite database
    <data-dir>/snapshots/       the snapshot store (filemon writes, the backend reads)
    <data-dir>/filemon/         filemon's state store and outbox
    <data-dir>/procmon/         procmon's outbox
    <data-dir>/logs/            one log file per component

Each component runs as its own ``watcher <component>`` process, exactly as in a cluster, so what works
here works there. Ctrl-C stops the agents first (they flush their outboxes to the still-running
backend), then the backend.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from watcher_core import settings_spec
from watcher_core.settings_spec import Setting

AGENT_STOP_SECONDS = 20.0
BACKEND_STOP_SECONDS = 10.0


def load_or_create_tokens(data_dir: Path) -> dict[str, str]:
    """The stack's tokens, kept across restarts so agents' outboxes stay deliverable."""
    path = data_dir / "tokens.json"
    if path.exists():
        tokens = json.loads(path.read_text())
        if all(tokens.get(k) for k in ("ingest", "read", "admin")):
            return tokens
    tokens = {scope: secrets.token_urlsafe(24) for scope in ("ingest", "read", "admin")}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(tokens, fh, indent=2)
    return tokens


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """In the child: get SIGTERM if the process that started us dies without stopping us (a crash,
    SIGKILL, a closed terminal), so no component is ever left running on its own. Linux only."""
    try:
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def say_safely(prefix: str):
    """A progress printer that never raises (stdout may be a closed pipe, e.g. ``watcher demo | head``)."""

    def say(msg: str) -> None:
        try:
            print(f"{prefix}{msg}", flush=True)
        except (BrokenPipeError, OSError, ValueError):
            pass

    return say


@dataclass
class Component:
    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    health_url: str
    required: bool = True
    process: subprocess.Popen | None = None
    log_file: object = None

    def start(self) -> None:
        self.log_file = open(self.log_path, "ab", buffering=0)
        self.process = subprocess.Popen(
            self.argv,
            env=self.env,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C reaches us, and we stop children in order
            preexec_fn=_die_with_parent,
        )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None and self.process.poll() is None else None

    def kill(self) -> int | None:
        """SIGKILL, as a crash would: no flush, no cleanup. Returns the exit code."""
        return self.stop(timeout=10.0, sig=signal.SIGKILL)

    def stop(self, timeout: float, sig: int = signal.SIGTERM) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.log_file:
            self.log_file.close()
            self.log_file = None
        return self.process.returncode

    def log_tail(self, lines: int = 5) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except FileNotFoundError:
            return ""
        return "\n".join(text[-lines:])


@dataclass
class LocalStack:
    """The three components as processes. Used by ``watcher local``, ``watcher demo`` and the e2e tests."""

    workspace: Path
    data_dir: Path
    port: int = 3000
    host: str = "127.0.0.1"
    filemon_metrics_port: int = 9090
    procmon_metrics_port: int = 9091
    procmon_mode: str = "auto"  # auto | ebpf | proc-connector | off
    database_url: str | None = None  # default: SQLite at <data-dir>/watcher.db
    agent_args: dict[str, list[str]] = field(default_factory=dict)  # extra flags per component name
    node_name: str = field(default_factory=lambda: socket.gethostname().split(".")[0] or "local")
    extra_env: dict[str, str] = field(default_factory=dict)
    components: dict[str, Component] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.workspace = Path(self.workspace).resolve()
        self.data_dir = Path(self.data_dir).resolve()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def snapshot_dir(self) -> Path:
        return self.data_dir / "snapshots"

    @property
    def sqlite_path(self) -> Path | None:
        """The SQLite database file, or None when the backend uses another database."""
        url = self.resolved_database_url
        return Path(url[len("sqlite:///") :]) if url.startswith("sqlite:///") else None

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'watcher.db'}"

    def state_dir(self, agent: str) -> Path:
        return self.data_dir / agent

    def metrics_url(self, name: str) -> str:
        return self.components[name].health_url.rsplit("/", 1)[0] + "/metrics"

    def _base_env(self) -> dict[str, str]:
        # The stack's own tokens must win: a token (or *_FILE) exported in the user's shell would make
        # the backend refuse to start (both set) or the agents post with the wrong token.
        env = {k: v for k, v in os.environ.items() if not re.fullmatch(r"WATCHER_[A-Z]+_TOKEN(_FILE)?", k)}
        env.update(self.extra_env)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def prepare(self) -> dict[str, str]:
        for sub in ("snapshots", "filemon", "procmon", "logs"):
            (self.data_dir / sub).mkdir(parents=True, exist_ok=True)
        self.tokens = load_or_create_tokens(self.data_dir)
        watcher = [sys.executable, "-m", "watcher_core"]
        logs = self.data_dir / "logs"
        backend_env = self._base_env() | {
            "WATCHER_INGEST_TOKEN": self.tokens["ingest"],
            "WATCHER_READ_TOKEN": self.tokens["read"],
            "WATCHER_ADMIN_TOKEN": self.tokens["admin"],
        }
        self.components["backend"] = Component(
            "backend",
            watcher
            + [
                "backend",
                "--host",
                self.host,
                "--port",
                str(self.port),
                "--database-url",
                self.resolved_database_url,
                "--snapshot-dir",
                str(self.snapshot_dir),
                *self.agent_args.get("backend", []),
            ],
            backend_env,
            logs / "backend.log",
            f"{self.url}/health",
        )
        agent_env = self._base_env() | {"WATCHER_INGEST_TOKEN": self.tokens["ingest"]}
        common = ["--workspace-root", str(self.workspace), "--backend-url", self.url, "--node-name", self.node_name]
        self.components["filemon"] = Component(
            "filemon",
            watcher
            + [
                "filemon",
                *common,
                "--snapshot-dir",
                str(self.snapshot_dir),
                "--state-dir",
                str(self.data_dir / "filemon"),
                "--metrics-port",
                str(self.filemon_metrics_port),
                *self.agent_args.get("filemon", []),
            ],
            agent_env,
            logs / "filemon.log",
            f"http://127.0.0.1:{self.filemon_metrics_port}/healthz",
        )
        if self.procmon_mode != "off":
            self.components["procmon"] = Component(
                "procmon",
                watcher
                + [
                    "procmon",
                    *common,
                    "--state-dir",
                    str(self.data_dir / "procmon"),
                    "--metrics-port",
                    str(self.procmon_metrics_port),
                    "--mode",
                    self.procmon_mode,
                    *self.agent_args.get("procmon", []),
                ],
                agent_env,
                logs / "procmon.log",
                f"http://127.0.0.1:{self.procmon_metrics_port}/healthz",
                required=False,  # needs root; the stack is still useful without it
            )
        return self.tokens

    def start(self, timeout: float = 60.0, say=lambda msg: None) -> None:
        """Start the backend, wait until healthy, then the agents; raise RuntimeError naming what failed."""
        if not self.components:
            self.prepare()
        backend = self.components["backend"]
        backend.start()
        self._wait_healthy(backend, timeout)
        say(f"backend  ready at {self.url} (API docs {self.url}/docs)")
        for name in ("filemon", "procmon"):
            comp = self.components.get(name)
            if comp is None:
                continue
            comp.start()
            try:
                self._wait_healthy(comp, timeout)
                if name == "procmon":
                    self._wait_procmon_tracing(comp, timeout)
            except RuntimeError as exc:
                if comp.required:
                    self.stop()
                    raise
                say(f"{name}  not running: {exc}")
                comp.stop(1.0)
                del self.components[name]
                continue
            say(f"{name}  ready, metrics at {comp.health_url.rsplit('/', 1)[0]}/metrics{self._mode_note(name)}")

    def _mode_note(self, name: str) -> str:
        if name != "procmon":
            return ""
        mode = self.procmon_running_mode()
        return f" (tracing with {mode})" if mode else ""

    def procmon_running_mode(self) -> str | None:
        """The tracer procmon loaded (ebpf or proc-connector), read from its procmon_mode metric."""
        comp = self.components.get("procmon")
        if comp is None:
            return None
        try:
            text = httpx.get(self.metrics_url("procmon"), timeout=2.0).text
        except httpx.HTTPError:
            return None
        for line in text.splitlines():
            if line.startswith("procmon_mode{") and line.rstrip().endswith(" 1.0"):
                return line.split('mode="', 1)[1].split('"', 1)[0]
        return None

    def _wait_procmon_tracing(self, comp: Component, timeout: float) -> None:
        """procmon answers /healthz while bcc still compiles its programs (a second or more); a compile in
        that window would be missed, so "ready" means its procmon_mode metric names the loaded tracer."""
        deadline = time.monotonic() + timeout
        while self.procmon_running_mode() is None:
            if not comp.alive():
                raise RuntimeError(
                    f"{comp.name} exited with code {comp.process.returncode}; last log lines:\n{comp.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(f"procmon loaded no tracer in {timeout:.0f} s; see {comp.log_path}")
            time.sleep(0.1)

    def _wait_healthy(self, comp: Component, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not comp.alive():
                raise RuntimeError(
                    f"{comp.name} exited with code {comp.process.returncode}; last log lines:\n{comp.log_tail()}"
                )
            try:
                if httpx.get(comp.health_url, timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{comp.name} not healthy after {timeout:.0f} s; see {comp.log_path}")

    def start_component(self, name: str, timeout: float = 60.0) -> None:
        """(Re)start one component on the same ports, data and state; wait until it is healthy."""
        comp = self.components[name]
        if comp.alive():
            raise RuntimeError(f"{name} is already running (pid {comp.pid})")
        comp.start()
        self._wait_healthy(comp, timeout)
        if name == "procmon":
            self._wait_procmon_tracing(comp, timeout)

    def kill_component(self, name: str) -> int | None:
        """SIGKILL one component (a crash: nothing flushed)."""
        return self.components[name].kill()

    def stop_component(self, name: str, timeout: float | None = None) -> int | None:
        """SIGTERM one component (its clean shutdown)."""
        default = BACKEND_STOP_SECONDS if name == "backend" else AGENT_STOP_SECONDS
        return self.components[name].stop(default if timeout is None else timeout)

    def pids(self) -> dict[str, int]:
        """The running components' process ids (for CPU and memory accounting)."""
        return {name: comp.pid for name, comp in self.components.items() if comp.pid is not None}

    def stop(self) -> None:
        """Agents first (each flushes its outbox to the backend), then the backend."""
        for name in ("filemon", "procmon"):
            comp = self.components.get(name)
            if comp:
                comp.stop(AGENT_STOP_SECONDS)
        backend = self.components.get("backend")
        if backend:
            backend.stop(BACKEND_STOP_SECONDS)

    def __enter__(self) -> LocalStack:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


PROCMON_MODES = ("auto", "ebpf", "proc-connector", "off")
OPTIONS = (
    Setting(
        "workspace",
        flag="--workspace",
        required=True,
        parse=settings_spec.path,
        metavar="DIR",
        doc="the workspace root to watch (created if missing)",
    ),
    Setting(
        "data_dir",
        flag="--data-dir",
        default=Path("./watcher-data"),
        parse=settings_spec.path,
        metavar="DIR",
        doc="database, snapshots, outboxes, tokens and logs",
    ),
    Setting(
        "port",
        flag="--port",
        default=3000,
        parse=settings_spec.port(1),
        metavar="PORT",
        doc="the backend's port (on `127.0.0.1`); a port in use is one line and exit 2",
    ),
    Setting(
        "database_url",
        flag="--database-url",
        redact=True,
        metavar="URL",
        default_doc="SQLite at `<data-dir>/watcher.db`",
        doc="the backend's database, e.g. `postgresql://user@host:5432/watcher` (needs the `postgres` extra)",
    ),
    Setting(
        "filemon_metrics_port",
        flag="--filemon-metrics-port",
        default=9090,
        parse=settings_spec.port(1),
        metavar="PORT",
        doc="filemon's `/metrics` and `/healthz`",
    ),
    Setting(
        "procmon_metrics_port",
        flag="--procmon-metrics-port",
        default=9091,
        parse=settings_spec.port(1),
        metavar="PORT",
        doc="procmon's `/metrics` and `/healthz`",
    ),
    Setting(
        "procmon",
        flag="--procmon",
        default="auto",
        parse=settings_spec.one_of(PROCMON_MODES),
        metavar="MODE",
        doc="procmon's tracing mode: `auto`, `ebpf`, `proc-connector`, or `off` (run without procmon); eBPF "
        "needs root and bcc",
    ),
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="watcher local",
        description="Run backend, filemon and procmon together on this machine over a workspace laid out as "
        "{course}-{section}-{student_id}/hwN/... . Ctrl-C stops everything cleanly and flushes the agents' outboxes.",
    )
    settings_spec.add_arguments(p, OPTIONS)
    return p


def main(argv: list[str]) -> int:
    try:
        args = settings_spec.resolve(OPTIONS, build_parser().parse_args(argv))
    except settings_spec.SettingsError as exc:
        print(f"watcher local: bad setting {exc}", file=sys.stderr)
        return 2
    for label, port in (
        ("--port", args.port),
        ("--filemon-metrics-port", args.filemon_metrics_port),
        ("--procmon-metrics-port", args.procmon_metrics_port),
    ):
        if not port_is_free(port):
            print(f"watcher local: {label} {port} is already in use; pick another with {label}", file=sys.stderr)
            return 2
    args.workspace.mkdir(parents=True, exist_ok=True)
    stack = LocalStack(
        args.workspace,
        args.data_dir,
        port=args.port,
        filemon_metrics_port=args.filemon_metrics_port,
        procmon_metrics_port=args.procmon_metrics_port,
        procmon_mode=args.procmon,
        database_url=args.database_url,
    )
    stack.prepare()
    say = say_safely("watcher local: ")
    try:
        stack.start(say=say)
    except RuntimeError as exc:
        print(f"watcher local: {exc}", file=sys.stderr)
        return 1
    say(f"watching {stack.workspace}; data in {stack.data_dir}; read token in {stack.data_dir / 'tokens.json'}")
    say("press Ctrl-C to stop")
    stopping = False

    def _stop(signum, frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    try:
        while not stopping:
            for comp in list(stack.components.values()):
                if not comp.alive():
                    say(
                        f"{comp.name} exited with code {comp.process.returncode}; stopping. Last log lines:\n"
                        f"{comp.log_tail()}"
                    )
                    stopping = True
            time.sleep(0.5)
    finally:
        say("stopping: flushing agent outboxes, then the backend")
        stack.stop()
        say("stopped")
    return 0
