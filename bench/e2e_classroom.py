"""Benchmark: a classroom on one node, end to end (real backend, filemon, procmon as processes).

100 simulated students (default) each save a new version of ``main.c`` every 5 s and compile it with
gcc every 30 s, for 2 minutes, in a workspace watched by the real local stack (``LocalStack``: SQLite,
real inotify, procmon with eBPF when root). Measured:

* save-to-queryable latency: from the moment the save's ``close()`` returned to the moment the
  backend stored the event (its ``received_at``, set in the ingest transaction), for EVERY save;
  p50/p99/max;
* compile-to-queryable latency: from gcc's exit (the event's ``ended_at``, taken from the kernel's exit
  event by procmon) to the event's ``received_at``, for every compile;
* the same two, observed through the read API for a few probe students polled continuously
  (first time the timeline shows the event), to check ``received_at`` is when reads see it;
* CPU seconds (user+system, from /proc/<pid>/stat) and peak RSS (VmHWM, /proc/<pid>/status) of each
  component over the run, and of the load generator's gcc children;
* completeness: every save and compile must be stored exactly once.

Writes bench/results/e2e_classroom.md and the raw latencies to bench/results/e2e_classroom.json
(bench/run_all.py plots them).
"""

from __future__ import annotations

import argparse
import hashlib
import heapq
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
sys.path.insert(0, str(ROOT / "local"))

from watcher_local.stack import LocalStack, free_port  # noqa: E402

