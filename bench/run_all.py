"""Run every benchmark under bench/ and assemble bench/RESULTS.md with a plot (bench/results.png).

Runs, one after the other (they would disturb each other's figures on a shared machine), every
``bench/{backend,delivery,filemon,procmon,e2e,images,load}_*.py`` that is a script, with exactly the command(s) its result
file documents (``Command: `...` `` in ``bench/results/*.md``: one per section, e.g. a ``--postgres``
variant), or its default arguments when it has none yet (``--quick``: the smaller presets below),
showing each one's output as it goes. Each script writes its own section
into ``bench/results/*.md``; this collects them under a header naming the machine and the date, with a
table of what ran, how long it took, whether it succeeded and the exact command. A benchmark that fails
is recorded as failed (with its last output lines), never hidden; its old results are marked stale.

    .venv/bin/python bench/run_all.py            # everything, the documented commands (~20 minutes)
    .venv/bin/python bench/run_all.py --quick    # smaller presets (~5 minutes)
    .venv/bin/python bench/run_all.py --only procmon_   # rerun some; their rows replace the last full run's
    .venv/bin/python bench/run_all.py --no-run          # reassemble RESULTS.md and the plot only
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS_DIR = BENCH / "results"
PREFIXES = ("backend_", "delivery_", "filemon_", "procmon_", "e2e_", "images_", "load_", "dashboard")

# Smaller presets for --quick (documented by each script's --help).
QUICK = {
    "backend_ingest.py": [["--events", "20000", "--singles", "500"]],
    "backend_queries.py": [["--events", "200000", "--requests", "100"]],
    "backend_singles.py": [["--seconds", "5", "--repeat", "1"]],
    "load_model.py": [["--minutes", "1"]],
    "backend_class_queries.py": [["--events", "1000000", "--requests", "5"]],
    "delivery_outbox.py": [["--events", "20000", "--repeat", "1"]],
    "filemon_idle.py": [["--dirs", "1000", "--idle-seconds", "10"]],
    "filemon_nodelocal.py": [["--students", "200", "--nodes", "20"]],
    "filemon_storm.py": [["--saves", "2000", "--students", "100", "--seconds", "5"]],
    "procmon_execs.py": [["--execs", "5000"]],
    "procmon_overhead.py": [["--rounds", "3", "--execs", "1000"]],
    "e2e_classroom.py": [["--duration", "30"]],
    "dashboard.py": [["--loads", "10"]],
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    p.add_argument("--quick", action="store_true", help="smaller presets for every benchmark that has one")
    p.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="PREFIX",
        help="run only scripts whose name starts with PREFIX (repeatable)",
    )
    p.add_argument("--timeout", type=float, default=1200, help="seconds allowed per benchmark run (default 1200)")
    p.add_argument("--no-run", action="store_true", help="only reassemble RESULTS.md and the plot from bench/results")
    return p.parse_args(argv)


def discover(only: list[str]) -> list[Path]:
    scripts = []
    for path in sorted(BENCH.glob("*.py")):
        if not path.name.startswith(PREFIXES) or "__main__" not in path.read_text():
            continue  # helper modules (filemon_common.py, _backend_results.py) are not benchmarks
        if only and not any(path.name.startswith(o) for o in only):
            continue
        scripts.append(path)
    return scripts


def documented_runs() -> dict[str, list[list[str]]]:
    """The exact commands the result files say produced their sections (``Command: `...` ``), per script:
    a benchmark with variants (e.g. ``--postgres``) writes one section per variant, and each is rerun."""
    runs: dict[str, list[list[str]]] = {}
    pattern = re.compile(r"Command: `(?:\.venv/bin/)?python3? bench/([\w.]+\.py)([^`]*)`")
    for md in sorted(RESULTS_DIR.glob("*.md")):
        for script, args in pattern.findall(md.read_text()):
            variant = args.split()
            if variant not in runs.setdefault(script, []):
                runs[script].append(variant)
    return runs


def machine() -> dict[str, str]:
    mem = "?"
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": str(os.cpu_count()),
        "RAM": mem,
        "CPU": cpu,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "root": "yes" if os.geteuid() == 0 else "no",
    }


def run_one(script: Path, args: list[str], index: int, total: int, timeout: float) -> dict:
    cmd = [sys.executable, str(script.relative_to(ROOT)), *args]
    shown = " ".join([".venv/bin/python", str(script.relative_to(ROOT)), *args])
    print(f"\n[{index}/{total}] {shown}", flush=True)
    start = time.monotonic()
    tail: list[str] = []
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    try:
        deadline = start + timeout
        for line in proc.stdout:
            print(f"    {time.monotonic() - start:6.0f}s | {line.rstrip()}", flush=True)
            tail = (tail + [line.rstrip()])[-15:]
            if time.monotonic() > deadline:
                proc.kill()
                tail.append(f"(killed after {timeout:.0f} s)")
                break
        rc = proc.wait()
    except KeyboardInterrupt:
        proc.kill()
        raise
    seconds = time.monotonic() - start
    status = "ok" if rc == 0 else f"FAILED (exit {rc})"
    print(f"[{index}/{total}] {status} in {seconds:.0f} s", flush=True)
    return {"script": script.name, "command": shown, "rc": rc, "status": status, "seconds": seconds, "tail": tail}


def plot(path: Path) -> str:
    """The end-to-end latency distributions (CDF) and each component's CPU/memory; '' or why it is missing."""
    data_file = RESULTS_DIR / "e2e_classroom.json"
    if not data_file.exists():
        return "no plot: bench/results/e2e_classroom.json is missing (e2e_classroom did not run)"
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "no plot: matplotlib is not installed (pip install -e '.[bench]')"
    data = json.loads(data_file.read_text())
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5), gridspec_kw={"width_ratios": [2, 1]})
    for key, label in (
        ("save_latency_s", "save → queryable"),
        ("compile_latency_s", "compile → queryable"),
        ("api_save_latency_s", "save → seen by read API (probes)"),
        ("api_compile_latency_s", "compile → seen by read API (probes)"),
    ):
        values = sorted(max(v * 1000, 0.01) for v in data.get(key) or [])  # log axis: clamp at 10 µs
        if values:
            ax1.plot(values, [(i + 1) / len(values) for i in range(len(values))], label=f"{label} (n={len(values)})")
    ax1.set_xscale("log")
    ax1.set_xlabel("latency (ms, log scale)")
    ax1.set_ylabel("fraction of events")
    ax1.set_title(f"End to end, {data['saves']} saves + {data['compiles']} compiles in {data['load_seconds']:.0f} s")
    ax1.grid(True, which="both", alpha=0.3)
    ax1.legend(loc="lower right")
    names = list(data["cpu_seconds"])
    cpu_pct = [data["cpu_seconds"][n] / data["load_seconds"] * 100 for n in names]
    bars = ax2.bar(names, cpu_pct, color="tab:orange")
    for bar, n in zip(bars, names):
        ax2.annotate(
            f"{data['peak_rss_mb'][n]:.0f} MiB",
            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
            ha="center",
            va="bottom",
            fontsize=9,
        )
    ax2.set_ylabel("CPU, % of one core (label: peak RSS)")
    ax2.set_title("Components under the classroom load")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return ""


