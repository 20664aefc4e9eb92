"""Benchmark: a simulated university driving a real backend (the sizing model of docs/backend.md).

5,000 students on 50 nodes (100 per node), 2,000 of them active at the peak: each active student saves a
new version of a source file every 10 s and compiles it every 60 s (and runs what compiled). Every node has
one filemon and one procmon, simulated as the real agents deliver: filemon writes each saved version to the
snapshot store (content-addressed, as watcher_core.snapshots) after its 0.3 s debounce, and each agent posts
whatever waits in its outbox (up to 500 events) in one request, then the next, one request at a time
(watcher_agents.delivery.sender). Meanwhile the platform and the dashboards read: a student's timeline,
an assignment summary and the old API's assignment view (and the old API's build logs and code-size graph
the platform's frontend shows), ``--reads`` requests per second.

The backend is the real one (``watcher backend``, SQLite by default) on loopback; the load generator is
one asyncio process with one HTTP connection per agent. Reported:

* ingest lag: from an event's time to its row being stored (``received_at``, set in the committing
  transaction, when reads see it), for every event: p50, p99, max;
* query latency under load, per read;
* storage growth per hour: the database (with its WAL) and the snapshot store;
* the projected size of a 16-week semester: the growth of one peak hour, per active student, times the
  student-hours of a semester (``--hours-per-week`` each; an assumption, stated with the figure).

``--minutes`` sets the length (10 by default; 1 for a quick look). Writes bench/results/load_model.md.
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import json
import os
import random
import sqlite3
import sys
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from results_file import ResultsFile, machine  # noqa: E402

from support.backend import run_backend  # noqa: E402
from watcher_core import snapshots, wire  # noqa: E402

RESULTS = ResultsFile("load_model", "Load model: a simulated university", ["university"])
TICKS = os.sysconf("SC_CLK_TCK")
DEBOUNCE = 0.3  # filemon's quiet period before a save is recorded
BATCH = 500  # the agents' default batch size
SEMESTER_WEEKS = 16
COURSES = 25  # 5,000 students in 25 courses of 2 sections of 100
READS = ("timeline", "assignment summary", "old API assignment view", "old API build logs", "old API code-size graph")


class Student:
    def __init__(self, number: int, nodes: int):
        self.number = number
        self.node = f"node-{number % nodes:02d}"
        course = number // 200
        self.course, self.section = f"cs{course:02d}", str(1 + (number // 100) % 2)
        self.student_id = f"2026{number:05d}"
        self.assignment = "hw3"
        self.saves = 0
        # a source file of 0.5-4 KB when the peak starts (starter code and earlier work), growing from there
        self.code = bytearray(f"/* {self.student_id} */\n#include <stdio.h>\n".encode())
        self.code += b"".join(f"int g{i}(int x) {{ return x + {i}; }}\n".encode() for i in range(15 + number % 110))

    @property
    def common(self) -> dict:
        return {
            "node": self.node,
            "course": self.course,
            "section": self.section,
            "student_id": self.student_id,
            "assignment": self.assignment,
        }

    def edit(self, rng: random.Random) -> bytes:
        """The next version of main.c: a few lines more, sometimes a few less (1-6 KB over the hour)."""
        self.saves += 1
        if len(self.code) > 6000 and rng.random() < 0.5:
            del self.code[-rng.randrange(100, 600) :]
        line = f"int f{self.saves}(int x) {{ return x * {rng.randrange(1000)} + {self.saves}; }}\n"
        self.code += line.encode() * rng.randrange(1, 4)
        return bytes(self.code)


class Agent:
    """One node's filemon or procmon: an outbox and a sender posting what waits, one request at a time."""

    def __init__(self, node: str, source: str):
        self.node, self.source = node, source
        self.outbox: list[dict] = []
        self.ready = asyncio.Event()
        self.seq = 0
        self.posted = self.accepted = self.requests = 0
        self.failures: dict[str, int] = defaultdict(int)

    def put(self, event: dict) -> None:
        self.seq += 1
        event["event_id"] = wire.make_event_id("load", self.node, self.source, self.seq)
        event["source"] = self.source
        self.outbox.append(event)
        self.ready.set()

    async def run(self, http: httpx.AsyncClient, stop: asyncio.Event) -> None:
        headers = {"X-Watcher-Node": self.node, "X-Watcher-Source": self.source}
        while not (stop.is_set() and not self.outbox):
            if not self.outbox:
                self.ready.clear()
                try:
                    await asyncio.wait_for(self.ready.wait(), 1)
                except TimeoutError:
                    pass
                continue
            batch = self.outbox[:BATCH]
            body = json.dumps(batch).encode()
            try:
                r = await http.post("/api/v1/events", content=body, headers=headers)
            except httpx.HTTPError as exc:
                self.failures[type(exc).__name__] += 1
                await asyncio.sleep(1)
                continue
            if r.status_code != 200:
                self.failures[f"HTTP {r.status_code}"] += 1
                await asyncio.sleep(1)
                continue
            del self.outbox[: len(batch)]
            self.requests += 1
            self.posted += len(batch)
            self.accepted += r.json()["accepted"]