COURSE, SECTION, ASSIGNMENT = "os", "1", "hw1"
TARGET_SAVE_P99 = 2.0
TARGET_COMPILE_P99 = 2.0
TICKS = os.sysconf("SC_CLK_TCK")


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--students", type=int, default=100, help="simulated students (default 100)")
    p.add_argument("--duration", type=float, default=120.0, help="seconds of load (default 120)")
    p.add_argument("--save-every", type=float, default=5.0, help="seconds between a student's saves (default 5)")
    p.add_argument(
        "--compile-every", type=float, default=30.0, help="seconds between a student's compiles (default 30)"
    )
    p.add_argument(
        "--probes", type=int, default=5, help="students whose timeline is polled through the API (default 5)"
    )
    p.add_argument(
        "--procmon",
        choices=["auto", "ebpf", "proc-connector", "off"],
        default="auto",
        help="procmon mode (default auto: eBPF when root and bcc are there)",
    )
    p.add_argument("--keep", type=Path, default=None, help="keep the workspace and data here (default: a temp dir)")
    p.add_argument("--no-write", action="store_true", help="print only; do not write bench/results")
    return p.parse_args(argv)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = (len(s) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def proc_peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def parse_time(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


class Classroom:
    """The load: a scheduler thread for saves, a small pool for compiles; every action is recorded."""

    def __init__(self, workspace: Path, students: int, save_every: float, compile_every: float):
        self.ids = [str(202600000 + i) for i in range(students)]
        self.dirs = {sid: workspace / f"{COURSE}-{SECTION}-{sid}" / ASSIGNMENT for sid in self.ids}
        for d in self.dirs.values():
            d.mkdir(parents=True, exist_ok=True)
        self.save_every, self.compile_every = save_every, compile_every
        self.saves: dict[str, tuple[str, float]] = {}  # sha256 -> (student, when close() returned)
        self.compiles: dict[str, list[tuple[float, float, int]]] = {sid: [] for sid in self.ids}
        self.version = {sid: 0 for sid in self.ids}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.pool = ThreadPoolExecutor(max_workers=4)
        self.late = 0  # actions started more than 1 s after their due time (the generator could not keep up)

    def save(self, sid: str) -> None:
        self.version[sid] += 1
        v = self.version[sid]
        text = (
            f"/* student {sid}, version {v} */\n#include <stdio.h>\n\n"
            f'int main(void) {{\n    printf("%d\\n", {v});\n    return 0;\n}}\n'
        )
        (self.dirs[sid] / "main.c").write_text(text)
        done = time.time()
        with self.lock:
            self.saves[hashlib.sha256(text.encode()).hexdigest()] = (sid, done)

    def compile(self, sid: str) -> None:
        start = time.time()
        rc = subprocess.run(["gcc", "main.c", "-o", "main"], cwd=self.dirs[sid], capture_output=True).returncode
        end = time.time()
        with self.lock:
            self.compiles[sid].append((start, end, rc))

    def run(self, duration: float) -> None:
        t0 = time.monotonic()
        n = len(self.ids)
        # spread the students' phases evenly so the load is steady, as in a real class
        heap = [(t0 + self.save_every * i / n, 0, sid) for i, sid in enumerate(self.ids)]
        heap += [(t0 + 1 + self.compile_every * i / n, 1, sid) for i, sid in enumerate(self.ids)]
        heapq.heapify(heap)
        end = t0 + duration
        futures = []
        while heap and not self.stop.is_set():
            due, kind, sid = heapq.heappop(heap)
            if due >= end:
                break
            now = time.monotonic()
            if due > now:
                time.sleep(due - now)
            elif now - due > 1.0:
                self.late += 1
            if kind == 0:
                self.save(sid)
                heapq.heappush(heap, (due + self.save_every, 0, sid))
            else:
                futures.append(self.pool.submit(self.compile, sid))
                heapq.heappush(heap, (due + self.compile_every, 1, sid))
        for f in futures:
            f.result()
        self.pool.shutdown()


class Prober(threading.Thread):
    """Polls a few students' timelines through the read API; records when each event first shows."""

    def __init__(self, url: str, token: str, students: list[str], since: str):
        super().__init__(daemon=True)
        self.url, self.token, self.students, self.since = url, token, students, since
        self.first_seen: dict[str, float] = {}
        self.events: dict[str, dict] = {}
        self.requests = 0
        self.stop = threading.Event()

    def run(self) -> None:
        base = f"/api/v1/courses/{COURSE}/sections/{SECTION}/assignments/{ASSIGNMENT}/students"
        with httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=30) as http:
            while not self.stop.is_set():
                for sid in self.students:
                    r = http.get(f"{base}/{sid}/timeline", params={"since": self.since, "limit": 1000})
                    now = time.time()
                    self.requests += 1
                    for ev in r.json().get("events", []):
                        if ev["event_id"] not in self.first_seen:
                            self.first_seen[ev["event_id"]] = now
                            self.events[ev["event_id"]] = ev
                time.sleep(0.05)


def fetch_all(url: str, token: str, students: list[str]) -> dict[str, list[dict]]:
    out = {}
    base = f"/api/v1/courses/{COURSE}/sections/{SECTION}/assignments/{ASSIGNMENT}/students"
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as http:
        for sid in students:
            events, cursor = [], None
            while True:
                r = http.get(f"{base}/{sid}/timeline", params={"limit": 1000} | ({"cursor": cursor} if cursor else {}))
                r.raise_for_status()
                body = r.json()
                events += body["events"]
                cursor = body.get("next_cursor")
                if not cursor:
                    break
            out[sid] = events
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    if shutil.which("gcc") is None:
        print("e2e_classroom: gcc is not installed (apt-get install gcc)", file=sys.stderr)
        return 2
    command = "python bench/e2e_classroom.py" + (
        "" if argv is None and len(sys.argv) == 1 else " " + " ".join(sys.argv[1:] if argv is None else argv)
    )
    tmp = None
    base = args.keep
    if base is None:
        tmp = tempfile.TemporaryDirectory(prefix="watcher-bench-")
        base = Path(tmp.name)
    (base / "workspace").mkdir(parents=True, exist_ok=True)
    stack = LocalStack(
        base / "workspace",
        base / "data",
        port=free_port(),
        filemon_metrics_port=free_port(),
        procmon_metrics_port=free_port(),
        procmon_mode=args.procmon,
        node_name="bench-node",
    )
    print(
        f"e2e_classroom: {args.students} students, save every {args.save_every:g} s, compile every "
        f"{args.compile_every:g} s, for {args.duration:g} s",
        flush=True,
    )
    stack.prepare()
    stack.start(timeout=90, say=lambda m: print(f"  {m}", flush=True))
    with_procmon = "procmon" in stack.components
    mode = stack.procmon_running_mode() if with_procmon else None
    try:
        room = Classroom(stack.workspace, args.students, args.save_every, args.compile_every)
        time.sleep(2)  # filemon has watched the new directories (it scans each new dir as it appears)
        pids = stack.pids()
        cpu0 = {name: proc_cpu_seconds(pid) for name, pid in pids.items()}
        children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        since = datetime.now(UTC).isoformat()
        prober = Prober(stack.url, stack.tokens["read"], room.ids[: args.probes], since)
        prober.start()
        t_start = time.monotonic()
        progress_stop = threading.Event()

        def progress():
            while not progress_stop.wait(10):
                print(
                    f"  {time.monotonic() - t_start:5.0f} s: {len(room.saves)} saves, "
                    f"{sum(map(len, room.compiles.values()))} compiles",
                    flush=True,
                )

        threading.Thread(target=progress, daemon=True).start()
        room.run(args.duration)
        progress_stop.set()
        load_seconds = time.monotonic() - t_start
        n_saves = len(room.saves)
        n_compiles = sum(len(v) for v in room.compiles.values())
        expected = n_saves + (n_compiles if with_procmon else 0)
        print(
            f"  load done: {n_saves} saves, {n_compiles} compiles in {load_seconds:.0f} s; waiting for delivery",
            flush=True,
        )
        deadline = time.monotonic() + 120
        rh = {"Authorization": f"Bearer {stack.tokens['read']}"}
        stored = 0
        while time.monotonic() < deadline:
            by_type = httpx.get(stack.url + "/api/v1/status", headers=rh, timeout=30).json()["events_by_type"]
            stored = by_type.get("file.save", 0) + by_type.get("process.compile", 0)
            if stored >= expected:
                break
            time.sleep(0.5)
        time.sleep(1.0)
        prober.stop.set()
        prober.join(30)
        cpu = {name: proc_cpu_seconds(pid) - cpu0[name] for name, pid in pids.items()}
        rss = {name: proc_peak_rss_mb(pid) for name, pid in pids.items()}
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        gen_cpu = (children.ru_utime - children0.ru_utime) + (children.ru_stime - children0.ru_stime)
        timelines = fetch_all(stack.url, stack.tokens["read"], room.ids)
    finally:
        stack.stop()
        if tmp:
            tmp.cleanup()

    # ---------------------------------------------------------------------------------- analysis
    save_lat, compile_lat, api_save_lat, api_compile_lat = [], [], [], []
    saves_stored: dict[str, int] = {}
    compiles_stored = 0
    duplicates = 0
    for events in timelines.values():
        ids = [e["event_id"] for e in events]
        duplicates += len(ids) - len(set(ids))
        comp_events = sorted((e for e in events if e["type"] == "process.compile"), key=lambda e: e["started_at"])
        compiles_stored += len(comp_events)
        for e in events:
            if e["type"] == "file.save" and e["sha256"] in room.saves:
                saves_stored[e["sha256"]] = saves_stored.get(e["sha256"], 0) + 1
                written = room.saves[e["sha256"]][1]
                save_lat.append(parse_time(e["received_at"]) - written)
                if e["event_id"] in prober.first_seen:
                    api_save_lat.append(prober.first_seen[e["event_id"]] - written)
        for e in comp_events:
            # from gcc's exit as procmon timestamped it (the kernel's exit event): the load generator's own
            # clock reading after waitpid() comes a few ms later than the exit and would understate this
            ended = parse_time(e["ended_at"])
            compile_lat.append(parse_time(e["received_at"]) - ended)
            if e["event_id"] in prober.first_seen:
                api_compile_lat.append(prober.first_seen[e["event_id"]] - ended)
    missing_saves = n_saves - len(saves_stored)
    twice = sum(1 for n in saves_stored.values() if n > 1)
    missing_compiles = (n_compiles - compiles_stored) if with_procmon else None

    def fmt(values):
        if not values:
            return "-"
        return (
            f"p50 **{percentile(values, 0.5) * 1000:.0f} ms**, p99 **{percentile(values, 0.99) * 1000:.0f} ms**, "
            f"max {max(values) * 1000:.0f} ms (n={len(values)})"
        )

    machine = (
        f"nproc={os.cpu_count()}, kernel {platform.release()}, Python {platform.python_version()}, "
        f"load average {os.getloadavg()[0]:.1f} at the end"
    )
    lines = [
        "# End to end: a classroom on one node (bench/e2e_classroom.py)",
        "",
        f"Load: {args.students} students, each saving a new `main.c` every {args.save_every:g} s and compiling it "
        f"with gcc every {args.compile_every:g} s, for {load_seconds:.0f} s: {n_saves} saves and {n_compiles} "
        f"compiles ({n_saves / load_seconds:.1f} saves/s, {n_compiles / load_seconds:.1f} compiles/s). "
        f"Real backend (SQLite), filemon (inotify) and procmon ({mode or 'not running'}) as processes on loopback.",
        f"Machine: {machine}. The load generator and gcc share the same cores.",
        f"Command: `.venv/bin/{command}`",
        "",
        "| measurement | result | target |",
        "|---|---|---|",
        f"| save-to-queryable (close() → stored: the ingest transaction's received_at, every save) | {fmt(save_lat)} | p99 ≤ {TARGET_SAVE_P99:g} s |",
        f"| compile-to-queryable (gcc's exit as traced → stored, every compile) | {fmt(compile_lat)} | p99 ≤ {TARGET_COMPILE_P99:g} s |",
        f"| save-to-queryable seen through the read API ({args.probes} polled students) | {fmt(api_save_lat)} | |",
        f"| compile-to-queryable seen through the read API | {fmt(api_compile_lat)} | |",
        f"| saves missing / stored twice | {missing_saves} / {twice} | 0 / 0 |",
        f"| compiles missing | {missing_compiles if missing_compiles is not None else 'procmon not running'} | 0 |",
        f"| duplicate event ids | {duplicates} | 0 |",
        "",
        "Save latency includes filemon's 300 ms debounce quiet period (by design: a save is recorded when the "
        "file has been quiet that long).",
        "",
        "| component | CPU seconds (user+sys) | CPU % of one core | peak RSS (VmHWM) |",
        "|---|---|---|---|",
    ]
    for name in cpu:
        lines.append(f"| {name} | {cpu[name]:.1f} s | {cpu[name] / load_seconds * 100:.1f} % | {rss[name]:.0f} MiB |")
    lines.append(f"| load generator's gcc processes | {gen_cpu:.1f} s | {gen_cpu / load_seconds * 100:.1f} % | - |")
    lines.append(
        f"\nThe backend's CPU includes answering the probe's polling ({prober.requests / load_seconds:.0f} "
        "timeline requests/s) and the agents' idle heartbeats."
    )
    if room.late:
        lines.append(f"\nThe load generator ran {room.late} actions more than 1 s late (machine saturated).")
    text = "\n".join(lines) + "\n"
    print()
    print(text)
    if not args.no_write:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "e2e_classroom.md").write_text(text)
        (RESULTS / "e2e_classroom.json").write_text(
            json.dumps(
                {
                    "command": command,
                    "save_latency_s": save_lat,
                    "compile_latency_s": compile_lat,
                    "api_save_latency_s": api_save_lat,
                    "api_compile_latency_s": api_compile_lat,
                    "cpu_seconds": cpu,
                    "peak_rss_mb": rss,
                    "load_seconds": load_seconds,
                    "saves": n_saves,
                    "compiles": n_compiles,
                    "missing_saves": missing_saves,
                    "missing_compiles": missing_compiles,
                },
                indent=1,
            )
        )
        print(f"wrote {RESULTS / 'e2e_classroom.md'}")
    ok = missing_saves == 0 and twice == 0 and duplicates == 0 and not missing_compiles
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
