"""Another git revision of this repository, for benchmarks run side by side with it (``--against REV``).

The revision's files are exported once with ``git archive`` into ``~/.cache/jcode-watcher/against/<sha>/tree``
(no worktree is registered in the shared repository, and later runs reuse the export). Its packages run from
there through PYTHONPATH, ahead of this tree's editable install, with this virtual environment's third-party
packages: the two trees then differ in their own code only, which is what a regression check compares.
``hide`` makes some of those packages unimportable for the revision (e.g. httptools and uvloop, which revisions
before they were declared did not install: uvicorn then runs h11 and asyncio, as those revisions' images did).

Also: the machine figures a side-by-side result records (load average at start and end, CPU count), and the
JSON file next to the Markdown section, so a later reader has every run, not only the medians.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "jcode-watcher" / "against"
PACKAGE_DIRS = ("core", "backend", "agents", "operator", "local")  # the folders pyproject's packages live in
HTTP_SPEEDUPS = ("httptools", "uvloop")  # declared after 6543424; uvicorn picks them up by itself


@dataclass(frozen=True)
class Revision:
    name: str  # as given on the command line
    sha: str
    tree: Path
    env: dict[str, str] = field(default_factory=dict)  # added to a child process's environment

    @property
    def short(self) -> str:
        return self.sha[:7]

    def child_env(self) -> dict[str, str]:
        """This process's environment with the revision's packages first on the path."""
        return {**os.environ, **self.env}


TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (/proc): on a shared machine, the figure the other work disturbs
    least (latency is the scheduler's as much as ours)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rev_parse(rev: str) -> str:
    return subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--verify", f"{rev}^{{commit}}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def checkout(rev: str, hide: tuple[str, ...] = ()) -> Revision:
    """The revision exported under the cache (once), and the environment that runs its code."""
    sha = rev_parse(rev)
    folder = CACHE / sha
    tree = folder / "tree"
    if not (folder / "complete").exists():
        # exported into a private folder and renamed, so a run interrupted half-way leaves nothing reusable
        partial = CACHE / f"{sha}.partial-{os.getpid()}"
        shutil.rmtree(partial, ignore_errors=True)
        (partial / "tree").mkdir(parents=True)
        archive = subprocess.Popen(["git", "-C", str(ROOT), "archive", sha], stdout=subprocess.PIPE)
        subprocess.run(["tar", "-x", "-C", str(partial / "tree")], stdin=archive.stdout, check=True)
        if archive.wait() != 0:
            raise SystemExit(f"git archive {sha} failed")
        (partial / "complete").touch()
        shutil.rmtree(folder, ignore_errors=True)
        partial.rename(folder)
    path = [str(tree / d) for d in PACKAGE_DIRS if (tree / d).is_dir()]
    if hide:
        stubs = folder / ("hide-" + "-".join(sorted(hide)))
        stubs.mkdir(exist_ok=True)
        for module in hide:
            (stubs / f"{module}.py").write_text(f"raise ImportError('{module} hidden: {rev} did not install it')\n")
        path.insert(0, str(stubs))
    env = {"PYTHONPATH": os.pathsep.join(path)}
    # the export must be what runs: a stale path or an editable install shadowing it would compare a tree
    # with itself
    where = subprocess.run(
        [sys.executable, "-c", "import watcher_core, watcher_backend; print(watcher_backend.__file__)"],
        env={**os.environ, **env},
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    if not where.startswith(str(tree)):
        raise SystemExit(f"{rev}: watcher_backend imported from {where}, not from {tree}")
    return Revision(rev, sha, tree, env)


def this_tree() -> str:
    """This tree's commit, with a mark when the working tree differs from it."""
    sha = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no", "--", "core", "backend", "agents"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    return sha + ("+changes" if dirty else "")


def machine(load_start: float) -> dict:
    return {
        "nproc": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load_average_start": round(load_start, 2),
        "load_average_end": round(os.getloadavg()[0], 2),
    }


def machine_line(m: dict) -> str:
    return (
        f"Machine: nproc={m['nproc']}, kernel {m['kernel']}, the benchmark's Python {m['python']}, load average "
        f"{m['load_average_start']:.1f} at start and {m['load_average_end']:.1f} at the end (1-minute; the "
        "machine is shared with other work)."
    )


def medians(runs: list[dict[str, float]]) -> dict[str, float]:
    """Per figure, the median over the runs (a figure missing from a run is left out of its median)."""
    keys = [k for k in runs[0]]
    return {k: statistics.median(r[k] for r in runs if k in r) for k in keys}


def write_json(name: str, record: dict) -> Path:
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(record, indent=1) + "\n")
    return path
