"""Benchmark: ingest throughput of a real backend over HTTP (SQLite by default).

Starts ``watcher backend`` as a subprocess on loopback (the same helper the tests use), then posts
pre-serialised batches of wire events with one keep-alive HTTP client: batched throughput (events/s with
batches of 1000), the same with two concurrent clients, and single-event requests/s.
Writes bench/results/backend.md (section "ingest").
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import platform
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

import interpreters  # noqa: E402
from _backend_results import write_section  # noqa: E402

from support.backend import run_backend  # noqa: E402
from watcher_core import wire  # noqa: E402

T0 = datetime(2026, 3, 2, tzinfo=UTC)
# What gcc -Wall printed for a student's failed compile (C.UTF-8), for --stderr: what the backend parses.
GCC_STDERR = (
    "src/file1.c: In function ‘main’:\n"
    "src/file1.c:7:5: error: expected ‘,’ or ‘;’ before ‘total’\n"
    "    7 |     total += 1;\n      |     ^~~~~\n"
    "src/file1.c:8:12: error: ‘totl’ undeclared (first use in this function); did you mean ‘total’?\n"
    "    8 |     return totl;\n      |            ^~~~\n      |            total\n"
    "src/file1.c:8:12: note: each undeclared identifier is reported only once for each function it appears in\n"
    "src/file1.c:6:9: warning: unused variable ‘total’ [-Wunused-variable]\n"
    "    6 |     int total = 0\n      |         ^~~~~\n"
)
STDERR = [False]  # --stderr: failed compiles carry GCC_STDERR, successful ones an empty stderr


def make_events(n: int, tag: str, shape: str = "spread", batch: int = 1000) -> list[dict]:
    """A realistic mix: 60% saves, 20% compiles, 15% runs, 5% deletes.

    ``spread``: consecutive events belong to different students (40 courses x 50 students, 5 assignments),
    so a batch of 1000 touches about 1000 students, the worst case for the rollups. ``node``: each batch
    comes from one node of 50, holding the events of that node's 40 students, as its filemon sends them.
    """
    out = []
    for i in range(n):
        if shape == "node":
            node = (i // batch) % 50
            number = node * 40 + i % 40
            course, student = f"c{number // 200}", str(202400000 + number)
        else:
            course, student = f"c{i % 40}", str(202400000 + (i // 40) % 50)
        ts = (T0 + timedelta(milliseconds=i * 37)).isoformat()
        # ids like the agents' (wire.make_event_id: hashes), so the unique index sees random keys, not sorted ones
        base = {
            "event_id": wire.make_event_id("bench", tag, i),
            "timestamp": ts,
            "node": f"node-{i % 3}",
            "course": course,
            "section": "1",
            "student_id": student,
            "assignment": f"hw{i % 5 + 1}",
            "path": f"src/file{i % 7}.c",
        }
        kind = i % 20
        if kind < 12:
            out.append(
                {**base, "type": "file.save", "source": "filemon", "sha256": f"{i:064x}", "size": 100 + i % 5000}
            )
        elif kind < 16:
            out.append(
                {
                    **base,
                    "type": "process.compile",
                    "source": "procmon",
                    "argv": ["gcc", "-Wall", "src/file1.c", "-o", "a.out"],
                    "cwd": ".",
                    "exit_code": i % 2,
                    "started_at": ts,
                    "ended_at": ts,
                    "compiler": "gcc",
                    "sources": ["src/file1.c"],
                    "output": "a.out",
                    **({"stderr": GCC_STDERR if i % 2 else ""} if STDERR[0] else {}),
                }
            )
        elif kind < 19:
            out.append(
                {
                    **base,
                    "type": "process.run",
                    "source": "procmon",
                    "argv": ["./a.out"],
                    "cwd": ".",
                    "exit_code": 0,
                    "started_at": ts,
                    "ended_at": ts,
                    "kind": "binary",
                    "target": "a.out",
                }
            )
        else:
            out.append({**base, "type": "file.delete", "source": "filemon"})
    return out


def post_batches(url: str, headers: dict, bodies: list[bytes]) -> tuple[float, list[float]]:
    lat = []
    with httpx.Client(base_url=url, headers={**headers, "Content-Type": "application/json"}, timeout=120) as http:
        start = time.perf_counter()
        for body in bodies:
            t = time.perf_counter()
            r = http.post("/api/v1/events", content=body)
            lat.append(time.perf_counter() - t)
            if r.status_code != 200 or r.json()["rejected"]:
                raise SystemExit(f"ingest failed: {r.status_code} {r.text[:300]}")
        return time.perf_counter() - start, lat


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=100_000, help="events for the batched runs (default 100000)")
    p.add_argument("--batch", type=int, default=1000, help="events per request (default 1000)")
    p.add_argument("--singles", type=int, default=2000, help="single-event requests (default 2000)")
    p.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="independent runs, each on a fresh server and database; medians reported (default 3)",
    )
    p.add_argument(
        "--prefill",
        type=int,
        default=0,
        help="SQLite only: start from a database already holding this many events "
        "(generated like bench/backend_queries.py), to measure ingest at steady state",
    )
    p.add_argument("--database-url", help="default: SQLite in a temp dir")
    p.add_argument(
        "--postgres",
        action="store_true",
        help="start a private PostgreSQL (tests/support/postgres.py) and measure against it",
    )
    p.add_argument(
        "--shape",
        choices=("spread", "node"),
        default="spread",
        help="spread: every event of a batch from another student (default); node: a batch holds one node's 40 students",
    )
    p.add_argument(
        "--against",
        metavar="REV",
        help="also measure the backend of this git revision (a temporary worktree), interleaved run by run, "
        "and report both side by side with their ratio (section ingest_against_<shape>[_<REV>])",
    )
    p.add_argument(
        "--stderr",
        action="store_true",
        help="compiles carry what gcc printed (failed ones: 4 diagnostics, ~700 bytes), as procmon captures it",
    )
    interpreters.add_argument(p)
    p.add_argument("--no-write", action="store_true", help="do not write bench/results/backend.md")
    args = p.parse_args(argv)
    STDERR[0] = args.stderr
    args.interpreter = interpreters.backend_python(args.python)
    if args.against:
        return compare(args)

    load = os.getloadavg()[0]
    pg = None
    runs = []
    try:
        for i in range(args.repeat):
            url = args.database_url
            if args.postgres:
                from support.postgres import PostgresServer

                if pg is None:
                    pg = PostgresServer().start()
                url = pg.create_database(f"bench{i}")
            runs.append(run_once(args, url, args.prefill))
            print(f"run {i + 1}: " + ", ".join(f"{k} {v:,.1f}" for k, v in runs[-1].items()), flush=True)
    finally:
        if pg is not None:
            pg.close()
    report(args, runs, load)
    return 0


def compare(args) -> int:
    """This tree and REV, alternating run by run (fresh server and database each), medians side by side."""
    import subprocess

    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "against"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), args.against], check=True)
        old_path = interpreters.tree_path(tree)
        runs: dict[str, list[dict[str, float]]] = {"this tree": [], args.against: []}
        try:
            for i in range(args.repeat):
                for name, env in (("this tree", None), (args.against, {"PYTHONPATH": old_path})):
                    runs[name].append(run_once(args, None, 0, env))
                    print(f"run {i + 1}, {name}: " + ", ".join(f"{k} {v:,.1f}" for k, v in runs[name][-1].items()))
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False)
    med = {name: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for name, rs in runs.items()}
    new, old = med["this tree"], med[args.against]
    lines = [
        f"Side by side with revision {args.against}: medians of {args.repeat} runs each, alternating, each on a fresh "
        f"server and database; shape `{args.shape}`. Machine: nproc={os.cpu_count()}, kernel {platform.release()}, "
        f"load average {load:.1f} at start (shared).",
        f"Command: `.venv/bin/python bench/backend_ingest.py --events {args.events} --batch {args.batch} "
        f"--singles {args.singles} --repeat {args.repeat} --shape {args.shape}"
        f"{' --stderr' if args.stderr else ''}{interpreters.flag(args.python)} --against {args.against}`",
        f"{interpreters.sentence(args.python, args.interpreter)} {args.against} ran with the same.",
        "",
        f"| measurement | this tree | {args.against} | ratio |",
        "|---|---|---|---|",
    ]
    for key in ("events/s", "2 clients events/s", "duplicates events/s", "single requests/s", "single p50 ms"):
        lines.append(f"| {key} | {new[key]:,.1f} | {old[key]:,.1f} | {new[key] / old[key]:.2f} |")
    print("\n".join(lines))
    if not args.no_write:
        # the revision in the key for any other than the one the rollups were measured against
        key = f"ingest_against_{args.shape}" + ("" if args.against == "627b511" else f"_{args.against}")
        key += "_stderr" if args.stderr else ""
        with_stderr = ", compiles with their stderr" if args.stderr else ""
        write_section(
            key,
            f"Ingest side by side with {args.against}, shape {args.shape}{with_stderr} (bench/backend_ingest.py)",
            "\n".join(lines),
        )
    return 0


def run_once(args, database_url: str | None, prefill: int = 0, env: dict | None = None) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        if prefill and not database_url:
            from backend_queries import generate

            dbfile = Path(tmp) / "prefilled.db"
            generate(dbfile, prefill)
            database_url = f"sqlite:///{dbfile}"
        backend = run_backend(
            Path(tmp),
            database_url=database_url,
            env=env if env is not None else interpreters.this_tree_env(args.python),
            python=args.interpreter,
        )
        try:
            headers = backend.headers("ingest")
            # warm-up (first requests import and compile things)
            post_batches(backend.url, headers, [json.dumps(make_events(200, "warm")).encode()])

            events = make_events(args.events, "seq", args.shape, args.batch)
            bodies = [json.dumps(events[i : i + args.batch]).encode() for i in range(0, len(events), args.batch)]
            seq_s, seq_lat = post_batches(backend.url, headers, bodies)

            events2 = make_events(args.events, "par", args.shape, args.batch)
            bodies2 = [json.dumps(events2[i : i + args.batch]).encode() for i in range(0, len(events2), args.batch)]
            halves = [bodies2[0::2], bodies2[1::2]]
            start = time.perf_counter()
            with concurrent.futures.ThreadPoolExecutor(2) as pool:
                list(pool.map(lambda b: post_batches(backend.url, headers, b), halves))
            par_s = time.perf_counter() - start

            dup_s, _ = post_batches(backend.url, headers, bodies)  # the same batches again: all duplicates

            singles = [json.dumps([e]).encode() for e in make_events(args.singles, "one")]
            one_s, one_lat = post_batches(backend.url, headers, singles)
        finally:
            backend.stop()
    return {
        "events/s": args.events / seq_s,
        "p50 ms": statistics.median(seq_lat) * 1000,
        "p95 ms": statistics.quantiles(seq_lat, n=20)[18] * 1000,
        "2 clients events/s": args.events / par_s,
        "duplicates events/s": args.events / dup_s,
        "single requests/s": args.singles / one_s,
        "single p50 ms": statistics.median(one_lat) * 1000,
    }


def report(args, runs: list[dict[str, float]], load: float) -> None:
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    lo = {k: min(r[k] for r in runs) for k in runs[0]}
    hi = {k: max(r[k] for r in runs) for k in runs[0]}

    def rng(k: str) -> str:
        return f"{lo[k]:,.0f}-{hi[k]:,.0f}" if len(runs) > 1 else ""

    db = "PostgreSQL" if args.postgres or args.database_url else "SQLite (WAL)"
    if args.prefill:
        db += f", already holding {args.prefill:,} events"
    flags = (" --postgres" if args.postgres else "") + (f" --prefill {args.prefill}" if args.prefill else "")
    flags += (f" --shape {args.shape}" if args.shape != "spread" else "") + interpreters.flag(args.python)
    lines = [
        f"Database: {db}; machine: nproc={os.cpu_count()}, kernel {platform.release()}, load average {load:.1f} "
        f"at start (the machine is shared with other work). {interpreters.sentence(args.python, args.interpreter)}",
        f"Command: `.venv/bin/python bench/backend_ingest.py --events {args.events} --batch {args.batch} "
        f"--singles {args.singles} --repeat {args.repeat}{flags}` (medians of {len(runs)} runs, each on a fresh "
        "server and database; min-max in the range column)",
        "",
        "| measurement | median | range |",
        "|---|---|---|",
        f"| batched ingest, batches of {args.batch}, 1 client | **{med['events/s']:,.0f} events/s** "
        f"(request p50 {med['p50 ms']:.1f} ms, p95 {med['p95 ms']:.1f} ms) | {rng('events/s')} |",
        f"| batched ingest, 2 concurrent clients | {med['2 clients events/s']:,.0f} events/s | {rng('2 clients events/s')} |",
        f"| the same batches again (all duplicates) | {med['duplicates events/s']:,.0f} events/s | {rng('duplicates events/s')} |",
        f"| single-event requests, 1 client | **{med['single requests/s']:,.0f} requests/s** "
        f"(p50 {med['single p50 ms']:.2f} ms) | {rng('single requests/s')} |",
        "",
        "Target: batched ingest >= 20,000 events/s on a 2-core machine. One real HTTP server (uvicorn, one "
        "process) and a keep-alive client on the same machine, so client and server share the two cores. "
        "Event ids are hashes like the agents' (random keys for the unique index).",
    ]
    print("\n".join(lines))
    if not args.no_write:
        key, title = (
            ("ingest_postgres", "Ingest throughput, PostgreSQL") if args.postgres else ("ingest", "Ingest throughput")
        )
        if args.prefill:
            key, title = key + "_prefilled", title + f", into {args.prefill:,} stored events"
        if args.shape != "spread":
            key, title = key + f"_{args.shape}", title + f", shape {args.shape}"
        write_section(key, f"{title} (bench/backend_ingest.py)", "\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
