"""Benchmark: assignment summary and student timeline latency with 1,000,000 stored events (SQLite).

Generates the events straight into a migrated SQLite database (40 courses x 5 assignments x 50 students,
100 events each: saves, compiles, runs, deletes over two weeks), starts a real backend on it, and measures
p50/p95 of GET .../summary, GET .../timeline (first page of 100 and a page deep inside via cursor), the
file list and the course listing over loopback HTTP. Writes bench/results/backend.md (section "queries").
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

import against  # noqa: E402
import interpreters  # noqa: E402
from _backend_results import write_section  # noqa: E402

from support.backend import run_backend  # noqa: E402
from watcher_backend import db, migrate  # noqa: E402
from watcher_backend.store import _COLUMNS  # noqa: E402

T0 = datetime(2026, 3, 2, tzinfo=UTC)
COURSES, ASSIGNMENTS, STUDENTS = 40, 5, 50


def fmt(dt: datetime) -> str:
    return dt.replace(tzinfo=None).isoformat(" ", "microseconds")


# The order of the fields in the tuples rows() builds; placed into the store's columns by name, so the same
# events go into a revision with more columns (stderr, notebook cells: left empty) or fewer.
LAYOUT = (
    "event_id", "type", "timestamp", "received_at", "node", "source", "course", "section", "student_id",
    "assignment", "path", "sha256", "size", "limit", "argv", "argv_truncated", "cwd", "exit_code", "signal",
    "started_at", "ended_at", "duration_ms", "pid", "compiler", "sources", "output", "kind", "target",
)  # fmt: skip


def placed(layout_rows):
    """Tuples in LAYOUT order -> tuples in _COLUMNS order (columns the events do not use are NULL)."""
    unknown = set(LAYOUT) - set(_COLUMNS)
    if unknown:
        raise SystemExit(f"the event table has no column {sorted(unknown)}")
    where = [LAYOUT.index(c) if c in LAYOUT else None for c in _COLUMNS]
    for row in layout_rows:
        yield tuple(None if i is None else row[i] for i in where)


def rows(total: int, seed: int = 7):
    """Events in _COLUMNS order (see layout_rows)."""
    return placed(layout_rows(total, seed))


def layout_rows(total: int, seed: int = 7):
    rng = random.Random(seed)
    per_student = max(1, total // (COURSES * ASSIGNMENTS * STUDENTS))
    received = fmt(T0 + timedelta(days=30))
    argv = json.dumps(["gcc", "-Wall", "main.c", "-o", "main"])
    n = 0
    for c in range(COURSES):
        for a in range(ASSIGNMENTS):
            for s in range(STUDENTS):
                t = T0 + timedelta(days=a * 2, seconds=rng.randrange(86400))
                for i in range(per_student):
                    t += timedelta(seconds=rng.choice((5, 20, 45, 90, 240, 900, 4000)))
                    ts = fmt(t)
                    base = (
                        f"gen-{n:010d}",
                        None,
                        ts,
                        received,
                        f"node-{s % 3}",
                        None,
                        f"course{c:02d}",
                        "1",
                        f"2024{s:05d}",
                        f"hw{a + 1}",
                        f"src/file{i % 4}.c",
                    )
                    k = rng.random()
                    if k < 0.6:
                        rest = (f"{n:064x}", 200 + (i * 37) % 4000, None) + (None,) * 14
                        row = base[:1] + ("file.save",) + base[2:5] + ("filemon",) + base[6:] + rest
                    elif k < 0.62:
                        row = base[:1] + ("file.delete",) + base[2:5] + ("filemon",) + base[6:] + (None,) * 17
                    else:
                        compile_ = k < 0.85
                        proc = (
                            None,
                            None,
                            None,
                            argv if compile_ else '["./main"]',
                            False,
                            ".",
                            rng.choice((0, 0, 0, 1)),
                            None,
                            ts,
                            ts,
                            120.0,
                            1000 + i,
                        )
                        tail = (
                            ("gcc", '["main.c"]', "main", None, None)
                            if compile_
                            else (None, None, None, "binary", "main")
                        )
                        typ = "process.compile" if compile_ else "process.run"
                        row = base[:1] + (typ,) + base[2:5] + ("procmon",) + base[6:] + proc + tail
                    n += 1
                    yield row


def generate(path: Path, total: int, make_rows=None) -> float:
    """Straight into a migrated SQLite file: ``make_rows(total)`` (default ``rows``) event tuples in _COLUMNS order."""
    engine = db.make_engine(f"sqlite:///{path}")
    migrate.upgrade(engine)
    engine.dispose()
    start = time.perf_counter()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA cache_size=-262144")
    sql = f"INSERT INTO event ({', '.join(chr(34) + c + chr(34) for c in _COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"
    with conn:
        conn.executemany(sql, (make_rows or rows)(total))
    conn.execute("ANALYZE")
    conn.close()
    return time.perf_counter() - start


def generate_postgres(url: str, total: int, make_rows=None) -> float:
    import psycopg

    engine = db.make_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    start = time.perf_counter()
    columns = ", ".join(chr(34) + c + chr(34) for c in _COLUMNS)
    with psycopg.connect(url) as conn:
        with conn.cursor() as cur, cur.copy(f"COPY event ({columns}) FROM STDIN") as copy:
            for row in (make_rows or rows)(total):
                copy.write_row(row)
        conn.execute("ANALYZE event")
    return time.perf_counter() - start


def backend_has_legacy(http: httpx.Client) -> bool:
    return "/api/build_avg/{class_div}/{hw_name}" in http.get("/openapi.json").json()["paths"]


def measure_paths(
    http: httpx.Client, paths: list[tuple[str, dict]], pid: int | None = None
) -> tuple[float, float, float]:
    """p50 and p95 in ms, and with ``pid`` the backend's CPU ms per request (nan without)."""
    lat = []
    cpu0 = against.cpu_seconds(pid) if pid else 0.0
    for path, params in paths:
        t = time.perf_counter()
        r = http.get(path, params=params)
        lat.append((time.perf_counter() - t) * 1000)
        if r.status_code != 200:
            raise SystemExit(f"{path}: {r.status_code} {r.text[:200]}")
    cpu = (against.cpu_seconds(pid) - cpu0) * 1000 / len(paths) if pid else float("nan")
    return statistics.median(lat), statistics.quantiles(lat, n=20)[18], cpu


