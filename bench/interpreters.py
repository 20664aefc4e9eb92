"""The interpreter a benchmark runs the backend on (``--python``): by default the backend image's.

``image``: Debian bookworm's /usr/bin/python3 with the locked packages of docker/locks/backend.txt, as the
backend image has them (docker/Dockerfile), in an environment made once per lock file under
~/.cache/jcode-watcher/bench-python; the tree's own code runs from PYTHONPATH. ``venv``: the interpreter
running the benchmark. They differ: Debian builds its python3 with profile-guided optimisation, and a
python3 built from source without it (pyenv's default, this project's development venv) ran the backend's
Python about 2.5 times slower. A figure measured on ``venv`` understates what the image serves.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IMAGE_PYTHON = "/usr/bin/python3"
BACKEND_LOCK = ROOT / "docker" / "locks" / "backend.txt"
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "jcode-watcher" / "bench-python"
KINDS = ("image", "venv")


def add_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--python",
        choices=KINDS,
        default="image",
        help="the backend's interpreter: image (default), Debian's python3 with the backend image's locked "
        "packages, made once under ~/.cache/jcode-watcher; venv, the one running this script",
    )


def image_python() -> str:
    """An environment like the backend image's, made once per lock file under ~/.cache/jcode-watcher."""
    if not Path(IMAGE_PYTHON).exists():
        raise SystemExit(f"{IMAGE_PYTHON} (Debian's python3, the images' interpreter) is missing; or use --python venv")
    lock = BACKEND_LOCK.read_bytes()
    venv = CACHE / f"backend-{hashlib.sha256(lock).hexdigest()[:16]}"
    python = venv / "bin" / "python"
    if not (venv / ".complete").exists():
        print(f"bench: making the backend image's environment in {venv} (once; about a minute)", flush=True)
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([IMAGE_PYTHON, "-m", "venv", "--without-pip", str(venv)], check=True)
        pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps"]
        subprocess.run([*pip, "--require-hashes", "-r", str(BACKEND_LOCK)], check=True)
        (venv / ".complete").touch()
    return str(python)


def backend_python(kind: str) -> str:
    """The interpreter's path for ``--python KIND``."""
    return image_python() if kind == "image" else sys.executable


def tree_path(tree: Path) -> str:
    """PYTHONPATH that runs a tree's code (the image's environment holds the packages, not the project)."""
    return os.pathsep.join(str(tree / d) for d in ("core", "backend", "agents"))


def this_tree_env(kind: str) -> dict[str, str] | None:
    """The environment this tree's backend needs on ``--python KIND`` (a revision's carries its own path)."""
    return {"PYTHONPATH": tree_path(ROOT)} if kind == "image" else None


def flag(kind: str) -> str:
    """The command line's part that reproduces ``--python KIND``."""
    return " --python venv" if kind == "venv" else ""


def version(python: str) -> str:
    """The interpreter's version, as ``3.11.2``."""
    done = subprocess.run([python, "-c", "import sys; print(sys.version.split()[0])"], capture_output=True, text=True)
    return done.stdout.strip()


def sentence(kind: str, python: str) -> str:
    """What a result says of the interpreter it was measured on (``python``: its path)."""
    if kind == "image":
        return (
            f"The backend ran on Debian's python3 {version(python)} with the packages of docker/locks/backend.txt, "
            "as in the backend image."
        )
    return f"The backend ran on this virtual environment's Python {version(python)} ({sys.executable})."
