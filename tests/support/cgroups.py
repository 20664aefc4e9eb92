"""Simulated student containers need a cgroup v2 hierarchy: where it is mounted, if anywhere. A fork bomb
needs a pids limit: ``pids_limit``."""

import contextlib
import os
import signal
import time


def cgroup2_root() -> str | None:
    with open("/proc/mounts") as fh:
        for line in fh:
            parts = line.split()
            if len(parts) > 2 and parts[2] == "cgroup2":
                return parts[1]
    return None


class PidsLimit:
    """A cgroup of the pids controller with ``pids.max`` set: a fork bomb inside cannot hurt the machine."""

    def __init__(self, path: str):
        self.path = path
        self.procs = f"{path}/cgroup.procs"

    def refused(self) -> int:
        """Forks refused because of ``pids.max`` (the ``max`` line of ``pids.events``)."""
        with open(f"{self.path}/pids.events") as fh:
            for line in fh:
                key, _, value = line.partition(" ")
                if key == "max":
                    return int(value)
        return 0


def pids_root() -> str | None:
    """Where the pids controller is: the cgroup v2 root if it offers pids, else a v1 pids hierarchy."""
    with open("/proc/mounts") as fh:
        mounts = [line.split() for line in fh]
    for parts in mounts:
        if len(parts) > 3 and parts[2] == "cgroup2":
            try:
                with open(f"{parts[1]}/cgroup.controllers") as fh:
                    if "pids" in fh.read().split():
                        return parts[1]
            except OSError:
                pass
    for parts in mounts:
        if len(parts) > 3 and parts[2] == "cgroup" and "pids" in parts[3].split(","):
            return parts[1]
    return None


@contextlib.contextmanager
def pids_limit(name: str, max_pids: int):
    """A fresh pids cgroup holding at most ``max_pids`` tasks; every task left in it is killed at the end."""
    root = pids_root()
    if root is None:
        raise RuntimeError("no pids cgroup controller on this machine (mount cgroup2 or a v1 pids hierarchy)")
    path = f"{root}/{name}"
    os.mkdir(path)
    try:
        with open(f"{path}/pids.max", "w") as fh:
            fh.write(str(max_pids))
        yield PidsLimit(path)
    finally:
        for _ in range(100):
            with open(f"{path}/cgroup.procs") as fh:
                pids = [int(p) for p in fh.read().split()]
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.05)
        os.rmdir(path)