def headline() -> list[str]:
    """The end-to-end figures first: what a reader of RESULTS.md asks before anything else."""
    data_file = RESULTS_DIR / "e2e_classroom.json"
    if not data_file.exists():
        return []
    d = json.loads(data_file.read_text())

    def pct(key, q):
        values = sorted(d.get(key) or [])
        return values[min(len(values) - 1, int(q * (len(values) - 1) + 0.5))] * 1000 if values else float("nan")

    comps = ", ".join(
        f"{n} {d['cpu_seconds'][n] / d['load_seconds'] * 100:.0f} % CPU / {d['peak_rss_mb'][n]:.0f} MiB"
        for n in d["cpu_seconds"]
    )
    return [
        "## Headline: end to end under a classroom load",
        "",
        f"{d['saves']} saves and {d['compiles']} compiles in {d['load_seconds']:.0f} s "
        f"(`.venv/bin/{d['command']}`; details in the e2e section below):",
        "",
        "| figure | p50 | p99 | target |",
        "|---|---|---|---|",
        f"| save → queryable | {pct('save_latency_s', 0.5):.0f} ms | {pct('save_latency_s', 0.99):.0f} ms | p99 ≤ 2 s |",
        f"| compile → queryable | {pct('compile_latency_s', 0.5):.0f} ms | {pct('compile_latency_s', 0.99):.0f} ms "
        f"| p99 ≤ 2 s |",
        f"| events missing | saves {d['missing_saves']}, compiles {d['missing_compiles']} | | 0 |",
        "",
        f"Components (CPU as % of one core over the load, peak RSS): {comps}.",
        "",
    ]