async def simulate(args, backend, snapshot_dir: Path, rng: random.Random) -> dict:
    students = [Student(n, args.nodes) for n in range(args.students)]
    active = rng.sample(students, args.active)
    agents = {(n, s): Agent(f"node-{n:02d}", s) for n in range(args.nodes) for s in ("filemon", "procmon")}
    stop = asyncio.Event()
    headers = {**backend.headers("ingest"), "Content-Type": "application/json"}
    clients = [httpx.AsyncClient(base_url=backend.url, headers=headers, timeout=60) for _ in agents]
    senders = [asyncio.create_task(a.run(c, stop)) for a, c in zip(agents.values(), clients)]
    duration = args.minutes * 60
    start = time.monotonic()
    counts = {"saves": 0, "compiles": 0, "runs": 0}

    def agent_of(student: Student, source: str) -> Agent:
        return agents[(int(student.node.split("-")[1]), source)]

    def now_iso() -> str:
        return datetime.now(UTC).isoformat()

    async def save(student: Student) -> None:
        content = student.edit(rng)
        sha, _ = await asyncio.to_thread(snapshots.write_snapshot, snapshot_dir, content)
        when = now_iso()
        await asyncio.sleep(DEBOUNCE)  # the quiet period, then filemon records it
        agent_of(student, "filemon").put(
            {
                "type": "file.save",
                "timestamp": when,
                **student.common,
                "path": "main.c",
                "sha256": sha,
                "size": len(content),
            }
        )
        counts["saves"] += 1

    def compile_and_run(student: Student) -> None:
        ok = rng.random() < 0.7
        started = datetime.now(UTC).isoformat()
        ended = now_iso()
        common = {**student.common, "cwd": ".", "started_at": started, "ended_at": ended, "timestamp": ended}
        procmon = agent_of(student, "procmon")
        procmon.put(
            {
                "type": "process.compile",
                **common,
                "path": "main.c",
                "argv": ["gcc", "-Wall", "-o", "main", "main.c"],
                "exit_code": 0 if ok else 1,
                "compiler": "gcc",
                "sources": ["main.c"],
                "output": "main",
            }
        )
        counts["compiles"] += 1
        if ok:
            procmon.put(
                {
                    "type": "process.run",
                    **common,
                    "path": "main",
                    "argv": ["./main"],
                    "exit_code": 0,
                    "kind": "binary",
                    "target": "main",
                }
            )
            counts["runs"] += 1

    # Each active student on their own clock: a save every 10 s and a compile every 60 s, phases spread.
    schedule: list[tuple[float, int, str]] = []
    for i in range(len(active)):
        schedule.append((rng.uniform(0, args.save_every), i, "save"))
        schedule.append((rng.uniform(0, args.compile_every), i, "compile"))
    heapq.heapify(schedule)
    pending: set[asyncio.Task] = set()

    async def drive() -> None:
        while schedule:
            at, i, what = schedule[0]
            if at >= duration:
                return
            delay = start + at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(min(delay, 0.05))
                continue
            heapq.heappop(schedule)
            student = active[i]
            if what == "save":
                task = asyncio.create_task(save(student))
                pending.add(task)
                task.add_done_callback(pending.discard)
                heapq.heappush(schedule, (at + args.save_every, i, what))
            else:
                compile_and_run(student)
                heapq.heappush(schedule, (at + args.compile_every, i, what))

    latencies: dict[str, list[float]] = defaultdict(list)
    read_errors: dict[str, int] = defaultdict(int)

    async def reader(http: httpx.AsyncClient, interval: float) -> None:
        next_at = time.monotonic()
        while not stop.is_set():
            s = rng.choice(active)
            cd = f"{s.course}-{s.section}"
            v1 = f"/api/v1/courses/{s.course}/sections/{s.section}/assignments/{s.assignment}"
            kind = rng.choice(READS)
            path = {
                "timeline": f"{v1}/students/{s.student_id}/timeline",
                "assignment summary": f"{v1}/summary",
                "old API assignment view": f"/api/assignment/{cd}/{s.assignment}",
                "old API build logs": f"/api/{cd}/{s.assignment}/{s.student_id}/logs/build",
                "old API code-size graph": f"/api/graph_data/{cd}/{s.assignment}/{s.student_id}/5",
            }[kind]
            t = time.perf_counter()
            try:
                r = await http.get(path)
                ok = r.status_code == 200
            except httpx.HTTPError:
                ok = False
            if ok:
                latencies[kind].append(time.perf_counter() - t)
            else:
                read_errors[kind] += 1
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    readers = []
    read_clients = []
    if args.reads > 0:
        n_readers = max(1, min(8, int(args.reads)))
        for _ in range(n_readers):
            c = httpx.AsyncClient(base_url=backend.url, headers=backend.headers("read"), timeout=60)
            read_clients.append(c)
            readers.append(asyncio.create_task(reader(c, n_readers / args.reads)))

    await drive()
    await asyncio.gather(*pending)
    stop.set()
    await asyncio.gather(*senders, *readers)
    for c in clients + read_clients:
        await c.aclose()
    elapsed = time.monotonic() - start
    return {
        "elapsed": elapsed,
        "counts": counts,
        "agents": agents,
        "latencies": latencies,
        "read_errors": read_errors,
    }


