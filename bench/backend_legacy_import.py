"""How long `watcher import legacy` takes for one real assignment of the old system, in bench/results/backend.md.

    .venv/bin/python bench/backend_legacy_import.py                  # 200 students x 2,000 rows = 400,000 rows
    .venv/bin/python bench/backend_legacy_import.py --students 20    # a quick look

The old database is made here in the old tables' shape (original-watcher.md 1.2): per student 1,600 saves
(over 8 files, sizes 200-5,000 bytes), 250 compiles and 150 runs; with --contents the old filemon's folder
holds a file for every save (its UTC name one second after the database's KST time). The import goes into a
new SQLite database and snapshot store, through the real command (a subprocess); a second run measures the
idempotent re-run (everything a duplicate).
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _backend_results import write_section  # noqa: E402
from results_file import machine  # noqa: E402

SAVES, BUILDS, RUNS = 1600, 250, 150
FILES = [f"f{i}.c" for i in range(7)] + ["src@util.c"]
START = datetime(2025, 3, 4, 9, 0, 0)  # KST
SCHEMA = """
CREATE TABLE snapshot (id INTEGER PRIMARY KEY AUTOINCREMENT, class_div VARCHAR, hw_name VARCHAR, student_id INTEGER,
    filename VARCHAR, timestamp VARCHAR, file_size INTEGER);
CREATE TABLE buildlog (id INTEGER PRIMARY KEY AUTOINCREMENT, class_div VARCHAR, hw_name VARCHAR, student_id INTEGER,
    cwd VARCHAR, binary_path VARCHAR, cmdline VARCHAR, exit_code INTEGER, target_path VARCHAR, timestamp DATETIME);
CREATE TABLE runlog (id INTEGER PRIMARY KEY AUTOINCREMENT, class_div VARCHAR, hw_name VARCHAR, student_id INTEGER,
    cmdline VARCHAR, exit_code INTEGER, cwd VARCHAR, target_path VARCHAR, process_type VARCHAR, timestamp DATETIME);
"""


def make_old(root: Path, students: int, contents: bool) -> tuple[Path, Path]:
    rng = random.Random(7)
    db_path, folder = root / "old.db", root / "old-snapshots"
    db = sqlite3.connect(db_path)
    db.executescript(SCHEMA)
    pod = "/home/coder/project/hw1"
    for s in range(students):
        sid = 202500000 + s
        folder_id = f"{sid:012d}"  # zero-padded in the folder, an integer in the database
        t = START + timedelta(seconds=s)
        snaps, builds, runs = [], [], []
        for i in range(SAVES):
            t += timedelta(seconds=rng.randint(5, 40))
            name, size = FILES[i % len(FILES)], rng.randint(200, 5000)
            snaps.append(("os-1", "hw1", sid, name, t.strftime("%Y%m%d_%H%M%S"), size))
            if contents:
                utc = t - timedelta(hours=9) + timedelta(seconds=1)
                path = folder / "os-1" / "hw1" / folder_id / name / (utc.strftime("%Y%m%d_%H%M%S") + ".c")
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(rng.randbytes(size // 2 + 1).hex().encode()[:size])  # exactly size bytes
            if i % 6 == 0 and len(builds) < BUILDS:
                builds.append(
                    (
                        "os-1",
                        "hw1",
                        sid,
                        pod,
                        "/usr/bin/x86_64-linux-gnu-gcc-12",
                        f"gcc -o a {pod}/{name}",
                        rng.choice((0, 0, 1)),
                        f"{pod}/{name}",
                        str(t + timedelta(seconds=2)),
                    )
                )
            if i % 10 == 0 and len(runs) < RUNS:
                runs.append(("os-1", "hw1", sid, "./a", 0, pod, f"{pod}/a", "binary", str(t + timedelta(seconds=3))))
        db.executemany(
            "INSERT INTO snapshot (class_div, hw_name, student_id, filename, timestamp, file_size) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            snaps,
        )
        db.executemany(
            "INSERT INTO buildlog (class_div, hw_name, student_id, cwd, binary_path, cmdline, exit_code, "
            "target_path, timestamp) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            builds,
        )
        db.executemany(
            "INSERT INTO runlog (class_div, hw_name, student_id, cmdline, exit_code, cwd, target_path, "
            "process_type, timestamp) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            runs,
        )
        db.commit()
    db.close()
    return db_path, folder


def run_import(old: Path, folder: Path | None, new: Path) -> tuple[float, str]:
    args = [
        sys.executable,
        "-m",
        "watcher_core",
        "import",
        "legacy",
        "--database",
        str(old),
        "--quiet",
        "--database-url",
        f"sqlite:///{new / 'watcher.db'}",
        "--snapshot-dir",
        str(new / "snapshots"),
    ]
    if folder is not None:
        args += ["--snapshots", str(folder)]
    start = time.monotonic()
    proc = subprocess.run(args, capture_output=True, text=True, check=True)
    return time.monotonic() - start, proc.stderr.strip()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--students", type=int, default=200)
    p.add_argument("--contents", action="store_true", help="also make and import the old snapshot folder")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-import-") as tmp:
        root = Path(tmp)
        t0 = time.monotonic()
        old, folder = make_old(root, args.students, args.contents)
        print(f"made the old data in {time.monotonic() - t0:.0f} s", file=sys.stderr)
        rows = args.students * (SAVES + BUILDS + RUNS)
        first, summary = run_import(old, folder if args.contents else None, root / "new")
        print(summary, file=sys.stderr)
        again, summary2 = run_import(old, folder if args.contents else None, root / "new")
        print(summary2, file=sys.stderr)
    cmd = f"`.venv/bin/python bench/backend_legacy_import.py --students {args.students}{' --contents' if args.contents else ''}`"
    body = (
        f"One assignment of the old system: {args.students} students x {SAVES + BUILDS + RUNS} rows "
        f"({SAVES} saves, {BUILDS} compiles, {RUNS} runs each) = **{rows:,} rows**"
        f"{', with a content file for every save' if args.contents else ', database only'}; into a new "
        f"SQLite database, through the real command. Machine: {machine()}. Command: {cmd}\n\n"
        f"| run | time | rows/s |\n|---|---|---|\n"
        f"| first import | **{first:.0f} s** | {rows / first:,.0f} |\n"
        f"| the same import again (all duplicates) | {again:.0f} s | {rows / again:,.0f} |\n"
    )
    if args.contents:
        contents = next(
            (line.split(": ", 1)[1] for line in summary.splitlines() if "saves with their content" in line), "?"
        )
        body += f"\nThe import's own count: {contents} (every save of the made data has its file).\n"
        if f"saves with their content: {args.students * SAVES}; without: 0" not in summary:
            print("the import did not match every save to its file:\n" + summary, file=sys.stderr)
            return 1
    key = "import_contents" if args.contents else "import"
    write_section(
        key,
        f"Importing the old Watcher's data (bench/backend_legacy_import.py{' --contents' if args.contents else ''})",
        body,
    )
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
