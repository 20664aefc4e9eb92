"""Storm: N saves spread over S student directories within D seconds, filemon + the real backend running.

Measures: time from the last save until the last one is queryable in the backend; p50/p99 latency from
each save to its record being stored (the backend's received_at, same machine clock); filemon's CPU
seconds per 1,000 events (from /proc); and checks every saved version is recorded exactly once.
``--against REV`` runs REV's filemon and backend (bench/against.py) and this tree's in turn, storm by storm,
each on fresh folders and a fresh database, and reports the medians side by side (section storm_against_<REV>).

    .venv/bin/python bench/filemon_storm.py [--saves 10000 --students 500 --seconds 10]
    .venv/bin/python bench/filemon_storm.py --against REV [--repeat 3]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

import against
from filemon_common import Filemon, cpu_seconds, machine, write_section

from support.backend import run_backend  # noqa: E402

PREFIX = "filemon-storm-"  # temp dirs of this benchmark (removed at the end)


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def parse_args(argv=None):
    ap = argparse.ArgumentParser(
        prog="bench/filemon_storm.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--saves", type=int, default=10_000)
    ap.add_argument("--students", type=int, default=500)
    ap.add_argument("--files", type=int, default=4, help="files per student (each saved saves/(students*files) times)")
    ap.add_argument("--seconds", type=float, default=10.0, help="spread the saves over this long")
    ap.add_argument("--debounce", type=float, default=0.3)
    ap.add_argument(
        "--against",
        metavar="REV",
        help="storms with REV's filemon and backend and this tree's in turn; medians side by side",
    )
    ap.add_argument(
        "--tree",
        metavar="REV",
        help="with --against: run REV in place of this tree (e.g. a midpoint, to tell which commits made a difference)",
    )
    ap.add_argument("--repeat", type=int, default=3, help="with --against: storms per tree (default 3)")
    ap.add_argument(
        "--as-built",
        action="store_true",
        help="with --against: hide httptools and uvloop from REV's backend (as its image was built); by default "
        "both trees run with the same packages, so only their code differs",
    )
    ap.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="py-spy filemon and the backend during each storm (raw stacks in DIR) and print where their CPU "
        "went, by module; a profiled storm's figures are not comparable (sampling costs CPU), so use "
        "it apart from a measuring run",
    )
    ap.add_argument("--render", type=Path, metavar="JSON", help=argparse.SUPPRESS)  # a saved run, re-rendered
    ap.add_argument("--no-write", action="store_true", help="do not update bench/results/filemon.md")
    return ap.parse_args(argv)


def py_spy() -> str:
    local = Path(sys.executable).parent / "py-spy"
    found = str(local) if local.exists() else shutil.which("py-spy")
    if not found:
        raise SystemExit("py-spy is not installed (pip install py-spy)")
    return found


def spy(pid: int, out: Path) -> subprocess.Popen:
    """py-spy record of a process's busy threads (idle ones left out), raw collapsed stacks."""
    return subprocess.Popen(
        [py_spy(), "record", "--nonblocking", "--pid", str(pid), "--format", "raw", "--rate", "100", "-o", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def where(stacks: Path, top: int = 12) -> list[tuple[str, float]]:
    """Share of the samples per innermost frame's module (file name, with its package folder)."""
    counts: Counter[str] = Counter()
    for line in stacks.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        frame = stack.split(";")[-1]  # "function (path/to/module.py:line)"
        path = frame.rsplit("(", 1)[-1].split(":", 1)[0]
        counts["/".join(Path(path).parts[-2:])] += int(n)
    total = sum(counts.values()) or 1
    return [(name, n / total) for name, n in counts.most_common(top)]


def storm(args, env: dict | None = None, profile: Path | None = None) -> dict[str, float]:
    """One storm on fresh folders and a fresh database; ``env`` runs another revision (its PYTHONPATH);
    ``profile``: py-spy both processes during the storm, stacks in profile/{filemon,backend}.txt."""
    tmp = Path(tempfile.mkdtemp(prefix=PREFIX))
    ws = tmp / "ws"
    names = [f"f{i}.c" if i % 2 == 0 else f"m{i}.py" for i in range(args.files)]
    students = [("bench", "1", f"{2024000000 + i}") for i in range(args.students)]
    for st in students:
        (ws / "-".join(st) / "hw1").mkdir(parents=True)
    slots = [(st, n) for st in students for n in names]
    per_file = max(1, args.saves // len(slots))
    total = per_file * len(slots)
    print(
        f"storm: {total} saves = {len(slots)} files x {per_file}, over {args.seconds:.0f} s "
        f"({total / args.seconds:.0f} saves/s); machine {machine()}",
        flush=True,
    )

    try:
        with run_backend(tmp, env=env) as backend:
            fm = Filemon(
                ws,
                tmp / "state",
                backend,
                tmp / "filemon.log",
                extra=["--debounce", str(args.debounce)],
                env=env,
            ).start()
            try:
                spies = []
                if profile:
                    profile.mkdir(parents=True, exist_ok=True)
                    spies = [
                        spy(fm.proc.pid, profile / "filemon.txt"),
                        spy(backend.process.pid, profile / "backend.txt"),
                    ]
                    time.sleep(1)  # attached
                cpu0 = cpu_seconds(fm.proc.pid)
                backend_cpu0 = cpu_seconds(backend.process.pid)
                saved: dict[str, float] = {}  # sha -> wall time the save finished
                interval = args.seconds / total
                t0 = time.time()
                for k in range(total):
                    # round-robin over files: each file is saved every len(slots)*interval seconds
                    st, name = slots[k % len(slots)]
                    version = k // len(slots)
                    data = (f"// {st[2]} {name} version {version}\n" + "int x = 0;\n" * 60).encode()
                    target = t0 + k * interval
                    delay = target - time.time()
                    if delay > 0:
                        time.sleep(delay)
                    with open(ws / "-".join(st) / "hw1" / name, "wb") as fh:
                        fh.write(data)
                    saved[hashlib.sha256(data).hexdigest()] = time.time()
                last_save = time.time()
                write_span = last_save - t0
                print(f"wrote {total} saves in {write_span:.1f} s", flush=True)

                with backend.client("read") as http:
                    # until every save is stored, or nothing new arrived for 15 s (a version overwritten before
                    # filemon read it cannot arrive; it is counted as missing below)
                    last_count, all_queryable = -1, time.time()
                    while time.time() - all_queryable < 15:
                        n = http.get("/api/v1/status").json()["events_by_type"].get("file.save", 0)
                        if n != last_count:
                            last_count, all_queryable = n, time.time()
                        if n >= total:
                            break
                        time.sleep(0.05)
                drain = all_queryable - last_save
                cpu = cpu_seconds(fm.proc.pid) - cpu0
                backend_cpu = cpu_seconds(backend.process.pid) - backend_cpu0
                for one in spies:
                    one.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
                    one.wait(60)

                # per-save latency and exactly-once check from the stored records
                latencies = []
                recorded = 0
                dup = 0
                with backend.client("read") as http:
                    for st in students:
                        url = f"/api/v1/courses/{st[0]}/sections/{st[1]}/assignments/hw1/students/{st[2]}/timeline"
                        cursor, seen = None, set()
                        while True:
                            params = {"limit": 1000, **({"cursor": cursor} if cursor else {})}
                            doc = http.get(url, params=params).json()
                            for ev in doc["events"]:
                                if ev["type"] != "file.save":
                                    continue
                                recorded += 1
                                if ev["sha256"] in seen:
                                    dup += 1
                                seen.add(ev["sha256"])
                                if ev["sha256"] in saved:
                                    stored = datetime.fromisoformat(ev["received_at"]).timestamp()
                                    latencies.append(stored - saved[ev["sha256"]])
                            cursor = doc.get("next_cursor")
                            if not cursor:
                                break
                missing = total - len(latencies)
            finally:
                fm.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {
        "saves": total,
        "files": len(slots),
        "per_file": per_file,
        "write_span_s": write_span,
        "drain_s": drain,
        "p50_s": statistics.median(latencies),
        "p99_s": percentile(latencies, 99),
        "filemon_cpu_s_per_1000": cpu / (recorded / 1000) if recorded else float("nan"),
        "backend_cpu_s_per_1000": backend_cpu / (recorded / 1000) if recorded else float("nan"),
        "recorded": recorded,
        "missing": missing,
        "twice": dup,
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.render:
        return rerender(args.render)
    if (args.profile or args.tree) and not args.against:
        raise SystemExit("--profile and --tree go with --against")
    if args.against:
        return main_against(args)
    r = storm(args)
    total, write_span = r["saves"], r["write_span_s"]
    lines = [
        f"Workload: {total:,} saves ({r['files']:,} files in {args.students} student directories, each saved "
        f"{r['per_file']}x, ~1.5 KB each), written in {write_span:.1f} s ({total / write_span:.0f} saves/s) by one "
        f"writer; debounce {args.debounce} s; filemon as `watcher filemon` (8 workers) and the backend "
        "(SQLite) on the same machine.",
        f"Machine: {machine()}.",
        f"Command: `.venv/bin/python bench/filemon_storm.py --saves {args.saves} --students {args.students} "
        f"--files {args.files} --seconds {args.seconds:g}`",
        "",
        "| figure | value | target |",
        "|---|---|---|",
        f"| last save -> all queryable | **{r['drain_s']:.2f} s** | <= 5 s (old system: ~120 snapshots/s, "
        f"~{total / 120:.0f} s) |",
        f"| save -> stored latency p50 | {r['p50_s']:.2f} s | |",
        f"| save -> stored latency p99 | **{r['p99_s']:.2f} s** | <= debounce + 1 s = {args.debounce + 1:.1f} s |",
        f"| filemon CPU per 1,000 events | {r['filemon_cpu_s_per_1000']:.2f} s | |",
        f"| versions recorded / saved | {r['recorded']:,} / {total:,} (missing {r['missing']}, twice {r['twice']}) "
        "| all, none twice |",
    ]
    body = "\n".join(lines)
    print(body)
    if not args.no_write:
        write_section("storm", "Storm: saves to queryable (bench/filemon_storm.py)", body)
    return 0 if r["missing"] == 0 and r["twice"] == 0 else 1


FIGURES = [  # (key, label, format)
    ("drain_s", "last save -> all queryable", "{:.2f} s"),
    ("p50_s", "save -> stored latency p50", "{:.2f} s"),
    ("p99_s", "save -> stored latency p99", "{:.2f} s"),
    ("recorded", "versions recorded (of the saves written)", "{:,.0f}"),
    ("filemon_cpu_s_per_1000", "filemon CPU per 1,000 versions recorded", "{:.3f} s"),
    ("filemon_cpu_s_per_1000_written", "filemon CPU per 1,000 saves written", "{:.3f} s"),
    ("backend_cpu_s_per_1000", "backend CPU per 1,000 versions recorded", "{:.3f} s"),
    ("write_span_s", "the writer's span (the storm as written)", "{:.1f} s"),
]


def derived(run: dict[str, float]) -> dict[str, float]:
    """A storm's figures with filemon's CPU per save written too: on a busy machine filemon reads a file
    after it was saved again more often, so fewer versions are recorded for the same inotify work, and the
    CPU per recorded version rises with the load, not with the code."""
    return {**run, "filemon_cpu_s_per_1000_written": run["filemon_cpu_s_per_1000"] * run["recorded"] / run["saves"]}


def main_against(args) -> int:
    load = os.getloadavg()[0]
    hide = against.HTTP_SPEEDUPS if args.as_built else ()
    rev = against.checkout(args.against, hide=hide)
    section = f"storm_{args.tree}_against_{args.against}" if args.tree else f"storm_against_{args.against}"
    mine = against.this_tree()  # once: a commit made while it runs must not rename the column
    here, first_env = f"this tree ({mine})", None
    if args.tree:
        first = against.checkout(args.tree, hide=hide)
        mine, here, first_env = first.sha[:7], args.tree, first.env
    trees = {here: first_env, args.against: rev.env}
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
    for i in range(args.repeat):
        for name, env in trees.items():
            profile = args.profile / ("first" if name == here else "second") if args.profile else None
            runs[name].append(storm(args, env, profile if i == args.repeat - 1 else None))
            print(f"run {i + 1}, {name}: " + ", ".join(f"{k} {v:.3f}" for k, v in runs[name][-1].items()), flush=True)
    m = against.machine(load)
    command = (
        f".venv/bin/python bench/filemon_storm.py --saves {args.saves} --students {args.students} "
        f"--files {args.files} --seconds {args.seconds:g} --repeat {args.repeat}"
        + (f" --tree {args.tree}" if args.tree else "")
        + f" --against {args.against}"
        + (" --as-built" if args.as_built else "")
    )
    if not args.profile and not args.no_write:
        against.write_json(
            section,
            {
                "benchmark": "bench/filemon_storm.py --against",
                "command": command,
                "trees": {here: mine, args.against: rev.sha},
                "machine": m,
                "runs": runs,
            },
        )
    body = render(args, here, mine, rev.short, section, m, command, runs)
    print(body)
    if args.profile:
        return 0  # sampled: not figures to record
    if not args.no_write:
        write_section(
            section,
            f"Storm{' of ' + args.tree if args.tree else ''} side by side with {args.against} "
            "(bench/filemon_storm.py --against)",
            body,
        )
    complete = all(r["missing"] == 0 and r["twice"] == 0 for rs in runs.values() for r in rs)
    return 0 if complete else 1


def render(args, here: str, mine: str, short: str, section: str, m: dict, command: str, runs: dict) -> str:
    """The section's text from the storms' figures (also from a saved JSON file: --render)."""
    trees = list(runs)
    med = {name: against.medians([derived(r) for r in rs]) for name, rs in runs.items()}
    packages = (
        f"{args.against}'s backend without httptools and uvloop (hidden from it, as its image was built)"
        if args.as_built
        else "both trees with the same virtual environment's packages, so only their code differs"
    )
    lines = [
        f"{'This tree' if not args.tree else args.tree} ({mine}) side by side with {args.against} ({short}): "
        f"{args.repeat} storms "
        f"per tree alternating, each {runs[here][0]['saves']:,} saves ({runs[here][0]['files']:,} files in "
        f"{args.students} student directories) over {args.seconds:g} s with a fresh filemon and backend (SQLite) of "
        f"the tree, debounce {args.debounce} s; medians over the storms; {packages}.",
        against.machine_line(m),
        f"Command: `{command}`",
        "",
        f"| figure | {here} | {args.against} | ratio |",
        "|---|---|---|---|",
    ]
    for key, label, fmt in FIGURES:
        a, b = med[here][key], med[args.against][key]
        lines.append(f"| {label} | {fmt.format(a)} | {fmt.format(b)} | {a / b:.2f} |")
    lines.append(
        "| every version recorded once, every storm | "
        + " | ".join("yes" if all(r["missing"] == 0 and r["twice"] == 0 for r in runs[n]) else "**no**" for n in trees)
        + " | |"
    )
    lines += [
        "",
        f"Ratio: {'this tree' if not args.tree else args.tree} / {args.against} (below 1 is less). Per-storm "
        f"figures: bench/results/{section}.json.",
    ]
    if args.profile:
        lines += ["", f"Where the CPU went in the last storm of each tree (py-spy, busy threads, {args.profile}):"]
        for process in ("filemon", "backend"):
            for name in trees:
                folder = args.profile / ("first" if name == here else "second")
                shares = where(folder / f"{process}.txt")
                lines.append(f"- {process}, {name}: " + ", ".join(f"{m} {v:.0%}" for m, v in shares))
    return "\n".join(lines)


def rerender(path: Path) -> int:
    """Rewrite a side-by-side section from its JSON file (after a change of what the table shows)."""
    import json

    saved = json.loads(path.read_text())
    args = parse_args(saved["command"].split()[2:])
    section = path.stem
    (here, mine), (_, sha) = saved["trees"].items()
    body = render(args, here, mine, sha[:7], section, saved["machine"], saved["command"], saved["runs"])
    print(body)
    write_section(
        section,
        f"Storm{' of ' + args.tree if args.tree else ''} side by side with {args.against} "
        "(bench/filemon_storm.py --against)",
        body,
    )
    return 0


def run(argv=None) -> int:
    try:
        return main(argv)
    finally:
        for leftover in Path(tempfile.gettempdir()).glob(f"{PREFIX}*"):
            shutil.rmtree(leftover, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(run())
