#!/usr/bin/python3
"""runc for the test cluster's containerd, on machines whose capability bounding set is smaller than a
real node's (this sandbox has no CAP_SYS_RESOURCE in it, so no process here can hold it).

A real node grants every capability a pod asks for; here runc would refuse the whole container
("unable to apply caps: operation not permitted"). podman silently drops such capabilities; this wrapper
does the same for `runc create`/`runc run`, and says which it dropped on stderr (the shim logs it), so
the manifests under test stay exactly what users apply. Every other call is runc itself.
"""

import json
import os
import sys

CAP_NAMES = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
]


def bounding() -> set[str]:
    for line in open("/proc/self/status"):
        if line.startswith("CapBnd:"):
            mask = int(line.split()[1], 16)
            return {name for bit, name in enumerate(CAP_NAMES) if mask >> bit & 1}
    return set(CAP_NAMES)


def fit_bundle(args: list[str]) -> None:
    bundle = "."
    for i, arg in enumerate(args):
        if arg in ("--bundle", "-b") and i + 1 < len(args):
            bundle = args[i + 1]
        elif arg.startswith("--bundle="):
            bundle = arg.split("=", 1)[1]
    path = os.path.join(bundle, "config.json")
    with open(path) as fh:
        config = json.load(fh)
    caps = config.get("process", {}).get("capabilities") or {}
    allowed, dropped = bounding(), set()
    for kind, names in caps.items():
        kept = [n for n in names if n in allowed]
        dropped |= set(names) - set(kept)
        caps[kind] = kept
    if dropped:
        print(
            f"cluster_runc: dropped {', '.join(sorted(dropped))}: not in this machine's bounding set", file=sys.stderr
        )
        with open(path, "w") as fh:
            json.dump(config, fh)


if __name__ == "__main__":
    args = sys.argv[1:]
    if any(a in ("create", "run") for a in args):
        fit_bundle(args)
    os.execv("/usr/sbin/runc", ["runc", *args])