def dir_bytes(root: Path) -> tuple[int, int]:
    """(bytes of the files, bytes they take on disk)."""
    stats = [p.stat() for p in root.rglob("*") if p.is_file()]
    return sum(s.st_size for s in stats), sum(s.st_blocks * 512 for s in stats)


def db_bytes(path: Path) -> int:
    """The database's size with everything in its WAL written back (what it keeps, not the WAL's reserve)."""
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        pages, free, size = (
            conn.execute(f"PRAGMA {n}").fetchone()[0] for n in ("page_count", "freelist_count", "page_size")
        )
    return (pages - free) * size


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def durations(url: str) -> dict[str, list[tuple[float, float]]]:
    """The backend's own request durations (http_request_duration_seconds) per GET/POST route: cumulative
    (upper bound, count) buckets."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for family in text_string_to_metric_families(httpx.get(url + "/metrics", timeout=30).text):
        if family.name != "http_request_duration_seconds":
            continue
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                key = f"{sample.labels['method']} {sample.labels['endpoint']}"
                out[key].append((float(sample.labels["le"]), sample.value))
    return {k: sorted(v) for k, v in out.items()}


def bucket_quantile(before: list[tuple[float, float]], after: list[tuple[float, float]], q: float) -> float:
    """The upper bound of the bucket holding quantile ``q`` of the requests between two scrapes."""
    old = dict(before)
    counts = [(le, n - old.get(le, 0.0)) for le, n in after]
    total = counts[-1][1] if counts else 0
    for le, n in counts:
        if total and n >= q * total:
            return le
    return float("nan")


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def lags(db: Path) -> list[float]:
    """received_at - timestamp of every stored event, seconds."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT timestamp, received_at FROM event").fetchall()
    return [(datetime.fromisoformat(r) - datetime.fromisoformat(t)).total_seconds() for t, r in rows]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=10, help="length of the peak (default 10)")
    p.add_argument("--students", type=int, default=5000, help="students in the university (default 5000)")
    p.add_argument("--nodes", type=int, default=50, help="worker nodes, one filemon and one procmon each (default 50)")
    p.add_argument("--active", type=int, default=2000, help="students active at the peak (default 2000)")
    p.add_argument("--save-every", type=float, default=10, help="seconds between an active student's saves (10)")
    p.add_argument("--compile-every", type=float, default=60, help="seconds between their compiles (60)")
    p.add_argument("--reads", type=float, default=10, help="platform and dashboard reads per second (default 10)")
    p.add_argument(
        "--hours-per-week",
        type=float,
        default=6,
        help="for the semester projection: hours a student codes per week (default 6, an assumption)",
    )
    p.add_argument("--no-write", action="store_true", help="do not write bench/results/load_model.md")
    args = p.parse_args(argv)

    load = os.getloadavg()[0]
    rng = random.Random(2026)
    with tempfile.TemporaryDirectory() as tmp:
        backend = run_backend(Path(tmp))
        try:
            db = Path(backend.database_url.removeprefix("sqlite:///"))
            snapshot_dir = backend.snapshot_dir
            db0, snap0 = db_bytes(db), dir_bytes(snapshot_dir)
            cpu0 = cpu_seconds(backend.process.pid)
            served0 = durations(backend.url)
            run = asyncio.run(simulate(args, backend, snapshot_dir, rng))
            cpu = cpu_seconds(backend.process.pid) - cpu0
            run["served"] = (served0, durations(backend.url))
            with backend.client("read") as http:
                stored = http.get("/api/v1/status").json()["events_total"]
        finally:
            backend.stop()
        db1, snap1 = db_bytes(db), dir_bytes(snapshot_dir)
        lag = lags(db)
    report(args, run, stored, lag, cpu, (db0, db1), (snap0, snap1), load)
    return 0


