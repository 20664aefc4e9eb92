"""Benchmark: single-event requests at many connections (the old API's writes and one-event /api/v1 posts).

The old filemon, procmon and notebook hook post one event per request, with no batching, and many pods
post at once. This starts a real backend (``watcher backend``, SQLite by default) on loopback and drives it
with wrk (Debian's ``wrk``, a C load generator in its own process, so the load generator costs little of
the two cores) at ``--connections`` keep-alive connections for ``--seconds``, with bench/wrk_singles.lua:

* ``old API``: the old agents' writes in turn: a snapshot post, a build log, a run log;
* ``/api/v1``: ``POST /api/v1/events`` with one event (a save, a compile, a run in turn).

Every request is a new event of one of 2,000 students. Reported: requests/s, latency p50/p99 (wrk's),
the backend's CPU per request (from /proc, user + system), and a check that the events stored equal the
requests answered. ``--against REV`` runs the backend of another git revision too (a temporary worktree),
alternating run by run, and reports both side by side. ``--profile`` samples the backend with py-spy
during one run of each kind and prints where its CPU went, by layer. Writes bench/results/backend.md
(sections ``singles`` and ``singles_against``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

import interpreters  # noqa: E402
from _backend_results import write_section  # noqa: E402

from support.backend import run_backend  # noqa: E402

SCRIPT = ROOT / "bench" / "wrk_singles.lua"
HIDDEN: list[str] = []  # modules hidden from the --against revision (it did not install them)
KINDS = {"legacy": "old API writes", "v1": "/api/v1, one event"}
TICKS = os.sysconf("SC_CLK_TCK")
# py-spy from this interpreter's environment (the bench extra installs it there) or else from PATH
PY_SPY = shutil.which("py-spy", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def tree_cpu(pid: int) -> float:
    """User + system CPU so far of a process and its live descendants (``--workers``: the workers)."""
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            total += cpu_seconds(p)
            todo += [int(c) for t in Path(f"/proc/{p}/task").iterdir() for c in (t / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue  # ended meanwhile
    return total


def machine_busy() -> float:
    """CPU seconds every core of the machine spent on anything but idling, so far (/proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / TICKS


def children_cpu() -> float:
    """User + system CPU of the finished children (wrk, once waited for)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def stored_events(backend) -> int:
    with backend.client("read") as http:
        return int(http.get("/api/v1/status").json()["events_total"])


def wrk(url: str, kind: str, token: str, tag: str, seconds: float, connections: int, threads: int) -> dict:
    cmd = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(SCRIPT),
        url,
        "--",
        kind,
        token,
        tag,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"wrk failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


@contextlib.contextmanager
def profiled(pid: int, out: Path, enabled: bool):
    """py-spy record of the backend (raw collapsed stacks) while the block runs."""
    if not enabled:
        yield
        return
    spy = subprocess.Popen(
        [
            PY_SPY or "py-spy",
            "record",
            "--gil",
            "--subprocesses",
            "--nonblocking",
            "--pid",
            str(pid),
            "--format",
            "raw",
            "--rate",
            "250",
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(1)  # attached
        yield
    finally:
        spy.send_signal(2)
        spy.wait(30)


def run_once(args, tag: str, env: dict | None, profile_dir: Path | None) -> dict[str, dict[str, float]]:
    """One fresh server and database; each kind measured once, in turn."""
    out: dict[str, dict[str, float]] = {}
    workers = args.workers if env is None else args.against_workers
    if env is None:
        env = interpreters.this_tree_env(args.python)
    with tempfile.TemporaryDirectory() as tmp:
        backend = run_backend(
            Path(tmp),
            python=args.interpreter,
            env=env,
            args=[*args.backend_args, *(["--workers", str(workers)] if workers > 1 else [])],
        )
        try:
            pid = backend.process.pid
            token = backend.tokens["ingest"]
            for kind in KINDS:  # warm-up: imports, caches, the first rows of every table
                wrk(backend.url, kind, token, f"warm{tag}", 2, args.connections, args.threads)
            for kind in KINDS:
                before = stored_events(backend)
                cpu0, busy0, wrk0, load0 = tree_cpu(pid), machine_busy(), children_cpu(), os.getloadavg()[0]
                prof = profile_dir / f"{kind}.txt" if profile_dir else None
                with profiled(pid, prof, prof is not None) if prof else contextlib.nullcontext():
                    r = wrk(backend.url, kind, token, f"{kind}{tag}", args.seconds, args.connections, args.threads)
                cpu = tree_cpu(pid) - cpu0
                busy, wrk_cpu = machine_busy() - busy0, children_cpu() - wrk0
                stored = stored_events(backend) - before
                answered = r["requests"] - r["non2xx"]
                errors = r["non2xx"] + r["connect_errors"] + r["read_errors"] + r["write_errors"] + r["timeouts"]
                # wrk stops with up to one request in flight per connection: stored but not counted
                if not (answered <= stored <= answered + args.connections) or errors:
                    raise SystemExit(f"{kind}: {answered} answered, {stored} stored, wrk errors {r}")
                out[kind] = {
                    "requests/s": r["requests"] / r["seconds"],
                    "p50 ms": r["p50_us"] / 1000,
                    "p99 ms": r["p99_us"] / 1000,
                    "cpu ms/request": cpu * 1000 / r["requests"],
                    # what the load average cannot say: how much of the machine the backend got, and who
                    # had the rest (wrk, and everything else on the machine: other people's work)
                    "requests per backend cpu-second": r["requests"] / cpu if cpu else float("nan"),
                    "backend cores": cpu / r["seconds"],
                    "wrk cores": wrk_cpu / r["seconds"],
                    "other cores": max(0.0, (busy - cpu - wrk_cpu) / r["seconds"]),
                    "load average": (load0 + os.getloadavg()[0]) / 2,
                }
        finally:
            backend.stop()
    return out


# ------------------------------------------------------------------------------------------- profile

# Where a sample's time went: the innermost frame of ours or of a library that names a layer, read from
# the leaf up. The first rule that matches a frame decides.
LAYERS = [
    ("sqlite3: statements and commit", ("sqlite3", "do_commit", "do_execute", "do_executemany")),
    ("psycopg", ("psycopg",)),
    ("rollups at ingest", ("watcher_backend/rollups.py",)),
    ("store.ingest (Python)", ("watcher_backend/store.py",)),
    ("SQLAlchemy (sessions, statements)", ("sqlalchemy/",)),
    ("metrics (prometheus_client)", ("prometheus_client", "watcher_backend/metrics.py")),
    ("pydantic validation and JSON", ("pydantic", "json/", "watcher_core/wire.py")),
    ("old API: adapter, paths, times", ("watcher_backend/legacy/", "watcher_core/identity.py", "pathlib.py")),
    ("events route", ("routers/events.py",)),
    ("auth", ("watcher_backend/auth.py", "fastapi/security", "hmac.py")),
    ("group commit hand-off", ("watcher_backend/ingest_writer.py",)),
    ("ingest lane dispatch", ("watcher_backend/ingest_lane.py",)),
    ("thread hand-offs and locks", ("anyio/", "threading.py", "concurrent/", "fastapi/concurrency.py")),
    ("FastAPI routing, dependencies, encoding", ("fastapi/",)),
    ("Starlette middleware, requests, responses", ("starlette/", "watcher_backend/app.py")),
    ("HTTP protocol (uvicorn, h11, httptools)", ("uvicorn/", "h11/", "httptools")),
    ("event loop (asyncio, uvloop)", ("asyncio/", "uvloop", "selectors.py")),
]


def layer_of(stack: str) -> str:
    frames = stack.split(";")
    for frame in reversed(frames):
        for name, needles in LAYERS:
            if any(n in frame for n in needles):
                return name
    return "other"


def summarise_profile(path: Path) -> list[tuple[str, float]]:
    """Share of the backend's busy samples per layer (idle threads waiting on a lock or a queue left out)."""
    counts: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        leaf = stack.split(";")[-1]
        if any(w in leaf for w in ("wait (threading.py", "_worker (concurrent", "select (selectors.py", "poll")):
            continue  # a thread waiting, not working
        counts[layer_of(stack)] += int(n)
    total = sum(counts.values()) or 1
    return [(name, n / total) for name, n in counts.most_common()]


# --------------------------------------------------------------------------------------------- main


def medians(runs: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    return {k: {m: statistics.median(r[k][m] for r in runs) for m in runs[0][k]} for k in runs[0]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=20, help="measured seconds per kind and run (default 20)")
    p.add_argument("--connections", type=int, default=32, help="concurrent keep-alive connections (default 32)")
    p.add_argument("--threads", type=int, default=1, help="wrk threads (default 1: one is far from busy)")
    p.add_argument("--repeat", type=int, default=3, help="runs, each on a fresh server and database (default 3)")
    p.add_argument("--against", metavar="REV", help="also run this git revision's backend, alternating run by run")
    p.add_argument("--profile", action="store_true", help="py-spy the backend during the last run of each tree")
    p.add_argument("--keep-profiles", type=Path, metavar="DIR", help="with --profile: keep py-spy's stacks here")
    p.add_argument("--workers", type=int, default=1, help="backend worker processes (watcher backend --workers)")
    p.add_argument(
        "--against-workers",
        type=int,
        default=1,
        help="worker processes of the --against revision (default 1: revisions before --workers have one)",
    )
    p.add_argument("--backend-arg", dest="backend_args", action="append", default=[], help="extra flag for it")
    interpreters.add_argument(p)
    p.add_argument("--no-write", action="store_true", help="do not write bench/results/backend.md")
    args = p.parse_args(argv)
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    if args.profile and PY_SPY is None:
        raise SystemExit("py-spy is not installed (pip install py-spy)")
    args.interpreter = interpreters.backend_python(args.python)
    load = os.getloadavg()[0]
    trees: dict[str, dict | None] = {"this tree": None}
    with contextlib.ExitStack() as stack:
        if args.against:
            trees[args.against] = stack.enter_context(revision_env(args.against))
        runs: dict[str, list] = {name: [] for name in trees}
        profile_dir = Path(stack.enter_context(tempfile.TemporaryDirectory())) if args.profile else None
        for i in range(args.repeat):
            for name, env in trees.items():
                prof = profile_dir / name.replace(" ", "_") if profile_dir and i == args.repeat - 1 else None
                if prof:
                    prof.mkdir()
                runs[name].append(run_once(args, f"r{i}", env, prof))
                print(f"run {i + 1}, {name}: {json.dumps(runs[name][-1])}", flush=True)
        profiles = {}
        for name in trees if profile_dir else ():
            folder = profile_dir / name.replace(" ", "_")
            profiles[name] = {kind: summarise_profile(folder / f"{kind}.txt") for kind in KINDS}
            if args.keep_profiles:
                shutil.copytree(folder, args.keep_profiles / folder.name, dirs_exist_ok=True)
    report(args, {name: medians(r) for name, r in runs.items()}, profiles, load, runs)
    return 0


@contextlib.contextmanager
def revision_env(rev: str):
    """The environment that runs another revision's backend from a temporary worktree, with the packages of
    this virtual environment minus the HTTP parser and event loop if its pyproject.toml did not install them
    (httptools, uvloop: uvicorn would pick them up by itself)."""
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "tree"
        hide = Path(tmp) / "hide"
        hide.mkdir()
        declared = subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{rev}:pyproject.toml"], capture_output=True, text=True
        ).stdout
        for module in ("httptools", "uvloop"):
            if module not in declared:
                HIDDEN.append(module)
                (hide / f"{module}.py").write_text(f"raise ImportError('{module} hidden: {rev} did not install it')\n")
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), rev], check=True)
        try:
            yield {"PYTHONPATH": os.pathsep.join([str(hide), interpreters.tree_path(tree)])}
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False)


