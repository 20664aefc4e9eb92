"""Shared bits of the filemon benchmarks: run `watcher filemon` as a process, read its CPU and memory
from /proc, and write one section of bench/results/filemon.md (keeping the other one)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # support.backend: a real backend on loopback

from results_file import ResultsFile, machine  # noqa: E402,F401  (machine: re-exported for the scripts)

from support.ports import free_port  # noqa: E402

ORDER = [
    "storm",
    "storm_against_6543424",
    "storm_a72110e_against_6543424",
    "storm_against_a72110e",
    "idle",
    "nodelocal",
    "snapshot_store",
]
RESULTS = ResultsFile("filemon", "filemon benchmarks", ORDER)
write_section = RESULTS.write_section
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_and_clean(main: Callable[[], int], prefix: str) -> int:
    """Run a benchmark's main, then remove its scratch directories (named `prefix`...) even if it failed."""
    try:
        return main()
    finally:
        for leftover in Path(tempfile.gettempdir()).glob(f"{prefix}*"):
            shutil.rmtree(leftover, ignore_errors=True)


@dataclass(frozen=True)
class Idle:
    rss: float  # MB at the end
    peak: float  # MB, sampled
    cpu: float  # CPU seconds used
    span: float  # seconds measured


class Filemon:
    def __init__(self, ws: Path, state: Path, backend, log: Path, extra: list[str] = (), env: dict | None = None):
        """``env``: added to the environment (e.g. another revision's PYTHONPATH, bench/against.py)."""
        self.port = free_port()
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("WATCHER_")}, **(env or {})}
        env["WATCHER_INGEST_TOKEN"] = backend.tokens["ingest"]
        self.argv = [
            sys.executable,
            "-m",
            "watcher_core",
            "filemon",
            "--workspace-root",
            str(ws),
            "--state-dir",
            str(state),
            "--snapshot-dir",
            str(backend.snapshot_dir),
            "--backend-url",
            backend.url,
            "--metrics-port",
            str(self.port),
            "--node-name",
            "bench-node",
            *extra,
        ]
        self.env = env
        self.log = log
        self.proc = None

    def start(self, timeout: float = 120) -> Filemon:
        with open(self.log, "ab") as fh:
            self.proc = subprocess.Popen(self.argv, env=self.env, stdout=fh, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"filemon exited:\n{self.log.read_text()}")
            if "startup scan:" in self.log.read_text(errors="replace"):
                try:
                    if httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1).status_code == 200:
                        return self
                except httpx.HTTPError:
                    pass
            time.sleep(0.1)
        raise RuntimeError("filemon did not start")

    def metric(self, name: str) -> float:
        text = httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=5).text
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and not line.startswith("#"):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def settle(self, files: int, timeout: float = 600) -> float:
        """Seconds until the startup scan's `files` were snapshotted and delivered (nothing queued)."""
        t0 = time.monotonic()
        while time.monotonic() < t0 + timeout:
            if (
                self.metric("watcher_outbox_events") == 0
                and self.metric("filemon_pipeline_queue") == 0
                and self.metric('file_events_total{event_type="create"}') >= files
            ):
                return time.monotonic() - t0
            time.sleep(0.2)
        raise RuntimeError(f"filemon did not settle in {timeout:.0f} s: see {self.log}")

    def idle(self, seconds: float, every: float = 1.0) -> Idle:
        """Memory and CPU over `seconds` of doing nothing."""
        cpu0, t0 = cpu_seconds(self.proc.pid), time.monotonic()
        peak = 0.0
        while time.monotonic() - t0 < seconds:
            peak = max(peak, rss_mb(self.proc.pid))
            time.sleep(every)
        return Idle(rss_mb(self.proc.pid), peak, cpu_seconds(self.proc.pid) - cpu0, time.monotonic() - t0)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