def queries(
    http: httpx.Client, rng: random.Random, requests: int, pid: int | None = None
) -> dict[str, tuple[float, float, float]]:
    """Every query type in turn, ``requests`` times (the old API's and the course listing a quarter as often):
    p50, p95 and the backend's (``pid``) CPU ms per request of each."""

    def measure(http, paths):
        return measure_paths(http, paths, pid)

    def assignment():
        return f"/api/v1/courses/course{rng.randrange(COURSES):02d}/sections/1/assignments/hw{rng.randrange(ASSIGNMENTS) + 1}"

    def student():
        return assignment() + f"/students/2024{rng.randrange(STUDENTS):05d}"

    for _ in range(10):  # warm-up
        http.get(assignment() + "/summary")
    results = {}
    results["assignment summary"] = measure(http, [(assignment() + "/summary", {}) for _ in range(requests)])
    results["summary, one-week window"] = measure(
        http,
        [
            (assignment() + "/summary", {"since": "2026-03-02T00:00:00Z", "until": "2026-03-09T00:00:00Z"})
            for _ in range(requests)
        ],
    )
    results["student timeline, first page (100)"] = measure(
        http, [(student() + "/timeline", {"limit": 100}) for _ in range(requests)]
    )
    deep = []
    for _ in range(requests):
        path = student() + "/timeline"
        first = http.get(path, params={"limit": 50}).json()
        deep.append((path, {"limit": 50, **({"cursor": first["next_cursor"]} if first["next_cursor"] else {})}))
    results["student timeline, second page (cursor)"] = measure(http, deep)
    results["student file list"] = measure(http, [(student() + "/files", {}) for _ in range(requests)])

    def legacy(fmt: str) -> str:
        return fmt.format(
            c=f"course{rng.randrange(COURSES):02d}-1",
            a=f"hw{rng.randrange(ASSIGNMENTS) + 1}",
            s=f"2024{rng.randrange(STUDENTS):05d}",
        )

    if backend_has_legacy(http):
        results["old API: build average of an assignment"] = measure(
            http, [(legacy("/api/build_avg/{c}/{a}"), {}) for _ in range(requests // 4)]
        )
        results["old API: assignment statistics"] = measure(
            http, [(legacy("/api/assignment/{c}/{a}"), {}) for _ in range(requests // 4)]
        )
        results["old API: a student's build logs"] = measure(
            http, [(legacy("/api/{c}/{a}/{s}/logs/build"), {}) for _ in range(requests // 4)]
        )
    results["course listing (one course)"] = measure(
        http,
        [("/api/v1/courses", {"course": f"course{rng.randrange(COURSES):02d}"}) for _ in range(requests // 4)],
    )
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=1_000_000, help="stored events (default 1000000)")
    p.add_argument("--requests", type=int, default=200, help="requests per query type (default 200)")
    p.add_argument(
        "--postgres",
        action="store_true",
        help="store the events in a private PostgreSQL (tests/support/postgres.py) instead of SQLite",
    )
    p.add_argument(
        "--against",
        metavar="REV",
        help="also run this git revision's backend on the same events (its own schema), alternating run by run, "
        "and report both side by side (section queries_against_<REV>, SQLite)",
    )
    p.add_argument("--repeat", type=int, default=3, help="with --against: runs per tree (default 3)")
    p.add_argument(
        "--as-built",
        action="store_true",
        help="with --against: hide httptools and uvloop from REV when it did not declare them (as its image was "
        "built); by default both trees run with the same packages, so only their code differs",
    )
    p.add_argument("--generate-only", type=Path, metavar="FILE", help=argparse.SUPPRESS)  # REV's schema, in REV
    interpreters.add_argument(p)
    p.add_argument("--no-write", action="store_true", help="do not write bench/results/backend.md")
    args = p.parse_args(argv)
    if args.generate_only:
        print(f"{generate(args.generate_only, args.events):.1f}")
        return 0
    args.interpreter = interpreters.backend_python(args.python)
    if args.against:
        if args.postgres:
            raise SystemExit("--against runs on SQLite only")
        return run_against(args)
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

    with tempfile.TemporaryDirectory() as tmp:
        if pg is not None:
            url = pg.create_database("bench")
            gen_s = generate_postgres(url, args.events)
            import psycopg

            with psycopg.connect(url) as conn:
                stored = conn.execute("SELECT count(*) FROM event").fetchone()[0]
        else:
            dbfile = Path(tmp) / "bench.db"
            gen_s = generate(dbfile, args.events)
            stored = sqlite3.connect(dbfile).execute("SELECT count(*) FROM event").fetchone()[0]
            url = f"sqlite:///{dbfile}"
        print(f"generated {stored:,} events in {gen_s:.1f} s")
        backend = run_backend(
            Path(tmp),
            database_url=url,
            timeout=STARTUP_TIMEOUT,
            env=interpreters.this_tree_env(args.python),
            python=args.interpreter,
        )
        try:
            with backend.client("read") as http:
                results = queries(http, rng, args.requests, backend.process.pid)
        finally:
            backend.stop()

    per_assignment = args.events // (COURSES * ASSIGNMENTS)
    lines = [
        f"Data: {stored:,} events in {'PostgreSQL' if pg else 'SQLite (WAL)'}: {COURSES} courses x {ASSIGNMENTS} assignments x {STUDENTS} students "
        f"(~{per_assignment:,} events per assignment, ~{per_assignment // STUDENTS} per student); generated in {gen_s:.0f} s.",
        f"Machine: nproc={os.cpu_count()}, kernel {platform.release()}, load average {load:.1f} at start (the "
        f"machine is shared). {interpreters.sentence(args.python, args.interpreter)}",
        f"Command: `.venv/bin/python bench/backend_queries.py --events {args.events} --requests {args.requests}"
        f"{' --postgres' if pg else ''}{interpreters.flag(args.python)}`",
        "",
        "| query (real HTTP, one client) | p50 | p95 | backend CPU per request |",
        "|---|---|---|---|",
    ]
    lines += [f"| {n} | {p50:.1f} ms | **{p95:.1f} ms** | {cpu:.1f} ms |" for n, (p50, p95, cpu) in results.items()]
    lines += ["", "Target: assignment summary and student timeline p95 < 200 ms with 1,000,000 stored events."]
    print("\n".join(lines))
    if not args.no_write:
        key, title = ("queries_postgres", "Query latency, PostgreSQL") if pg else ("queries", "Query latency")
        write_section(key, f"{title} (bench/backend_queries.py)", "\n".join(lines))
    return 0


# A backend started on a database of a million events builds its rollups before it answers /health
# (revision 0007 on): minutes on a busy machine, not the 30 s a test allows.
STARTUP_TIMEOUT = 1200


def run_against(args) -> int:
    """This tree's backend and REV's, each on the same events in a database of its own schema, alternating:
    per run and tree one backend started on its database and every query type measured (the same requests
    for both trees: one random seed per run). Medians over the runs of each query's p50 and p95."""
    load = os.getloadavg()[0]
    rev = against.checkout(args.against, hide=against.HTTP_SPEEDUPS if args.as_built else ())
    mine = against.this_tree()  # once: a commit made while it runs must not rename the column
    here = f"this tree ({mine})"
    trees = {here: None, args.against: rev}
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
    gen: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for name, r in trees.items():
            files[name] = Path(tmp) / f"{len(files)}.db"
            # generated by the tree's own code (its migrations, its columns), in a process of its own
            out = subprocess.run(
                [sys.executable, __file__, "--generate-only", str(files[name]), "--events", str(args.events)],
                env=r.child_env() if r else None,
                check=True,
                capture_output=True,
                text=True,
            )
            gen[name] = float(out.stdout.strip().splitlines()[-1])
            count = sqlite3.connect(files[name]).execute("SELECT count(*) FROM event").fetchone()[0]
            if count != args.events:
                raise SystemExit(f"{name}: {count} events generated, not {args.events}")
            print(f"{name}: generated {count:,} events in {gen[name]:.0f} s", flush=True)
        for i in range(args.repeat):
            for name, r in trees.items():
                started = time.perf_counter()
                backend = run_backend(
                    Path(tmp) / f"run{i}-{len(runs[name])}-{name[:4]}",
                    database_url=f"sqlite:///{files[name]}",
                    env=r.env if r else interpreters.this_tree_env(args.python),
                    timeout=STARTUP_TIMEOUT,
                    python=args.interpreter,
                )
                try:
                    if i == 0:
                        print(f"{name}: backend up in {time.perf_counter() - started:.0f} s", flush=True)
                    with backend.client("read") as http:
                        results = queries(http, random.Random(1000 + i), args.requests, backend.process.pid)
                finally:
                    backend.stop()
                flat = {
                    f"{q} {m}": v
                    for q, figures in results.items()
                    for m, v in zip(("p50", "p95", "cpu"), figures, strict=True)
                }
                runs[name].append(flat)
                print(f"run {i + 1}, {name}: " + ", ".join(f"{k} {v:.1f}" for k, v in flat.items()), flush=True)
    med = {name: against.medians(r) for name, r in runs.items()}
    m = against.machine(load)
    command = (
        f".venv/bin/python bench/backend_queries.py --events {args.events} --requests {args.requests} "
        f"--repeat {args.repeat} --against {args.against}"
        + (" --as-built" if args.as_built else "")
        + interpreters.flag(args.python)
    )
    packages = (
        f"{args.against} without httptools and uvloop (hidden from it, as its image was built)"
        if args.as_built
        else "both trees with the same packages (httptools and uvloop included), so only their code differs"
    )
    per_assignment = args.events // (COURSES * ASSIGNMENTS)
    lines = [
        f"This tree ({mine}) side by side with {args.against} ({rev.short}): {args.events:,} events "
        f"in SQLite (WAL), {COURSES} courses x {ASSIGNMENTS} assignments x {STUDENTS} students (~{per_assignment:,} "
        "events per assignment), the same events generated into a database of each tree's own schema (its "
        f"migrations); {args.repeat} runs per tree alternating, each a backend started on its database and every "
        f"query type asked {args.requests} times (the old API's and the course listing {args.requests // 4}) "
        "by one client over loopback HTTP, the same requests for both trees. Figures are medians over the runs "
        f"of each run's p50, p95 and backend CPU per request; {packages}.",
        against.machine_line(m),
        interpreters.sentence(args.python, args.interpreter),
        f"Command: `{command}`",
        "",
        f"| query | p50, {here} | p50, {args.against} | ratio | p95, {here} | p95, {args.against} | ratio "
        f"| backend CPU per request, {here} | {args.against} | ratio | CPU ratio run by run |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    new, old = med[here], med[args.against]
    for q in dict.fromkeys(k.rsplit(" ", 1)[0] for k in new):
        cells = []
        for stat, fmt in (("p50", "{:.1f} ms"), ("p95", "{:.1f} ms"), ("cpu", "{:.2f} ms")):
            a, b = new.get(f"{q} {stat}"), old.get(f"{q} {stat}")
            cells += [fmt.format(a), fmt.format(b) if b is not None else "-", f"{a / b:.2f}" if b else "-"]
        pairs = [
            mine[f"{q} cpu"] / theirs[f"{q} cpu"]
            for mine, theirs in zip(runs[here], runs[args.against], strict=True)
            if theirs.get(f"{q} cpu")
        ]
        cells.append(f"{min(pairs):.2f}-{max(pairs):.2f}" if pairs else "-")
        lines.append(f"| {q} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Ratio: this tree / the revision (below 1 is faster). The backend's CPU per request (user + system "
        "time of its process over each query type's requests, /proc) is the figure a shared machine disturbs "
        "least; p50 and p95 include waiting for a core. Per-run figures: "
        f"bench/results/queries_against_{args.against}.json.",
    ]
    print("\n".join(lines))
    if not args.no_write:
        against.write_json(
            f"queries_against_{args.against}",
            {
                "benchmark": "bench/backend_queries.py --against",
                "command": command,
                "trees": {here: mine, args.against: rev.sha},
                "machine": m,
                "events": args.events,
                "generated_s": gen,
                "runs": runs,
                "medians": med,
            },
        )
        write_section(
            f"queries_against_{args.against}",
            f"Query latency side by side with {args.against} (bench/backend_queries.py --against)",
            "\n".join(lines),
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
