"""Idle scale: filemon watching D directories with nothing happening: resident memory and CPU.

Builds a workspace of D directories (students x (student dir + assignments + a src folder each), with
a few source files), starts `watcher filemon` with the real backend, waits for the startup scan and
delivery to finish, then samples RSS and CPU over an idle window.

    .venv/bin/python bench/filemon_idle.py [--dirs 5000 --idle-seconds 30]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from filemon_common import Filemon, machine, run_and_clean, write_section

from support.backend import run_backend  # noqa: E402

PREFIX = "filemon-idle-"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="bench/filemon_idle.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--dirs", type=int, default=5000, help="directories to watch (multiple of 5)")
    ap.add_argument("--idle-seconds", type=float, default=30.0)
    ap.add_argument("--no-write", action="store_true", help="do not update bench/results/filemon.md")
    args = ap.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix=PREFIX))
    ws = tmp / "ws"
    students = args.dirs // 5
    files = 0
    for i in range(students):
        sd = ws / f"idle-1-{2024000000 + i}"
        for hw in ("hw1", "hw2"):
            (sd / hw / "src").mkdir(parents=True)  # student dir + hw1 + hw1/src + hw2 + hw2/src = 5 dirs
            (sd / hw / "main.c").write_text("int main(void){return 0;}\n")
            files += 1
    print(f"idle: {students * 5} directories, {files} files; machine {machine()}")
    with run_backend(tmp) as backend:
        fm = Filemon(ws, tmp / "state", backend, tmp / "filemon.log")
        t0 = time.monotonic()
        fm.start(timeout=300)
        try:
            fm.settle(files, timeout=300)
            startup = time.monotonic() - t0
            watches = fm.metric("filemon_watches ")
            idle = fm.idle(args.idle_seconds)
            rss, peak, cpu, span = idle.rss, idle.peak, idle.cpu, idle.span
        finally:
            fm.stop()
    body = "\n".join(
        [
            f"Workspace: {students * 5:,} directories ({students} students x 5), {files:,} source files; filemon as "
            "`watcher filemon` with the real backend; after the startup scan and delivery settled.",
            f"Machine: {machine()}.",
            f"Command: `.venv/bin/python bench/filemon_idle.py --dirs {args.dirs} --idle-seconds {args.idle_seconds:g}`",
            "",
            "| figure | value | target |",
            "|---|---|---|",
            f"| inotify watches in use | {watches:,.0f} | one per directory |",
            f"| resident memory (RSS), idle | **{rss:.1f} MB** (peak {peak:.1f} MB) | <= 150 MB |",
            f"| CPU while idle | **{cpu / span * 100:.2f} %** of one core ({cpu:.2f} s in {span:.0f} s) | near zero |",
            f"| startup: scan + snapshot + deliver {files:,} files | {startup:.1f} s | |",
        ]
    )
    print(body)
    if not args.no_write:
        write_section("idle", "Idle: watching many directories (bench/filemon_idle.py)", body)
    return 0


if __name__ == "__main__":
    sys.exit(run_and_clean(main, PREFIX))
