"""Shared bits of the filemon benchmarks: run `watcher filemon` as a process, read its CPU and memory
from /proc, and write one section of bench/results/filemon.md (keeping the other one)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
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

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
