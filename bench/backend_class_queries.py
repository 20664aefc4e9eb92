"""Benchmark: the assignment views at a real class's size, from the rollups and from the scans they replaced.

One assignment holds 400,000 events (200 students x 2,000 events: saves, compiles, runs, deletes over two
weeks) among ``--events`` in the database (default 10,000,000: more courses and assignments of the same
shape). The events go straight into a migrated database; a real backend started on it builds the rollups
(timed from its log), then over loopback HTTP, interleaved request by request in one run:

* the assignment summary from the rollups, and the same request with a window that covers every event,
  which the rollups cannot answer, so the backend scans (the design before revision 0007);
* the course listing, the same way;
* the old API's assignment statistics and build average over HTTP (rollups), and the scans they replaced
  run in-process on the same database (no HTTP: that favours the scan);
* a student's timeline (first page), for the dashboard's target.

The answers of both paths are compared (equal but for SQLite's julianday rounding of time on task).
Writes bench/results/backend.md (section "class_queries" or "class_queries_postgres").
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from _backend_results import write_section  # noqa: E402
from backend_queries import generate, generate_postgres  # noqa: E402

from support.backend import run_backend  # noqa: E402
from watcher_backend import db  # noqa: E402
from watcher_backend.legacy import adapter, stats  # noqa: E402
from watcher_backend.store import _COLUMNS  # noqa: E402

T0 = datetime(2026, 3, 2, tzinfo=UTC)
STUDENTS, ASSIGNMENTS, PER_STUDENT = 200, 10, 2000
FOCUS = ("course00", "1", "hw01")
EVERYTHING = {"since": "2000-01-01T00:00:00Z"}  # a window: the backend answers it by scanning


def fmt(dt: datetime) -> str:
    return dt.replace(tzinfo=None).isoformat(" ", "microseconds")


def rows(total: int, seed: int = 7):
    """Courses of 10 assignments x 200 students x 2,000 events, until ``total``: course00/hw01 first."""
    rng = random.Random(seed)
    received = fmt(T0 + timedelta(days=30))
    argv = json.dumps(["gcc", "-Wall", "main.c", "-o", "main"])
    index = {c: i for i, c in enumerate(_COLUMNS)}
    n = 0
    course = 0
    while n < total:
        for a in range(ASSIGNMENTS):
            for s in range(STUDENTS):
                t = T0 + timedelta(days=a * 2, seconds=rng.randrange(86400))
                for i in range(PER_STUDENT):
                    if n >= total:
                        return
                    t += timedelta(
                        seconds=rng.choice((5, 20, 45, 90, 240, 900, 4000)), microseconds=rng.randrange(10**6)
                    )
                    ts = fmt(t)
                    row: list = [None] * len(_COLUMNS)
                    row[index["event_id"]] = f"gen-{n:010d}"
                    row[index["timestamp"]] = ts
                    row[index["received_at"]] = received
                    row[index["node"]] = f"node-{s % 50}"
                    row[index["course"]] = f"course{course:02d}"
                    row[index["section"]] = "1"
                    row[index["student_id"]] = f"2024{s:05d}"
                    row[index["assignment"]] = f"hw{a + 1:02d}"
                    row[index["path"]] = f"src/file{i % 4}.c"
                    k = rng.random()
                    if k < 0.6:
                        row[index["type"]], row[index["source"]] = "file.save", "filemon"
                        row[index["sha256"]] = f"{n:064x}"
                        row[index["size"]] = 200 + (i * 37) % 4000
                    elif k < 0.62:
                        row[index["type"]], row[index["source"]] = "file.delete", "filemon"
                    else:
                        compile_ = k < 0.85
                        row[index["type"]] = "process.compile" if compile_ else "process.run"
                        row[index["source"]] = "procmon"
                        row[index["argv"]] = argv if compile_ else '["./main"]'
                        row[index["argv_truncated"]] = False
                        row[index["cwd"]] = "."
                        row[index["exit_code"]] = rng.choice((0, 0, 0, 1))
                        row[index["started_at"]] = row[index["ended_at"]] = ts
                        row[index["duration_ms"]] = 120.0
                        row[index["pid"]] = 1000 + i
                        if compile_:
                            row[index["compiler"]], row[index["sources"]], row[index["output"]] = (
                                "gcc",
                                '["main.c"]',
                                "main",
                            )
                        else:
                            row[index["kind"]], row[index["target"]] = "binary", "main"
                    n += 1
                    yield tuple(row)
        course += 1


def timed_get(http: httpx.Client, path: str, params: dict | None = None) -> tuple[float, dict]:
    t = time.perf_counter()
    r = http.get(path, params=params or {})
    ms = (time.perf_counter() - t) * 1000
    if r.status_code != 200:
        raise SystemExit(f"{path}: {r.status_code} {r.text[:200]}")
    return ms, r.json()


def timed_call(fn) -> tuple[float, object]:
    t = time.perf_counter()
    value = fn()
    return (time.perf_counter() - t) * 1000, value


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[18] if len(values) >= 2 else values[0]


def same_summary(a: dict, b: dict) -> bool:
    def strip(s: dict) -> dict:
        rows = [{k: v for k, v in r.items() if k != "active_seconds"} for r in s["per_student"]]
        return {k: v for k, v in s.items() if k not in ("active_seconds", "per_student")} | {"per_student": rows}

    close = all(
        abs(x["active_seconds"] - y["active_seconds"]) < 0.05 for x, y in zip(a["per_student"], b["per_student"])
    )
    return strip(a) == strip(b) and close


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=10_000_000, help="stored events (default 10000000; at least 400000)")
    p.add_argument("--requests", type=int, default=20, help="requests per view and path (default 20)")
    p.add_argument("--postgres", action="store_true", help="a private PostgreSQL (tests/support/postgres.py)")
    p.add_argument("--no-write", action="store_true", help="do not write bench/results/backend.md")
    args = p.parse_args(argv)
    if args.events < STUDENTS * PER_STUDENT:
        p.error("--events must be at least 400000 (one assignment of 200 students x 2000 events)")
    pg = None
    if args.postgres:
        from support.postgres import PostgresServer

        pg = PostgresServer().start()
    try:
        return run(args, pg)
    finally:
        if pg is not None:
            pg.close()


def run(args, pg) -> int:
    rng = random.Random(1)
    load = os.getloadavg()[0]
    course, section, assignment = FOCUS
    base = f"/api/v1/courses/{course}/sections/{section}/assignments/{assignment}"
    with tempfile.TemporaryDirectory() as tmp:
        if pg is not None:
            url = pg.create_database("bench_class")
            gen_s = generate_postgres(url, args.events, rows)
        else:
            url = f"sqlite:///{Path(tmp) / 'class.db'}"
            gen_s = generate(Path(tmp) / "class.db", args.events, rows)
        print(f"generated {args.events:,} events in {gen_s:.0f} s; starting the backend (it builds the rollups)")
        started = time.perf_counter()
        backend = run_backend(Path(tmp), database_url=url, timeout=3600)
        start_s = time.perf_counter() - started
        built = re.search(r"Rollups built in ([0-9.]+) s", backend.logs())
        build_s = float(built.group(1)) if built else float("nan")
        print(f"backend up in {start_s:.0f} s (rollups built in {build_s:.0f} s)")
        engine = db.make_engine(url)
        from sqlmodel import Session

        lat: dict[str, list[float]] = {}
        same = {}
        try:
            with backend.client("read") as http, Session(engine) as session:
                timed_get(http, base + "/summary")  # warm-up: the first read of each path
                timed_get(http, base + "/summary", EVERYTHING)
                scope = adapter.Scope(course, section, assignment)
                for _ in range(args.requests):
                    for name, call in (
                        ("assignment summary", lambda: timed_get(http, base + "/summary")),
                        ("assignment summary (scan)", lambda: timed_get(http, base + "/summary", EVERYTHING)),
                        ("course listing, one course", lambda: timed_get(http, "/api/v1/courses", {"course": course})),
                        (
                            "course listing, one course (scan)",
                            lambda: timed_get(http, "/api/v1/courses", {"course": course} | EVERYTHING),
                        ),
                        (
                            "old API assignment statistics",
                            lambda: timed_get(http, f"/api/assignment/{course}-{section}/{assignment}"),
                        ),
                        (
                            "old API assignment statistics (scan, in-process)",
                            lambda: timed_call(lambda: stats.assignment_stats(adapter.snaps(session, scope))),
                        ),
                        (
                            "old API build average",
                            lambda: timed_get(http, f"/api/build_avg/{course}-{section}/{assignment}"),
                        ),
                        (
                            "old API build average (scan, in-process)",
                            lambda: timed_call(lambda: adapter.log_counts(session, scope, adapter.BUILD_TYPES)),
                        ),
                        (
                            "student timeline, first page (100)",
                            lambda: timed_get(
                                http, base + f"/students/2024{rng.randrange(STUDENTS):05d}/timeline", {"limit": 100}
                            ),
                        ),
                    ):
                        ms, answer = call()
                        lat.setdefault(name, []).append(ms)
                        same.setdefault(name, answer)
                    session.rollback()  # the in-process scans read fresh, like a request
        finally:
            backend.stop()
            engine.dispose()

    fast_summary, slow_summary = same["assignment summary"], same["assignment summary (scan)"]
    assert fast_summary["events"] == STUDENTS * PER_STUDENT, fast_summary["events"]
    agree = {
        "assignment summary": same_summary(fast_summary, slow_summary),
        "course listing, one course": same["course listing, one course"] == same["course listing, one course (scan)"],
        "old API build average": same["old API build average"]["avg_count"]
        == stats.avg_count(*same["old API build average (scan, in-process)"]),
    }
    st = same["old API assignment statistics (scan, in-process)"]
    rolled = same["old API assignment statistics"]
    agree["old API assignment statistics"] = (
        rolled["percentile_90"] == st.percentile_90
        and rolled["percentile_50"] == st.percentile_50
        and rolled["avg_bytes"] == st.avg_bytes
        and rolled["avg_num"] == st.avg_num
        and [t["student_num"] for t in rolled["top_7"]] == [t.student for t in st.top_7]
    )
    db_name = "PostgreSQL" if pg else "SQLite (WAL)"
    lines = [
        f"Data: {args.events:,} events in {db_name}; the measured assignment holds {STUDENTS * PER_STUDENT:,} "
        f"({STUDENTS} students x {PER_STUDENT:,} events). Generated in {gen_s:.0f} s; the backend's start-up "
        f"built the rollups from every event in {build_s:.0f} s (once, after the upgrade to revision 0007).",
        f"Machine: nproc={os.cpu_count()}, kernel {platform.release()}, Python {platform.python_version()}, "
        f"load average {load:.1f} at start (the machine is shared). Requests interleaved, {args.requests} per row.",
        f"Command: `.venv/bin/python bench/backend_class_queries.py --events {args.events} --requests {args.requests}"
        f"{' --postgres' if pg else ''}`",
        "",
        "| view (real HTTP, one client) | p50 | p95 | scan it replaced: p50 / p95 | ratio of p50 | same answer |",
        "|---|---|---|---|---|---|",
    ]
    for name in (
        "assignment summary",
        "course listing, one course",
        "old API assignment statistics",
        "old API build average",
    ):
        fast = lat[name]
        slow_name = next(k for k in lat if k.startswith(name + " (scan"))
        slow = lat[slow_name]
        lines.append(
            f"| {name} | {statistics.median(fast):.1f} ms | **{p95(fast):.1f} ms** | "
            f"{statistics.median(slow):.0f} / {p95(slow):.0f} ms | {statistics.median(slow) / statistics.median(fast):.0f}x | "
            f"{'yes' if agree[name] else 'NO'} |"
        )
    tl = lat["student timeline, first page (100)"]
    lines.append(
        f"| student timeline, first page (100) | {statistics.median(tl):.1f} ms | **{p95(tl):.1f} ms** | | | |"
    )
    lines += [
        "",
        "Target (scale issue): summary, old assignment statistics and course listing p95 <= 100 ms at 400,000 events "
        "in one assignment and 10,000,000 in the database. The old API scans ran in-process (no HTTP).",
    ]
    print("\n".join(lines))
    if not args.no_write:
        key, title = (
            ("class_queries_postgres", "Class-size views, PostgreSQL") if pg else ("class_queries", "Class-size views")
        )
        write_section(key, f"{title} (bench/backend_class_queries.py)", "\n".join(lines))
    return 0 if all(agree.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
