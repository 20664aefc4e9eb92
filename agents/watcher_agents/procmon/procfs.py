"""Facts about a live process read from /proc at exec time: cwd, argv, ppid, UTS hostname.

Called in the tracer thread the moment an exec event arrives: a gcc that lives 20 ms is still there,
most of the time. Every reader returns None when the process is already gone (never raises).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass

from watcher_core import identity

log = logging.getLogger(__name__)

CLONE_NEWUTS = 0x04000000


def read_cwd(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return None


def read_exe(pid: int) -> str | None:
    try:
        path = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return None
    return path[: -len(" (deleted)")] if path.endswith(" (deleted)") else path


CMDLINE_MAX_BYTES = 65536


def read_cmdline(pid: int, max_bytes: int = CMDLINE_MAX_BYTES) -> list[str] | None:
    """argv from /proc, at most ``max_bytes`` of it: a student's program may have many MB of argv, and
    only the first few KiB are ever sent (a cut last argument is dropped by the caller's limit)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            raw = fh.read(max_bytes)
    except OSError:
        return None
    if not raw:
        return None
    return [a.decode("utf-8", "surrogateescape") for a in raw.rstrip(b"\0").split(b"\0")]


def read_stat(pid: int) -> tuple[str, int] | None:
    """(comm, ppid) from /proc/<pid>/stat; comm may contain spaces and parentheses."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read()
    except OSError:
        return None
    head, _, tail = raw.rpartition(b")")
    comm = head.partition(b"(")[2].decode("utf-8", "replace")
    fields = tail.split()
    try:
        return comm, int(fields[1])
    except (IndexError, ValueError):
        return None


def read_uid(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None


class HostnameResolver:
    """The UTS hostname of a process (in Kubernetes: its pod's name), cached per UTS namespace.

    Method, best first: ``setns`` into the process's UTS namespace in this thread and ``uname()``
    (exact; needs CAP_SYS_ADMIN); else ``/proc/<pid>/root/etc/hostname`` (Kubernetes bind-mounts the
    pod name there); else ``HOSTNAME`` in ``/proc/<pid>/environ`` (set by Kubernetes).

    Only student names (``jcode-...``) are cached: a new namespace starts with its parent's hostname
    and is renamed right after (``unshare --uts`` then ``hostname``), so a non-student answer is
    never trusted for later processes.

    A namespace's inode number is reused once the namespace is gone (the kernel hands out the lowest
    free one), so a pod made after another pod ended may get its number: the cached name would make
    the new pod's processes the old pod's student's. Each entry therefore keeps a witness, the
    process it was read from (pid and start time); the entry holds only while the witness lives in
    that namespace, which then cannot have been freed. Else the name is read again.
    """

    def __init__(self, max_entries: int = 4096) -> None:
        self._cache: OrderedDict[int, tuple[str, int, int]] = OrderedDict()  # ino -> (name, pid, start)
        self._max = max_entries
        self._lock = threading.Lock()
        self._libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        try:
            self._own_ino = os.stat("/proc/self/ns/uts").st_ino
            self._own_fd: int | None = os.open("/proc/self/ns/uts", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            self._own_ino, self._own_fd = None, None
        self._setns_ok = self._own_fd is not None

    def close(self) -> None:
        if self._own_fd is not None:
            os.close(self._own_fd)
            self._own_fd = None

    def resolve(self, pid: int) -> str | None:
        try:
            ino = os.stat(f"/proc/{pid}/ns/uts").st_ino
        except OSError:
            return None
        cached = self._cache.get(ino)
        if cached is not None and _lives_in(cached[1], cached[2], ino):
            return cached[0]
        if ino == self._own_ino:
            name = os.uname().nodename
        else:
            name = self._via_setns(pid) or self._via_root_file(pid) or self._via_environ(pid)
        witness = read_proc_stat(pid)
        if name and name.startswith(identity.POD_NAME_PREFIX) and witness is not None:
            with self._lock:
                self._cache[ino] = (name, pid, witness.start_ticks)
                if len(self._cache) > self._max:
                    self._cache.popitem(last=False)
        return name

    def _via_setns(self, pid: int) -> str | None:
        if not self._setns_ok:
            return None
        try:
            fd = os.open(f"/proc/{pid}/ns/uts", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            # setns changes the namespace of this thread only; we switch back right away.
            if self._libc.setns(fd, CLONE_NEWUTS) != 0:
                err = ctypes.get_errno()
                if err == 1:  # EPERM: no CAP_SYS_ADMIN; stop trying
                    self._setns_ok = False
                    log.info("no CAP_SYS_ADMIN for setns: reading hostnames from /proc/<pid>/root/etc/hostname")
                return None
            try:
                return os.uname().nodename
            finally:
                if self._libc.setns(self._own_fd, CLONE_NEWUTS) != 0:
                    raise OSError(ctypes.get_errno(), "cannot return to procmon's own UTS namespace")
        finally:
            os.close(fd)

    @staticmethod
    def _via_root_file(pid: int) -> str | None:
        try:
            with open(f"/proc/{pid}/root/etc/hostname", "rb") as fh:
                name = fh.read(256).strip().decode("utf-8", "replace")
        except OSError:
            return None
        return name or None

    @staticmethod
    def _via_environ(pid: int) -> str | None:
        try:
            with open(f"/proc/{pid}/environ", "rb") as fh:
                raw = fh.read(65536)
        except OSError:
            return None
        for item in raw.split(b"\0"):
            if item.startswith(b"HOSTNAME="):
                return item[9:].decode("utf-8", "replace") or None
        return None


def _lives_in(pid: int, start_ticks: int, uts_ino: int) -> bool:
    """Is the process ``pid`` that started at ``start_ticks`` still alive in that UTS namespace?"""
    try:
        if os.stat(f"/proc/{pid}/ns/uts").st_ino != uts_ino:
            return False
    except OSError:
        return False
    st = read_proc_stat(pid)
    return st is not None and st.start_ticks == start_ticks


# --- processes that were running before procmon started (adoption) -------------------------------

CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class ProcStat:
    """What /proc/<pid>/stat says about a process that adoption needs."""

    comm: str
    state: str  # R, S, D, Z (zombie: already exited), X, ...
    ppid: int
    start_ticks: int  # field 22: start time after boot, in clock ticks (CLOCK_BOOTTIME based)


def parse_stat(raw: bytes) -> ProcStat | None:
    """``/proc/<pid>/stat`` contents -> ProcStat. comm (field 2) may hold spaces and ')' itself, so the
    fields after it are found from the LAST ')'. None for anything malformed."""
    head, sep, tail = raw.rpartition(b")")
    if not sep or b"(" not in head:
        return None
    comm = head.partition(b"(")[2].decode("utf-8", "replace")
    fields = tail.split()  # fields[0] is field 3 (state)
    try:
        return ProcStat(comm, fields[0].decode("ascii", "replace"), int(fields[1]), int(fields[19]))
    except (IndexError, ValueError):
        return None


def read_proc_stat(pid: int) -> ProcStat | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return parse_stat(fh.read())
    except OSError:
        return None


def ticks_to_ns(ticks: int, hz: int = CLK_TCK) -> int:
    return ticks * 1_000_000_000 // hz


def start_clocks(start_ticks: int, hz: int, boot_now_ns: int, mono_now_ns: int, wall_now_ns: int) -> tuple[int, int]:
    """(CLOCK_MONOTONIC ns, Unix ns) of a process start given in ticks after boot.

    /proc's start time counts CLOCK_BOOTTIME (suspend included); the kernel events count
    CLOCK_MONOTONIC (``bpf_ktime_get_ns``). Both are placed through one reading of the three clocks
    now, so the boot time is exact (``btime`` in /proc/stat is whole seconds)."""
    age_ns = boot_now_ns - ticks_to_ns(start_ticks, hz)
    return mono_now_ns - age_ns, wall_now_ns - age_ns


def same_start(a_ticks: int, b_ticks: int, tolerance: int = 1) -> bool:
    """Two start times in ticks of the same process (within ``tolerance`` ticks: conversions between
    clocks round)? A pid reused by another program almost never starts within a tick of the first."""
    return abs(a_ticks - b_ticks) <= tolerance


def ns_to_ticks(ns: int, hz: int = CLK_TCK) -> int:
    return ns * hz // 1_000_000_000


def live_pids() -> list[int]:
    """Process ids (thread group leaders) in /proc now, in ascending order (parents mostly first)."""
    try:
        names = os.listdir("/proc")
    except OSError:
        return []
    return sorted(int(n) for n in names if n.isdigit())


_cgroup2_mount: list[str | None] = []


def cgroup2_mount() -> str | None:
    """Where this process sees the cgroup v2 hierarchy (cached), or None."""
    if not _cgroup2_mount:
        found = None
        try:
            with open("/proc/self/mounts") as fh:
                for line in fh:
                    parts = line.split()
                    if len(parts) > 2 and parts[2] == "cgroup2":
                        found = parts[1]
                        break
        except OSError:
            pass
        _cgroup2_mount.append(found)
    return _cgroup2_mount[0]


def parse_cgroup_path(text: str) -> str | None:
    """The cgroup v2 path (``0::/path``) in /proc/<pid>/cgroup contents, or None (v1-only host)."""
    for line in text.splitlines():
        if line.startswith("0::"):
            return line[3:] or "/"
    return None


def read_cgroup_id(pid: int) -> int:
    """The cgroup v2 id of a process (what ``bpf_get_current_cgroup_id`` returns: the inode number of
    its cgroup directory), or 0 when it cannot be known (no cgroup v2 mount, a path outside our
    cgroup namespace)."""
    mount = cgroup2_mount()
    if mount is None:
        return 0
    try:
        with open(f"/proc/{pid}/cgroup") as fh:
            path = parse_cgroup_path(fh.read())
    except OSError:
        return 0
    if path is None or "/.." in path or path.startswith(".."):
        return 0
    try:
        return os.stat(mount.rstrip("/") + ("" if path == "/" else path)).st_ino
    except OSError:
        return 0
