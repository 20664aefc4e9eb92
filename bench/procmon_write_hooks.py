"""What a BPF program on the write path costs per system call, by kind of hook, without procmon: the
price floor under bpf_stderr.c. A program making many small system calls runs with each hook attached
in turn (the order turning every round); its CPU time per call is compared with the same calls under
the syscall tracepoints procmon attaches anyway (execve, chdir, exit_group: they put every task on the
kernel's slow syscall path).

    .venv/bin/python bench/procmon_write_hooks.py                   # 15 rounds x 300,000 calls
    .venv/bin/python bench/procmon_write_hooks.py --rounds 9 --calls 200000

Results go to bench/results/procmon.md (section "write_hooks"). Needs root.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from procmon_common import ROOT, build, machine, median, require_root, write_section

sys.path.insert(0, str(ROOT / "agents"))

from watcher_agents.procmon.ebpf import import_bcc  # noqa: E402

# calls N KIND: N calls of one kind (write1: write of 64 B to fd 1, write2: to fd 2, both /dev/null;
# getppid: a system call no hook looks at); prints the CPU time (user+sys) per call in ns.
CALLS_C = r"""
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
int main(int argc, char **argv) {
    long n = atol(argv[1]);
    int null = open("/dev/null", O_WRONLY);
    dup2(null, 1); dup2(null, 2);
    int fd = !strcmp(argv[2], "write1") ? 1 : !strcmp(argv[2], "write2") ? 2 : -1;
    char line[64];
    memset(line, 'x', sizeof line);
    for (long i = 0; i < n; i++) {
        if (fd < 0) getppid();
        else if (write(fd, line, sizeof line) != sizeof line) return 1;
    }
    struct rusage ru; getrusage(RUSAGE_SELF, &ru);
    double cpu = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
    dprintf(3, "%.1f\n", cpu * 1e9 / n);
    return 0;
}
"""

PROGRAMS = r"""
BPF_HASH(capture, u32, u32, 1024);
struct write_args { u64 common; long nr; u64 fd; u64 buf; u64 count; };
int empty(void *ctx) { return 0; }
int raw_empty(struct bpf_raw_tracepoint_args *ctx) { return 0; }
// what bpf_stderr.c does for a write by a process it does not capture
int write_check(struct write_args *args) {
    if (args->fd != 2)
        return 0;
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    return capture.lookup(&tgid) ? 1 : 0;
}
"""
SLOW_PATH = ("syscalls:sys_enter_chdir", "empty")
# label -> hooks ("raw:" = raw tracepoint) ; every one but "none" has the slow path of capture off
HOOKS = {
    "no BPF at all": [],
    "syscall tracepoints of capture off (baseline)": [SLOW_PATH],
    "+ empty program on sys_enter_write": [SLOW_PATH, ("syscalls:sys_enter_write", "empty")],
    "+ bpf_stderr.c's check on sys_enter_write (after)": [SLOW_PATH, ("syscalls:sys_enter_write", "write_check")],
    "+ the same and an empty program on sys_exit_write (before)": [
        SLOW_PATH,
        ("syscalls:sys_enter_write", "write_check"),
        ("syscalls:sys_exit_write", "empty"),
    ],
    "+ empty program on raw_syscalls:sys_enter (every syscall)": [SLOW_PATH, ("raw:sys_enter", "raw_empty")],
}
KINDS = ("write1", "write2", "getppid")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--calls", type=int, default=300_000, help="system calls per measurement")
    args = p.parse_args(argv)
    require_root()
    tmp = Path(tempfile.mkdtemp(prefix="procmon-hooks-"))
    calls = build(CALLS_C, tmp / "calls")
    bpf = import_bcc().BPF(text=PROGRAMS)
    attached: list[str] = []

    def attach(label: str) -> None:
        while attached:
            tp = attached.pop()
            if tp.startswith("raw:"):
                bpf.detach_raw_tracepoint(tp[4:])
            else:
                bpf.detach_tracepoint(tp)
        for tp, fn in HOOKS[label]:
            if tp.startswith("raw:"):
                bpf.attach_raw_tracepoint(tp=tp[4:], fn_name=fn)
            else:
                bpf.attach_tracepoint(tp=tp, fn_name=fn)
            attached.append(tp)

    def measure(kind: str) -> float:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.dup2(w, 3)
            os.execv(str(calls), [str(calls), str(args.calls), kind])
        os.close(w)
        with os.fdopen(r) as out:
            value = float(out.read())
        os.waitpid(pid, 0)
        return value

    ns: dict[tuple[str, str], list[float]] = {}
    labels = list(HOOKS)
    try:
        for rnd in range(args.rounds):
            for label in labels[rnd % len(labels) :] + labels[: rnd % len(labels)]:
                attach(label)
                for kind in KINDS:
                    ns.setdefault((label, kind), []).append(measure(kind))
    finally:
        attach("no BPF at all")
        bpf.cleanup()
    base = labels[1]
    rows = []
    for label in labels:
        cells = []
        for kind in KINDS:
            m = median(ns[(label, kind)])
            extra = m - median(ns[(base, kind)])
            cells.append(f"{m:.0f} ns" + ("" if label == base else f" ({extra:+.0f})"))
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    body = f"""CPU time per system call of a program making {args.calls:,} calls of one kind, with each set of hooks attached in
turn (bcc, no procmon), {args.rounds} rounds with the order turning; medians, in brackets the difference to the
baseline: the syscall tracepoints procmon attaches with the capture off (one empty program on
`sys_enter_chdir` stands for them: any syscall tracepoint puts every task on the slow syscall path).
Machine: {machine()} (shared with other work).
Command: `.venv/bin/python bench/procmon_write_hooks.py --rounds {args.rounds} --calls {args.calls}`

| hooks | write of 64 B to fd 1 | to fd 2 (not captured) | getppid |
|---|---|---|---|
{chr(10).join(rows)}

Any program on a syscall tracepoint, even an empty one, costs about as much per call it sees: the price is
the kernel's (the tracepoint's context, entering BPF), not the program's. bpf_stderr.c's check adds a few ns
to it for a write to another fd, and its hash lookup (tens of ns) for a write to fd 2 by a process it does
not capture. The exit hook it had before cost as much again. A raw tracepoint is no cheaper per call and
sees every system call, not only writes.
"""
    write_section("write_hooks", "Price of a hook on the write path (bench/procmon_write_hooks.py)", body)
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