SERVED = {
    "POST /api/v1/events": "agents' posts",
    "GET /api/v1/courses/{course}/sections/{section}/assignments/{assignment}/students/{student_id}/timeline": "timeline",
    "GET /api/v1/courses/{course}/sections/{section}/assignments/{assignment}/summary": "assignment summary",
    "GET /api/assignment/{class_div}/{hw_name}": "old API assignment view",
}


def served_rows(served) -> list[str]:
    """The backend's own time per request (its histogram, so without the load generator's delays)."""
    before, after = served
    rows = []
    for key, name in SERVED.items():
        if key in after:
            p50, p99 = (bucket_quantile(before.get(key, []), after[key], q) for q in (0.5, 0.99))
            rows.append(
                f"| {name}, time in the backend (its histogram: bucket bounds) | p50 <= {p50 * 1000:g} ms, p99 <= {p99 * 1000:g} ms |"
            )
    return rows


def report(args, run, stored, lag, cpu, dbs, snaps, load) -> None:
    elapsed, counts, agents = run["elapsed"], run["counts"], run["agents"].values()
    events = counts["saves"] + counts["compiles"] + counts["runs"]
    posted = sum(a.posted for a in agents)
    accepted = sum(a.accepted for a in agents)
    requests = sum(a.requests for a in agents)
    failures: dict[str, int] = defaultdict(int)
    for a in agents:
        for why, n in a.failures.items():
            failures[why] += n
    hour = 3600 / elapsed
    db_hour = (dbs[1] - dbs[0]) * hour
    snap_hour, snap_disk_hour = (snaps[1][0] - snaps[0][0]) * hour, (snaps[1][1] - snaps[0][1]) * hour
    student_hours = args.students * args.hours_per_week * SEMESTER_WEEKS
    per_student_hour = (db_hour + snap_disk_hour) / args.active
    semester_db = db_hour / args.active * student_hours
    semester_snap = snap_disk_hour / args.active * student_hours
    gib = 1024**3
    reads = run["latencies"]
    lines = [
        f"{args.students:,} students on {args.nodes} nodes, {args.active:,} active: each saves every "
        f"{args.save_every:g} s and compiles every {args.compile_every:g} s (70% compile; each then runs), for "
        f"{elapsed / 60:.1f} minutes; one filemon (writing each version to the snapshot store) and one procmon per "
        f"node, posting what waits in their outbox one request at a time; {args.reads:g} reads/s. Real backend "
        f"(SQLite, WAL) on loopback, the load generator in another process on the same 2 cores.",
        f"Machine: {machine()}, load average {load:.1f} at start (shared with other work).",
        f"Command: `.venv/bin/python bench/load_model.py --minutes {args.minutes:g}`",
        "",
        "| figure | value |",
        "|---|---|",
        f"| events made / stored | {events:,} ({counts['saves']:,} saves, {counts['compiles']:,} compiles, "
        f"{counts['runs']:,} runs; {events / elapsed:.0f}/s) / {stored:,} (accepted {accepted:,} of {posted:,} "
        f"posted; failed posts, retried: {dict(failures) or 0}) |",
        f"| agent requests | {requests:,} ({requests / elapsed:.0f}/s, {posted / max(requests, 1):.1f} events each) |",
        f"| ingest lag, event time to stored (every event) | p50 **{pct(lag, 0.5) * 1000:.0f} ms**, p99 "
        f"**{pct(lag, 0.99) * 1000:.0f} ms**, max {max(lag) * 1000:.0f} ms (saves include the 0.3 s debounce) |",
        *(
            f"| {kind} (read under load, as the client saw it) | p50 {pct(reads[kind], 0.5) * 1000:.1f} ms, p95 "
            f"{pct(reads[kind], 0.95) * 1000:.1f} ms, p99 **{pct(reads[kind], 0.99) * 1000:.1f} ms** "
            f"(n={len(reads[kind])}, errors {run['read_errors'].get(kind, 0)}) |"
            for kind in READS
            if reads.get(kind)
        ),
        *served_rows(run["served"]),
        f"| backend CPU | {cpu / elapsed * 100:.0f} % of one core ({cpu * 1000 / max(requests, 1):.2f} ms per agent request) |",
        f"| database growth | **{db_hour / gib * 1024:,.0f} MiB per hour** ({(dbs[1] - dbs[0]) / max(stored, 1):.0f} "
        "bytes per event, indexes and rollups included) |",
        f"| snapshot store growth | **{snap_disk_hour / gib * 1024:,.0f} MiB per hour** on disk, "
        f"{snap_hour / gib * 1024:,.0f} MiB of content ({(snaps[1][0] - snaps[0][0]) / max(counts['saves'], 1):,.0f} "
        "bytes per save, uncompressed, one file each) |",
        f"| per active student-hour | {per_student_hour / 1024:,.0f} KiB |",
        f"| **16-week semester** ({args.students:,} students x {args.hours_per_week:g} h/week = "
        f"{student_hours:,.0f} student-hours) | database **{semester_db / gib:,.0f} GiB**, snapshots "
        f"**{semester_snap / gib:,.0f} GiB** on disk |",
    ]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        RESULTS.write_section("university", "A simulated university at its peak (bench/load_model.py)", text)


if __name__ == "__main__":
    sys.exit(main())
