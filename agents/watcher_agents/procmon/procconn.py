"""Fallback tracer: the kernel's netlink process connector (no eBPF, no headers, pure Python).

Subscribes to ``CN_IDX_PROC`` on a ``NETLINK_CONNECTOR`` socket and receives PROC_EVENT_EXEC,
PROC_EVENT_EXIT (with the wait status: exit code and terminating signal) and PROC_EVENT_FORK.
It carries pids only, so argv, cwd, the executable and the hostname are read from /proc right when
the exec arrives (a process that is already gone keeps only what /proc still had). There is no
in-kernel filter: every exec on the node reaches user space, and no write does (what compilers write to
stderr is not captured in this mode). Needs CAP_NET_ADMIN.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import struct
import threading
import time
from collections.abc import Callable

from watcher_agents.procmon.events import ExecEvent, ExitEvent, StderrEvent
from watcher_agents.procmon.tracer import TracerUnavailable

log = logging.getLogger(__name__)

NETLINK_CONNECTOR = 11
CN_IDX_PROC = 1
CN_VAL_PROC = 1
NLMSG_DONE = 3
PROC_CN_MCAST_LISTEN = 1
PROC_CN_MCAST_IGNORE = 2
PROC_EVENT_FORK = 0x00000001
PROC_EVENT_EXEC = 0x00000002
PROC_EVENT_EXIT = 0x80000000

_NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_CN_MSG = struct.Struct("=IIIIHH")  # idx, val, seq, ack, len, flags
_PROC_EVENT_HEAD = struct.Struct("=IIQ")  # what, cpu, timestamp_ns (CLOCK_MONOTONIC)
_EXEC = struct.Struct("=ii")  # pid, tgid
_EXIT = struct.Struct("=iiII")  # pid, tgid, exit_code (wait status), exit_signal (to parent)
_FORK = struct.Struct("=iiii")  # parent pid, parent tgid, child pid, child tgid


class ConnectorUnavailable(TracerUnavailable):
    pass


def decode_wait_status(status: int) -> tuple[int | None, int | None]:
    """(exit_code, signal) from a wait status (task->exit_code): signal in bits 0-6, code in 8-15."""
    sig = status & 0x7F
    if sig:
        return None, sig
    return (status >> 8) & 0xFF, None


def subscription_message(op: int = PROC_CN_MCAST_LISTEN) -> bytes:
    payload = struct.pack("=I", op)
    cn = _CN_MSG.pack(CN_IDX_PROC, CN_VAL_PROC, 0, 0, len(payload), 0) + payload
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(cn), NLMSG_DONE, 0, 0, os.getpid()) + cn


def parse_messages(data: bytes):
    """Yield (what, timestamp_ns, body bytes) for each proc event in one datagram."""
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, _type, _flags, _seq, _pid = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size:
            return
        body = data[offset + _NLMSGHDR.size : offset + length]
        offset += (length + 3) & ~3
        if len(body) < _CN_MSG.size + _PROC_EVENT_HEAD.size:
            continue
        idx, val, _s, _a, _len, _f = _CN_MSG.unpack_from(body)
        if idx != CN_IDX_PROC or val != CN_VAL_PROC:
            continue
        what, _cpu, ts = _PROC_EVENT_HEAD.unpack_from(body, _CN_MSG.size)
        yield what, ts, body[_CN_MSG.size + _PROC_EVENT_HEAD.size :]


class ProcConnectorTracer:
    """A ``tracer.Tracer`` on the netlink process connector: pids only, no kernel state to update."""

    mode = "proc-connector"

    def __init__(
        self, on_exec: Callable[[ExecEvent], None], on_exit: Callable[[ExitEvent], None], rcvbuf: int = 16 * 1024 * 1024
    ) -> None:
        self.on_exec, self.on_exit = on_exec, on_exit
        self.rcvbuf = rcvbuf
        self.sock: socket.socket | None = None
        self.lost = 0
        self.events = {"exec": 0, "exit": 0}
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        # Processes whose leader thread exited while other threads still ran: reported when the
        # last thread is gone (tgid -> the latest thread exit seen: ktime, code, signal).
        self.deferred: dict[int, tuple[int, int | None, int | None]] = {}
        self._last_sweep = 0.0
        self.after_poll: Callable[[], None] = lambda: None
        self.on_chdir: Callable[[int, str | None], None] = lambda pid, path=None: None  # not reported
        self.on_stderr: Callable[[StderrEvent], None] = lambda ev: None  # writes are not seen
        self.captures_stderr = False

    def load(self) -> None:
        try:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_CONNECTOR)
        except OSError as exc:
            raise ConnectorUnavailable(f"no netlink process connector: {exc.strerror or exc}") from None
        try:
            try:  # a bigger buffer than the default, past rmem_max when we may (CAP_NET_ADMIN)
                sock.setsockopt(socket.SOL_SOCKET, 33, self.rcvbuf)  # SO_RCVBUFFORCE
            except OSError:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
            sock.bind((0, CN_IDX_PROC))
            sock.send(subscription_message())
            err = _wait_for_ack(sock)
        except OSError as exc:
            sock.close()
            raise ConnectorUnavailable(
                f"cannot subscribe to process events: {exc.strerror or exc} (needs CAP_NET_ADMIN)"
            ) from None
        if err:
            sock.close()
            raise ConnectorUnavailable(
                f"the kernel refused the subscription: {os.strerror(err)} "
                "(needs CAP_NET_ADMIN in the initial user namespace)"
            )
        sock.settimeout(0.5)
        self.sock = sock
        log.info("listening to the netlink process connector (no in-kernel filter)")

    def start(self) -> ProcConnectorTracer:
        self._thread = threading.Thread(target=self._run, name="procmon-proc-connector", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            if self.deferred and time.monotonic() - self._last_sweep > 0.2:
                self._last_sweep = time.monotonic()
                self._sweep()
                self.after_poll()
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:  # the socket buffer overflowed: events were dropped
                    self.lost += 1
                    continue
                if self._stop.is_set():
                    return
                log.error("proc connector receive failed: %s", exc)
                self._stop.wait(1)
                continue
            for what, ts, body in parse_messages(data):
                try:
                    self._handle(what, ts, body)
                except Exception:
                    log.exception("cannot handle a process connector event")
            self.after_poll()

    def _handle(self, what: int, ts: int, body: bytes) -> None:
        if what == PROC_EVENT_EXEC and len(body) >= _EXEC.size:
            pid, tgid = _EXEC.unpack_from(body)
            self.events["exec"] += 1
            # Only pids: filename, argv, cwd... are read from /proc by the pipeline's enrich step.
            self.on_exec(ExecEvent(pid=tgid, ktime_ns=ts, filename="", argv=[], argv_missing=True))
        elif what == PROC_EVENT_EXIT and len(body) >= _EXIT.size:
            pid, tgid, status, _sig_to_parent = _EXIT.unpack_from(body)
            self.events["exit"] += 1
            code, sig = decode_wait_status(status)
            # One event per thread. A process is reported once, when its last thread is gone.
            if pid == tgid:
                if _other_threads(tgid, {tgid}):
                    self.deferred[tgid] = (ts, code, sig)
                    return
                self.on_exit(ExitEvent(pid=tgid, ktime_ns=ts, exit_code=code, signal=sig))
            elif tgid in self.deferred:
                self.deferred[tgid] = (ts, code, sig)
                if not _other_threads(tgid, {tgid, pid}):
                    del self.deferred[tgid]
                    self.on_exit(ExitEvent(pid=tgid, ktime_ns=ts, exit_code=code, signal=sig))

    def _sweep(self) -> None:
        """Deferred processes whose last thread exit was processed before /proc forgot it."""
        for tgid, (ts, code, sig) in list(self.deferred.items()):
            if not _other_threads(tgid, {tgid}):
                del self.deferred[tgid]
                self.on_exit(ExitEvent(pid=tgid, ktime_ns=ts, exit_code=code, signal=sig))

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        self._stop.set()
        if self.sock is not None:
            try:
                self.sock.send(subscription_message(PROC_CN_MCAST_IGNORE))
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(3)
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def counters(self) -> dict[str, int]:
        return {
            "lost": self.lost,
            "filtered_exec": 0,
            "exec": self.events["exec"],
            "exit": self.events["exit"],
            "argv_missing": 0,
        }

    # no in-kernel state to update
    def set_cgroup_verdict(self, cgroup_id: int, verdict: int | None) -> None:
        pass

    def untrack(self, pid: int, start_ns: int) -> None:
        pass

    def track(self, pid: int, start_ns: int) -> bool:
        return True  # every exit reaches user space

    def ignore_stderr(self, pid: int) -> None:
        pass


def _other_threads(tgid: int, exclude: set[int]) -> bool:
    """Whether the process still has threads besides ``exclude`` (a zombie leader lists only itself)."""
    try:
        tids = {int(t) for t in os.listdir(f"/proc/{tgid}/task")}
    except (OSError, ValueError):
        return False
    return bool(tids - exclude)


def _wait_for_ack(sock: socket.socket, timeout: float = 1.0) -> int:
    """The kernel answers a subscription with PROC_EVENT_NONE carrying an errno (0 = subscribed)."""
    sock.settimeout(0.1)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            data = sock.recv(65536)
        except TimeoutError:
            continue
        for what, _ts, body in parse_messages(data):
            if what == 0 and len(body) >= 4:
                return struct.unpack_from("=I", body)[0]
    return 0  # no answer (older kernels do not always ack): assume subscribed
