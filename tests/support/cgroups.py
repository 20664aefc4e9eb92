"""Simulated student containers need a cgroup v2 hierarchy: where it is mounted, if anywhere."""


def cgroup2_root() -> str | None:
    with open("/proc/mounts") as fh:
        for line in fh:
            parts = line.split()
            if len(parts) > 2 and parts[2] == "cgroup2":
                return parts[1]
    return None
