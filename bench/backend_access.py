"""Benchmark: what access control costs a read (bench/results/access.md).

A real backend (``watcher backend``, SQLite by default, ``--postgres`` for a private PostgreSQL) on
loopback holds one assignment of ``--students`` students. One keep-alive client sends ``--requests``
sequential requests of each kind, in turn (so a slow stretch of the shared machine hits every kind),
and reports the latency p50/p95 per kind:

* an assignment summary with the environment read token (no database lookup for the token);
* the same with a named token limited to the section (one indexed lookup of the token's sha256, in a
  worker thread);
* the same with single sign-on headers from a trusted proxy (no lookup);
* a snapshot content, named with its student, with the environment token and with the named token
  (each also writes one row of the read audit).

    .venv/bin/python bench/backend_access.py --requests 300
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from results_file import ResultsFile, machine  # noqa: E402

from support.backend import run_backend, wire_event  # noqa: E402
from watcher_core import snapshots  # noqa: E402

RESULTS = ResultsFile("access", "Access control benchmarks", ["reads", "reads_postgres"])


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=300, help="requests of each kind (default 300)")
    p.add_argument("--students", type=int, default=40, help="students in the assignment (default 40)")
    p.add_argument("--postgres", action="store_true", help="a private PostgreSQL instead of SQLite")
    args = p.parse_args(argv)

    with contextlib.ExitStack() as stack:
        url = None
        if args.postgres:
            from support.postgres import PostgresServer

            url = stack.enter_context(PostgresServer()).create_database("bench_access")
        env = {"WATCHER_SSO_TRUSTED_PROXIES": "127.0.0.1/32", "WATCHER_SSO_GROUPS": "ta=os/1"}
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-access-")))
        backend = stack.enter_context(run_backend(tmp, database_url=url, env=env))
        data = b"int main(void) { return 0; }\n"
        sha, _ = snapshots.write_snapshot(backend.snapshot_dir, data)
        events = []
        for i in range(args.students):
            student = f"2024{i:05d}"
            events += [wire_event("file.save", student_id=student, sha256=sha, size=len(data)) for _ in range(20)]
            events += [wire_event("process.compile", student_id=student) for _ in range(10)]
        for start in range(0, len(events), 1000):
            backend.post_events(events[start : start + 1000])
        with backend.client("admin") as http:
            named = http.post("/api/v1/admin/tokens", json={"name": "bench-ta", "courses": ["os/1"]}).json()["token"]
        summary = "/api/v1/courses/os/sections/1/assignments/hw1/summary"
        owner = {"course": "os", "section": "1", "assignment": "hw1", "student_id": "202400000"}
        kinds = {
            "summary, environment token": (summary, None, backend.headers("read")),
            "summary, named section token": (summary, None, {"Authorization": f"Bearer {named}"}),
            "summary, single sign-on headers": (summary, None, {"X-Forwarded-User": "kim", "X-Forwarded-Groups": "ta"}),
            "content + audit row, environment token": (f"/api/v1/snapshots/{sha}", owner, backend.headers("read")),
            "content + audit row, named section token": (
                f"/api/v1/snapshots/{sha}",
                owner,
                {"Authorization": f"Bearer {named}"},
            ),
        }
        times: dict[str, list[float]] = {k: [] for k in kinds}
        with httpx.Client(base_url=backend.url, timeout=30) as http:
            for kind, (path, params, headers) in kinds.items():  # warm up
                assert http.get(path, params=params, headers=headers).status_code == 200, kind
            for _ in range(args.requests):
                for kind, (path, params, headers) in kinds.items():
                    began = time.perf_counter()
                    r = http.get(path, params=params, headers=headers)
                    times[kind].append((time.perf_counter() - began) * 1000)
                    assert r.status_code == 200, (kind, r.status_code, r.text[:200])

    command = f".venv/bin/python bench/backend_access.py --requests {args.requests} --students {args.students}"
    command += " --postgres" if args.postgres else ""
    lines = [
        f"One assignment of {args.students} students ({len(events)} events), "
        f"{'PostgreSQL' if args.postgres else 'SQLite'}; {args.requests} sequential requests of each kind, "
        f"interleaved, one keep-alive client on loopback. Machine: {machine()}. Command: `{command}`",
        "",
        "| request | p50 ms | p95 ms | mean ms |",
        "|---|---:|---:|---:|",
    ]
    for kind, values in times.items():
        lines.append(
            f"| {kind} | {percentile(values, 50):.2f} | {percentile(values, 95):.2f} | {statistics.fmean(values):.2f} |"
        )
    print("\n".join(lines))
    key, title = (
        ("reads_postgres", "Reads by kind of principal, PostgreSQL")
        if args.postgres
        else ("reads", "Reads by kind of principal")
    )
    RESULTS.write_section(key, f"{title} (bench/backend_access.py)", "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
