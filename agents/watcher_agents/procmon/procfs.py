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


def read_cmdline(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            raw = fh.read()
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
    """

    def __init__(self, max_entries: int = 4096) -> None:
        self._cache: OrderedDict[int, str] = OrderedDict()
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
        if cached is not None:
            return cached
        if ino == self._own_ino:
            name = os.uname().nodename
        else:
            name = self._via_setns(pid) or self._via_root_file(pid) or self._via_environ(pid)
        if name and name.startswith(identity.POD_NAME_PREFIX):
            with self._lock:
                self._cache[ino] = name
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