def demote(markdown: str) -> str:
    """Result files start at '#'; inside RESULTS.md they sit one level lower."""
    return re.sub(r"^(#+) ", lambda m: "#" + m.group(1) + " ", markdown, flags=re.M)


def assemble(runs: list[dict], started: float, plot_note: str, quick: bool) -> str:
    m = machine()
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    out = [
        "# Benchmark results",
        "",
        f"Generated by `.venv/bin/python bench/run_all.py{' --quick' if quick else ''}` on {now}"
        + (f" (the benchmarks ran from {datetime.fromtimestamp(started, UTC):%H:%M} UTC)." if started else "."),
        "Machine: " + ", ".join(f"{k} {v}" for k, v in m.items()) + ".",
        "Each benchmark ran alone, one after the other; each section below names its figure, its target and the "
        "exact command that produced it.",
        "",
    ]
    if runs:
        out += ["| benchmark | status | time | command |", "|---|---|---|---|"]
        for r in runs:
            out.append(f"| {r['script']} | {r['status']} | {r['seconds']:.0f} s | `{r['command']}` |")
        out.append("")
        failed = [r for r in runs if r["rc"] != 0]
        for r in failed:
            out += [
                f"**{r['script']} failed** (`{r['command']}`, exit {r['rc']}); its last output lines:",
                "",
                "```",
                *r["tail"],
                "```",
                "",
            ]
    out += headline()
    png = BENCH / "results.png"
    out += (
        ["![end-to-end latency and component CPU](results.png)", ""]
        if not plot_note and png.exists()
        else [f"({plot_note})", ""]
    )
    for md in sorted(RESULTS_DIR.glob("*.md")):
        stale = started and md.stat().st_mtime < started
        out.append(f"<!-- from bench/results/{md.name} -->")
        if stale:
            out.append(
                f"> **Stale**: bench/results/{md.name} was not rewritten by this run (its benchmark failed or "
                f"did not run); the figures below are from an earlier run."
            )
            out.append("")
        out.append(demote(md.read_text().strip()))
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    started = time.time()
    runs: list[dict] = []
    if not args.no_run:
        plan = []
        documented = documented_runs()
        for script in discover(args.only):
            variants = QUICK.get(script.name, [[]]) if args.quick else documented.get(script.name) or [[]]
            plan += [(script, v) for v in variants]
        print(f"run_all: {len(plan)} benchmark runs: " + ", ".join(f"{s.name} {' '.join(v)}".strip() for s, v in plan))
        for i, (script, variant) in enumerate(plan, 1):
            runs.append(run_one(script, variant, i, len(plan), args.timeout))
    this_invocation = list(runs)
    record = RESULTS_DIR / "run_all.json"  # what ran, so --no-run can reassemble with the same table
    if args.no_run and record.exists():
        saved = json.loads(record.read_text())
        runs, started, args.quick = saved["runs"], saved["started"], saved["quick"]
    elif not args.no_run:
        if args.only and record.exists():  # a partial rerun replaces its scripts' rows in the last full table
            saved = json.loads(record.read_text())
            rerun = {r["script"] for r in runs}
            runs = [r for r in saved["runs"] if r["script"] not in rerun] + runs
            runs.sort(key=lambda r: r["script"])
            started, args.quick = saved["started"], saved["quick"]
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps({"runs": runs, "started": started, "quick": args.quick}, indent=1))
    note = plot(BENCH / "results.png")
    if note:
        print(f"run_all: {note}")
    (BENCH / "RESULTS.md").write_text(assemble(runs, started if runs else 0, note, args.quick))
    print("\nrun_all: wrote bench/RESULTS.md" + ("" if note else " and bench/results.png"))
    for r in runs:
        print(f"  {r['status']:>18}  {r['seconds']:5.0f} s  {r['command']}")
    return 0 if all(r["rc"] == 0 for r in this_invocation) else 1


if __name__ == "__main__":
    sys.exit(main())