METRICS = {  # figure -> cell format; requests/s in bold
    "requests/s": "**{:,.0f}**",
    "p50 ms": "{:.2f}",
    "p99 ms": "{:.2f}",
    "cpu ms/request": "{:.2f}",
    "requests per backend cpu-second": "{:,.0f}",
    "backend cores": "{:.2f}",
    "wrk cores": "{:.2f}",
    "other cores": "{:.2f}",
    "load average": "{:.1f}",
}


def report(args, med: dict[str, dict[str, dict[str, float]]], profiles: dict, load: float, runs: dict) -> None:
    names = list(med)
    command = (
        f".venv/bin/python bench/backend_singles.py --seconds {args.seconds:g} --connections {args.connections} "
        f"--repeat {args.repeat}"
        + (f" --workers {args.workers}" if args.workers > 1 else "")
        + (f" --against {args.against}" if args.against else "")
        + (f" --against-workers {args.against_workers}" if args.against and args.against_workers > 1 else "")
        + interpreters.flag(args.python)
        + (" --profile" if args.profile else "")
    )
    lines = [
        f"Single-event requests at {args.connections} connections: wrk (Debian's, C, {args.threads} thread) on "
        f"the same machine, {args.seconds:g} s per kind and run, medians of {args.repeat} runs"
        + (" alternating between the trees" if len(names) > 1 else "")
        + ", each on a fresh server and SQLite database (WAL). Every request is a new event; the events stored "
        "were checked to equal the requests answered.",
        f"Machine: nproc={os.cpu_count()}, kernel {platform.release()}, load "
        f"average {load:.1f} at start and {os.getloadavg()[0]:.1f} at the end (shared with other work).",
        f"Command: `{command}`",
        "",
        "| requests | " + " | ".join(names) + (" | ratio |" if len(names) > 1 else ""),
        "|---|" + "---|" * len(names) + ("---|" if len(names) > 1 else ""),
    ]
    for kind, label in KINDS.items():
        for metric, fmt in METRICS.items():
            values = [med[n][kind][metric] for n in names]
            cells = [fmt.format(v) for v in values]
            ratio = "" if len(values) < 2 else f" | {values[0] / values[1]:.2f}" if values[1] else " | –"
            lines.append(f"| {label}: {metric} | " + " | ".join(cells) + ratio + " |")
    lines += [
        "",
        "Target: >= 2,000 requests/s and p99 <= 50 ms at 32 connections, for both. CPU per request is the "
        "backend process's user + system time over the run divided by the requests: the least noisy figure "
        "on a shared machine; requests per backend CPU-second is its inverse. Cores are CPU seconds per "
        "second of the run: the backend process's, wrk's, and the rest of the machine's busy time (/proc/stat) "
        "beyond those two, i.e. other work sharing the cores; load average is the 1-minute figure at the "
        "run's start and end, averaged.",
    ]
    here = med[names[0]]
    met = {k: here[k]["requests/s"] >= 2000 and here[k]["p99 ms"] <= 50 for k in KINDS}
    lines.append(
        "Target on this run: "
        + "; ".join(f"{KINDS[k]} {'met' if met[k] else 'not met'}" for k in KINDS)
        + ". With a core of its own, at the CPU per request measured here, one backend process would serve "
        + " and ".join(f"{here[k]['requests per backend cpu-second']:,.0f}/s ({KINDS[k]})" for k in KINDS)
        + ": a projection from the CPU it used, not a measured rate (it assumes the CPU per request does not "
        "change when the backend runs alone, and says nothing of p99)."
    )
    backend_version = interpreters.version(args.interpreter)
    lines.append(interpreters.sentence(args.python, args.interpreter))
    if args.against:
        lines.append(
            f"{args.against} ran with the same interpreter and packages"
            + (f" but without {' and '.join(HIDDEN)} (hidden from it), as its image was built." if HIDDEN else ".")
        )
    if args.workers > 1:
        lines.append(
            f"This tree ran `watcher backend --workers {args.workers}`: {args.workers} server processes on one port; "
            "its CPU is theirs and their parent's."
        )
    if args.against and args.against_workers > 1:
        lines.append(f"{args.against} ran `watcher backend --workers {args.against_workers}` too.")
    if profiles:
        lines += [
            "",
            "Where the backend's CPU went (py-spy --gil, 250 samples/s, during the last run of each tree: each "
            "sample counts for the innermost layer of its stack; sqlite3's C code runs without the GIL, so the "
            "database's own work is under-counted here and shows in the CPU per request):",
            "",
            "| layer | " + " | ".join(f"{KINDS[k]}, {n}" for n in profiles for k in KINDS) + " |",
            "|---|" + "---|" * (len(profiles) * len(KINDS)),
        ]
        layers = [name for name, _ in LAYERS] + ["other"]
        for layer in layers:
            cells = [dict(profiles[n][k]).get(layer, 0.0) for n in profiles for k in KINDS]
            if max(cells) >= 0.005:
                lines.append(f"| {layer} | " + " | ".join(f"{c:.0%}" for c in cells) + " |")
    print("\n".join(lines))
    if not args.no_write:
        key = "singles_against" if args.against else "singles"
        (Path(__file__).resolve().parent / "results" / f"{key}.json").write_text(
            json.dumps(
                {
                    "benchmark": "bench/backend_singles.py",
                    "command": command,
                    "machine": {
                        "nproc": os.cpu_count(),
                        "kernel": platform.release(),
                        "backend_python": f"{args.python}: {backend_version}",
                        "load_average_start": round(load, 2),
                        "load_average_end": round(os.getloadavg()[0], 2),
                    },
                    "runs": runs,
                    "medians": med,
                },
                indent=1,
            )
            + "\n"
        )
        title = "Single-event requests at many connections" + (
            f", side by side with {args.against}" if args.against else ""
        )
        write_section(key, f"{title} (bench/backend_singles.py)", "\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
