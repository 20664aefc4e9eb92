"""Shared bits of the procmon benchmarks: build the tiny C programs, run `watcher procmon` as a process,
put workloads into their own cgroup (a simulated container), and write one section of
bench/results/procmon.md (keeping the others)."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from results_file import ResultsFile, machine  # noqa: E402,F401  (machine: re-exported for the scripts)

from support.cgroups import cgroup2_root  # noqa: E402
from support.ports import free_port  # noqa: E402

ORDER = ["execs", "execs_against", "overhead", "overhead_against", "overhead_stderr", "write_hooks", "gcc"]
RESULTS = ResultsFile("procmon", "procmon benchmarks", ORDER)
write_section = RESULTS.write_section

TINY_C = "int main(void) { return 0; }\n"
# spawn N P PROG [ARGS...]: P workers, each fork+exec+wait of PROG N/P times; prints the wall time and
# the CPU time (user+sys) of all the processes it started, in seconds.
SPAWN_C = r"""
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
extern char **environ;
int main(int argc, char **argv) {
    long n = atol(argv[1]); int p = atoi(argv[2]);
    struct timespec a, b; clock_gettime(CLOCK_MONOTONIC, &a);
    for (int w = 0; w < p; w++) {
        if (fork() == 0) {
            for (long i = w; i < n; i += p) {
                pid_t pid;
                if (posix_spawn(&pid, argv[3], NULL, NULL, argv + 3, environ) != 0) _exit(2);
                int st; waitpid(pid, &st, 0);
            }
            _exit(0);
        }
    }
    int st, bad = 0;
    while (wait(&st) > 0) bad |= st;
    clock_gettime(CLOCK_MONOTONIC, &b);
    struct rusage ru; getrusage(RUSAGE_CHILDREN, &ru);   /* CPU of every fork+exec'd child */
    double cpu = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
    printf("%.6f %.6f\n", (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9, cpu);
    return bad ? 1 : 0;
}
"""


def require_root() -> None:
    if os.geteuid() != 0:
        sys.exit("procmon benchmarks need root (eBPF, cgroups)")


def build(src: str, out: Path, *flags: str) -> Path:
    c = out.with_suffix(".c")
    c.write_text(src)
    subprocess.run(["gcc", "-O2", *flags, str(c), "-o", str(out)], check=True)
    return out


class Cgroup:
    """A fresh cgroup v2 (a simulated container); commands run in it through ``sh``."""

    def __init__(self, name: str):
        root = cgroup2_root()
        if root is None:
            sys.exit("no cgroup v2 hierarchy mounted: the simulated containers need one")
        self.path = Path(root, f"procmon-bench-{name}-{uuid.uuid4().hex[:6]}")
        self.path.mkdir()

    def run(self, argv: list[str], cwd: Path | str) -> subprocess.CompletedProcess:
        script = f'echo $$ > {self.path}/cgroup.procs && cd "{cwd}" && exec "$@"'
        return subprocess.run(["sh", "-c", script, "sh", *argv], capture_output=True, text=True, check=True)

    def remove(self) -> None:
        for _ in range(100):
            try:
                self.path.rmdir()
                return
            except OSError:
                time.sleep(0.05)


@contextmanager
def revision(rev: str) -> Iterator[dict[str, str]]:
    """A temporary git worktree of ``rev``; yields the environment that runs its procmon (PYTHONPATH
    ahead of this tree's editable install)."""
    tree = Path(tempfile.mkdtemp(prefix="procmon-against-")) / "tree"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), rev], check=True)
    try:
        yield {"PYTHONPATH": os.pathsep.join(str(tree / d) for d in ("core", "agents"))}
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False)


class Procmon:
    def __init__(
        self,
        ws: Path,
        state: Path,
        log: Path,
        *extra: str,
        backend_url: str = "http://127.0.0.1:9",
        env: dict[str, str] | None = None,
    ):
        self.port = free_port()
        self.state = state
        env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHER_")} | (env or {})
        self.argv = [
            sys.executable,
            "-m",
            "watcher_core",
            "procmon",
            "--workspace-root",
            str(ws),
            "--state-dir",
            str(state),
            "--backend-url",
            backend_url,
            "--metrics-port",
            str(self.port),
            "--node-name",
            "bench",
            "--flush-timeout",
            "0",
            "--log-level",
            "WARNING",
            *extra,
        ]
        self.env = env
        self.log = log
        self.proc: subprocess.Popen | None = None

    def start(self) -> Procmon:
        with open(self.log, "ab") as fh:
            self.proc = subprocess.Popen(self.argv, env=self.env, stdout=fh, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                sys.exit(f"procmon exited: {self.log.read_text()[-2000:]}")
            try:
                if (
                    httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1).status_code == 200
                    and self.metric('procmon_mode{mode="ebpf"}') == 1.0
                ):
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        sys.exit("procmon did not start in 60 s")

    def metric(self, series: str) -> float:
        text = httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=5).text
        for line in text.splitlines():
            if not line.startswith("#") and " " in line:
                key, value = line.rsplit(" ", 1)
                if key == series:
                    return float(value)
        return float("nan")

    def wait_stable(self, series: str, quiet: float = 1.5, timeout: float = 120) -> float:
        """Poll a metric until it stops changing for ``quiet`` seconds."""
        last, since = None, time.monotonic()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.metric(series)
            if value != last:
                last, since = value, time.monotonic()
            elif time.monotonic() - since >= quiet:
                return value
            time.sleep(0.2)
        return last

    def outbox_rows(self, where: str = "1") -> int:
        db = sqlite3.connect(str(self.state / "outbox.sqlite3"))
        try:
            return db.execute(f"SELECT COUNT(*) FROM outbox WHERE {where}").fetchone()[0]
        finally:
            db.close()

    def outbox_bodies(self) -> list[str]:
        db = sqlite3.connect(str(self.state / "outbox.sqlite3"))
        try:
            return [r[0] for r in db.execute("SELECT body FROM outbox")]
        finally:
            db.close()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def execsnoop_path() -> str | None:
    """libbpf-tools' execsnoop (CO-RE, tracepoints); not bcc's execsnoop-bpfcc (needs kprobes)."""
    for candidate in ("/usr/sbin/execsnoop", "/usr/bin/execsnoop"):
        if os.path.exists(candidate):
            return candidate
    try:
        files = subprocess.run(["dpkg", "-L", "libbpf-tools"], capture_output=True, text=True).stdout.split()
    except OSError:
        return None
    return next((f for f in files if f.endswith("/execsnoop")), None) or shutil.which("execsnoop")


def median(values: list[float]) -> float:
    s = sorted(values)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2
