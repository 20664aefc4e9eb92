"""Several server processes on one port (``watcher backend --workers N``).

One Python process serves about one core's worth of requests: the GIL runs its HTTP parsing, validation and
ingest one at a time (docs/backend.md, "Single-event requests"). With N workers the parent migrates the
database and builds the rollups once, then forks N workers. Each binds the port with SO_REUSEPORT, so the
kernel spreads connections over them, and has its own event loop, database connections and group commit
(``ingest_writer``). Their writes are ordered by the database: on SQLite a group commit is one transaction
that takes the file's write lock and waits for another worker's commit (busy timeout); on PostgreSQL row
locks order them, as between replicas. Each worker stamps ``received_at`` in its own microseconds
(``store.set_time_slot``), so a batch's rows stay told apart from another worker's.

Metrics are prometheus_client's multiprocess mode: every worker writes its values to files in one folder,
and a scrape of any worker sums them (metrics.py). Only worker 0 runs the retention purge. The parent
restarts a worker that dies (one log line each, backing off while they keep dying) and, on SIGTERM or
SIGINT, stops them all and waits for their open requests; a worker whose parent is killed stops too.
"""

from __future__ import annotations

import ctypes
import dataclasses
import gc
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable

from .settings import Settings

log = logging.getLogger("watcher_backend")

PR_SET_PDEATHSIG = 1
# A worker that dies this soon after its start is crashing, not failing once: wait longer each time.
CRASH_SECONDS = 10.0
MAX_BACKOFF_SECONDS = 30.0


def listening_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port that other sockets of this user may share (SO_REUSEPORT)."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[
        0
    ]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(address)
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _die_with_parent() -> None:
    """Ask the kernel to send this process SIGTERM when its parent dies (even by SIGKILL)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the parent's SIGTERM still stops the workers
        pass


class Supervisor:
    """Fork ``settings.workers`` workers that each run ``serve(settings, index)``; restart the ones that die."""

    def __init__(self, settings: Settings, serve: Callable[[Settings, int], int]):
        self.settings = settings
        self.serve = serve
        self.children: dict[int, tuple[int, float]] = {}  # pid -> (worker index, start time)
        self.stopping = False
        self.backoff = 1.0

    def run(self) -> int:
        # Taken here, before any worker starts: a port another program holds is one clear error, not N
        # crashing workers.
        try:
            listening_socket(self.settings.host, self.settings.port).close()
        except OSError as exc:
            print(
                f"watcher backend: cannot listen on {self.settings.host}:{self.settings.port} "
                f"(WATCHER_HOST, WATCHER_PORT): {exc.strerror or exc}",
                file=sys.stderr,
            )
            return 1
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._stop)
        log.info("Starting %d workers on port %d", self.settings.workers, self.settings.port)
        gc.freeze()  # what the workers inherit stays shared: their collections never touch (copy) it
        for index in range(self.settings.workers):
            self._start(index)
        from prometheus_client import multiprocess

        while self.children:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            if pid not in self.children:
                continue
            index, started = self.children.pop(pid)
            multiprocess.mark_process_dead(pid)
            if self.stopping:
                continue
            code = os.waitstatus_to_exitcode(status)
            how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
            if time.monotonic() - started < CRASH_SECONDS:
                self.backoff = min(self.backoff * 2, MAX_BACKOFF_SECONDS)
            else:
                self.backoff = 1.0
            log.error("worker %d (pid %d) %s; starting it again in %.0f s", index, pid, how, self.backoff)
            _sleep_unless_stopping(self, self.backoff)
            if not self.stopping:
                self._start(index)
        log.info("All workers stopped")
        return 0

    def _start(self, index: int) -> None:
        parent = os.getpid()
        pid = os.fork()
        if pid:
            self.children[pid] = (index, time.monotonic())
            return
        code = 1
        try:  # the worker: never returns into the parent's code
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, signal.SIG_DFL)  # uvicorn installs its own once serving
            _die_with_parent()
            # The parent may have died before the line above, and nothing would stop this worker then. Compared
            # with its pid, not with 1: in a container the parent is pid 1.
            if os.getppid() != parent:
                log.error("worker %d: the backend's main process is gone; not starting", index)
                os._exit(1)
            code = self.serve(self.settings, index)
        except BaseException:
            logging.getLogger("watcher_backend").exception("worker %d failed", index)
        finally:
            logging.shutdown()
            os._exit(code)

    def _stop(self, signum, _frame) -> None:
        if not self.stopping:
            log.info("Stopping %d workers (%s)", len(self.children), signal.Signals(signum).name)
        self.stopping = True
        for pid in list(self.children):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass


def _sleep_unless_stopping(supervisor: Supervisor, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not supervisor.stopping and time.monotonic() < deadline:
        time.sleep(0.1)


def worker_settings(settings: Settings) -> Settings:
    """A worker's settings: the migrations and the rollup build ran in the parent."""
    return dataclasses.replace(settings, run_migrations=False)


def metrics_folder() -> str:
    """A fresh folder for the workers' metric files, named in PROMETHEUS_MULTIPROC_DIR before prometheus_client
    is imported (it picks its mode then). Removed at exit."""
    folder = tempfile.mkdtemp(prefix="watcher-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
    return folder


def remove_metrics_folder(folder: str) -> None:
    shutil.rmtree(folder, ignore_errors=True)
