"""Build the project's images and run them with podman, for the image and cluster tiers.

    from support.podman import build_images, Podman

    tags = build_images()                    # {"backend": "harbor.jbnu.ac.kr/jdevops/watcher-backend:0.1.0", ...}
    with Podman() as pm:                     # every container it started is removed on exit
        c = pm.run(tags["backend"], "backend", "--port", "3000", name="backend", volumes={data: "/app/data"})
        c.logs(); c.exec("id", "-u"); c.restart()

Storage and configuration are the project's (scripts/images/env.sh, under ~/.cache/jcode-watcher), so
the images built by `make images` are the ones the tests run, and a second run only checks the cache.
Containers use the host network (`--network host`): everything the tests reach is on loopback.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

from support.waiting import wait_for as wait_until  # noqa: F401 - the image tests import it from here

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "scripts" / "images"
COMPONENTS = ("backend", "filemon", "procmon", "operator")
REGISTRY = os.environ.get("WATCHER_TEST_REGISTRY", "harbor.jbnu.ac.kr/jdevops")
LABEL = "io.jcode.watcher.test"


def project_version() -> str:
    for line in (ROOT / "pyproject.toml").read_text().splitlines():
        if line.startswith("version = "):
            return line.split('"')[1]
    raise RuntimeError("no version in pyproject.toml")


def container_env() -> dict[str, str]:
    """The environment scripts/images/env.sh exports (its configuration files written)."""
    out = subprocess.run(
        ["bash", "-c", f"source {SCRIPTS / 'env.sh'} >/dev/null && env -0"], capture_output=True, check=True
    )
    env = dict(item.split("=", 1) for item in out.stdout.decode().split("\0") if "=" in item)
    keep = ("CONTAINERS_CONF", "CONTAINERS_STORAGE_CONF", "CONTAINERS_REGISTRIES_CONF", "BUILDAH_ISOLATION")
    return dict(os.environ) | {k: env[k] for k in keep}


def why_no_podman() -> str | None:
    if os.geteuid() != 0:
        return "needs root (rootful podman with host mounts)"
    for tool in ("podman", "buildah"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (scripts/deps/images.sh)"
    return None


def ensure_tracefs() -> None:
    """Mount tracefs at /sys/kernel/tracing on this host if it is not, as systemd does on every node:
    procmon's container has no CAP_SYS_ADMIN to mount it and sees only what the host mounted."""
    if Path("/sys/kernel/tracing/events").is_dir():
        return
    subprocess.run(["mount", "-t", "tracefs", "nodev", "/sys/kernel/tracing"], check=True, capture_output=True)


def image_tag(component: str, version: str | None = None) -> str:
    return f"{REGISTRY}/watcher-{component}:{version or project_version()}"


def build_images(components: tuple[str, ...] = COMPONENTS) -> dict[str, str]:
    """Build (or confirm the cache of) the images; their tags by component."""
    env = container_env() | {"REGISTRY": REGISTRY, "VERSION": project_version()}
    proc = subprocess.run(
        ["bash", str(SCRIPTS / "build.sh"), *components], env=env, capture_output=True, text=True, timeout=1800
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"scripts/images/build.sh failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        )
    return {c: image_tag(c) for c in components}


def podman(
    *args: str, check: bool = True, timeout: float = 120, input: str | None = None
) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        ["podman", *args], env=container_env(), capture_output=True, text=True, timeout=timeout, input=input
    )
    if check and proc.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def image_size(tag: str) -> int:
    return int(podman("image", "inspect", "--format", "{{.Size}}", tag).stdout.strip())


def image_config(tag: str) -> dict:
    return json.loads(podman("image", "inspect", tag).stdout)[0]


class Container:
    def __init__(self, name: str):
        self.name = name

    def logs(self) -> str:
        proc = podman("logs", self.name, check=False)
        return proc.stdout + proc.stderr

    def exec(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
        return podman("exec", self.name, *cmd, check=check)

    def inspect(self, fmt: str) -> str:
        return podman("inspect", "--format", fmt, self.name).stdout.strip()

    def running(self) -> bool:
        return self.inspect("{{.State.Running}}") == "true"

    def restart(self) -> None:
        podman("restart", "--time", "10", self.name, timeout=60)

    def healthcheck(self) -> subprocess.CompletedProcess:
        """Run the image's HEALTHCHECK once (exit 0: healthy)."""
        return podman("healthcheck", "run", self.name, check=False, timeout=60)

    def stop(self) -> None:
        podman("stop", "--time", "10", self.name, check=False, timeout=60)


class Podman:
    """Starts containers for one test and removes every one of them at the end."""

    def __init__(self) -> None:
        self.run_id = uuid.uuid4().hex[:8]
        self.containers: list[Container] = []

    def __enter__(self) -> Podman:
        return self

    def __exit__(self, *exc) -> None:
        self.remove_all()

    def run(
        self,
        image: str,
        *args: str,
        name: str,
        volumes: dict[str | Path, str] | None = None,
        env: dict[str, str] | None = None,
        options: tuple[str, ...] = (),
        network: str = "host",
    ) -> Container:
        full = f"watcher-test-{name}-{self.run_id}"
        cmd = [
            "run",
            "-d",
            "--name",
            full,
            "--label",
            f"{LABEL}={self.run_id}",
            "--network",
            network,
            # no systemd here to drive the timer; the checks run it with `podman healthcheck run`
            "--health-interval",
            "disable",
        ]
        for src, dst in (volumes or {}).items():
            cmd += ["-v", f"{src}:{dst}"]
        for key, value in (env or {}).items():
            cmd += ["-e", f"{key}={value}"]
        cmd += [*options, image, *args]
        podman(*cmd)
        c = Container(full)
        self.containers.append(c)
        return c

    def remove_all(self) -> None:
        for c in self.containers:
            podman("rm", "-f", "--time", "5", c.name, check=False, timeout=60)
        self.containers.clear()

    def leftovers(self) -> list[str]:
        out = podman("ps", "-a", "--filter", f"label={LABEL}={self.run_id}", "--format", "{{.Names}}").stdout
        return out.split()


def build_local_image(name: str) -> str:
    """An image the tests make themselves (scripts/images/<name>.sh: `pause`, the cluster's pod sandbox;
    `student`, the simulated student's gcc and python3); its name."""
    proc = subprocess.run(
        ["bash", str(SCRIPTS / f"{name}.sh")], env=container_env(), capture_output=True, text=True, timeout=600
    )
    if proc.returncode != 0:
        raise RuntimeError(f"scripts/images/{name}.sh failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc.stdout.strip().splitlines()[-1]
