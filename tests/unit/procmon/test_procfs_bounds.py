"""What procmon reads of a process from /proc is bounded, whatever the process: a real child with 5 MiB of
argv (the kernel's 128 KiB per argument, 40 of them, under a larger stack limit)."""

from __future__ import annotations

import resource
import subprocess
import sys

from watcher_agents.procmon import procfs


def test_a_huge_cmdline_is_read_only_up_to_the_bound():
    def bigger_stack():
        resource.setrlimit(resource.RLIMIT_STACK, (64 << 20, 64 << 20))

    argv = [sys.executable, "-c", "import time; time.sleep(30)", *(["A" * 131071] * 40)]
    child = subprocess.Popen(argv, preexec_fn=bigger_stack)
    try:
        with open(f"/proc/{child.pid}/cmdline", "rb") as fh:
            assert len(fh.read()) > 5_000_000  # the whole of it is there to read
        got = procfs.read_cmdline(child.pid, 4097)
        assert got[:3] == argv[:3]
        assert sum(len(a) + 1 for a in got) <= 4097 + 1
        assert sum(len(a) + 1 for a in procfs.read_cmdline(child.pid)) <= procfs.CMDLINE_MAX_BYTES + 1
    finally:
        child.kill()
        child.wait()
