"""``watcher demo``: two simulated students work on hw1 while the whole system records them.

The demo starts the real stack (``watcher local``: backend, filemon, procmon as processes), then plays
a short scripted session for each student in a workspace it creates:

1. save ``hello.c`` with a compile error, and compile it with gcc (fails);
2. fix it, compile again (succeeds) and run the binary;
3. save and run a Python script;
4. save a scratch file and delete it.

Then it asks the backend's API for each student's timeline and the assignment summary, and prints them
as tables. Compiles and runs are traced by procmon, which needs root (eBPF or the kernel's process
connector); without it the demo shows the file events and says why the rest is missing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from watcher_core import settings_spec
from watcher_core.settings_spec import Setting
from watcher_local.stack import PROCMON_MODES, LocalStack, free_port, port_is_free, say_safely
from watcher_local.tables import local_time, render

COURSE, SECTION, ASSIGNMENT = "os", "1", "hw1"
STUDENTS = ("202012345", "202054321")

HELLO_BROKEN = '#include <stdio.h>\n\nint main(void) {\n    printf("hello, %s\\n", "world")\n    return 0;\n}\n'
HELLO_FIXED = '#include <stdio.h>\n\nint main(void) {\n    printf("hello, %s\\n", "world");\n    return 0;\n}\n'
CALC_PY = "def mean(xs):\n    return sum(xs) / len(xs)\n\nprint('mean =', mean([3, 4, 5]))\n"
SCRATCH = "/* trying something */\nint unused;\n"

# filemon records a save after 300 ms of quiet; a pause of 1 s between steps keeps each save distinct
# even when a busy machine delays filemon by a few hundred ms.
STEP_PAUSE = 1.0


def student_dir(workspace: Path, student_id: str) -> Path:
    return workspace / f"{COURSE}-{SECTION}-{student_id}" / ASSIGNMENT


def play_student(hw: Path, log: list[str]) -> None:
    """One student's session, as real files and real processes."""
    hw.mkdir(parents=True, exist_ok=True)

    def run(argv: list[str]) -> int | None:
        try:
            done = subprocess.run(argv, cwd=hw, capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as exc:  # e.g. gcc not installed: the demo goes on
            log.append(f"$ {' '.join(argv)}  -> could not run ({exc.__class__.__name__})")
            return None
        log.append(f"$ {' '.join(argv)}  -> exit {done.returncode}")
        return done.returncode

    (hw / "hello.c").write_text(HELLO_BROKEN)
    time.sleep(STEP_PAUSE)
    run(["gcc", "hello.c", "-o", "hello"])
    time.sleep(STEP_PAUSE)
    (hw / "hello.c").write_text(HELLO_FIXED)
    time.sleep(STEP_PAUSE)
    run(["gcc", "hello.c", "-o", "hello"])
    run(["./hello"])
    # A pause here too: a save's time is its mtime, which the kernel stamps from a clock that lags by up
    # to one tick (~4 ms), so a save a few microseconds after ./hello ended could sort before the run.
    time.sleep(STEP_PAUSE)
    (hw / "calc.py").write_text(CALC_PY)
    time.sleep(STEP_PAUSE)
    run([sys.executable, "calc.py"])
    (hw / "scratch.c").write_text(SCRATCH)
    time.sleep(STEP_PAUSE)
    (hw / "scratch.c").unlink()


def expected_counts(with_processes: bool, have_gcc: bool = True) -> dict[str, int]:
    counts = {"file.save": 4, "file.delete": 1}  # hello.c twice, calc.py, scratch.c
    if with_processes:
        counts |= {"process.compile": 2, "process.run": 2} if have_gcc else {"process.run": 1}
    return counts


def fetch_timeline(http: httpx.Client, student_id: str) -> list[dict]:
    events, cursor = [], None
    while True:
        params = {"limit": 500} | ({"cursor": cursor} if cursor else {})
        r = http.get(
            f"/api/v1/courses/{COURSE}/sections/{SECTION}/assignments/{ASSIGNMENT}/students/{student_id}/timeline",
            params=params,
        )
        r.raise_for_status()
        body = r.json()
        events += body["events"]
        cursor = body.get("next_cursor")
        if not cursor:
            return events


def count_types(events: list[dict]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for ev in events:
        counts[ev["type"]] = counts.get(ev["type"], 0) + 1
    return counts


def wait_for_events(http: httpx.Client, want: dict[str, int], timeout: float, say) -> dict[str, list[dict]]:
    """Poll until every student's timeline holds at least the expected events (or time runs out)."""
    deadline = time.monotonic() + timeout
    while True:
        timelines = {sid: fetch_timeline(http, sid) for sid in STUDENTS}
        missing = {
            sid: {t: n - count_types(evs).get(t, 0) for t, n in want.items() if count_types(evs).get(t, 0) < n}
            for sid, evs in timelines.items()
        }
        missing = {sid: m for sid, m in missing.items() if m}
        if not missing or time.monotonic() > deadline:
            if missing:
                say(f"still missing after {timeout:.0f} s: {missing}")
            return timelines
        time.sleep(0.3)


def describe(ev: dict) -> str:
    t = ev["type"]
    if t == "file.save":
        return f"saved {ev['path']} ({ev['size']} bytes, {ev['sha256'][:10]})"
    if t == "file.delete":
        return f"deleted {ev['path']}"
    if t == "file.too_large":
        return f"{ev['path']} is {ev['size']} bytes, over the {ev['limit']} limit"
    outcome = f"signal {ev['signal']}" if ev.get("signal") else f"exit {ev.get('exit_code')}"
    if t == "process.compile":
        return f"{ev['compiler']} {' '.join(ev.get('sources') or [])} -> {ev.get('output') or '-'}: {outcome}"
    return f"{ev.get('kind')} {ev.get('target') or ' '.join(ev.get('argv') or [])}: {outcome}"


def print_report(http: httpx.Client, timelines: dict[str, list[dict]], url: str, procmon_note: str) -> None:
    for sid, events in timelines.items():
        print(f"\nTimeline of student {sid} in {COURSE}-{SECTION} {ASSIGNMENT}")
        rows = [(local_time(ev["timestamp"]), ev["type"], ev["source"], describe(ev)) for ev in events]
        print(render(["time", "event", "by", "what"], rows))
    summary = http.get(f"/api/v1/courses/{COURSE}/sections/{SECTION}/assignments/{ASSIGNMENT}/summary").json()
    print(
        f"\nSummary of {COURSE}-{SECTION} {ASSIGNMENT}: {summary['students']} students, {summary['saves']} saves, "
        f"{summary['compiles']} compiles ({_pct(summary['compile_success_rate'])} succeeded), {summary['runs']} runs"
    )
    rows = [
        (
            s["student_id"],
            s["saves"],
            s["compiles"],
            _pct(s["compile_success_rate"]),
            s["runs"],
            s["files"],
            s["code_size"],
            f"{s['active_seconds']:.0f} s",
        )
        for s in summary["per_student"]
    ]
    print(render(["student", "saves", "compiles", "compile ok", "runs", "files", "code bytes", "active"], rows))
    if procmon_note:
        print(f"\nNote: {procmon_note}")
    print(f"\nAPI docs: {url}/docs   (read token in the data directory's tokens.json)")


def _pct(rate) -> str:
    return "-" if rate is None else f"{rate * 100:.0f}%"


OPTIONS = (
    Setting(
        "data_dir",
        flag="--data-dir",
        parse=settings_spec.path,
        metavar="DIR",
        default_doc="a temporary directory, removed at the end",
        doc="keep the workspace (`DIR/workspace`) and the database, snapshots, outboxes, tokens and logs "
        "(`DIR/data`) here",
    ),
    Setting(
        "port",
        flag="--port",
        default=3000,
        parse=settings_spec.port(1),
        metavar="PORT",
        doc="the backend's port; a free one is chosen if it is taken",
    ),
    Setting(
        "procmon",
        flag="--procmon",
        default="auto",
        parse=settings_spec.one_of(PROCMON_MODES),
        metavar="MODE",
        doc="procmon's tracing mode: `auto`, `ebpf`, `proc-connector` or `off` (tracing needs root)",
    ),
    Setting(
        "keep_running",
        flag="--keep-running",
        flag_value=True,
        default=False,
        doc="leave the stack running after the report until Ctrl-C, to explore the API docs",
    ),
    Setting(
        "timeout",
        flag="--timeout",
        default=60.0,
        parse=settings_spec.seconds(zero=False),
        metavar="SECONDS",
        doc="how long to wait for the events",
    ),
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="watcher demo",
        description="Start the whole system on this machine, simulate two students working on hw1 "
        "(a failing and a fixed compile, runs, a deleted file), and print what Watcher recorded.",
    )
    settings_spec.add_arguments(p, OPTIONS)
    return p


def _main(argv: list[str]) -> int:
    try:
        args = settings_spec.resolve(OPTIONS, build_parser().parse_args(argv))
    except settings_spec.SettingsError as exc:
        print(f"watcher demo: bad setting {exc}", file=sys.stderr)
        return 2
    say = say_safely("demo: ")
    if shutil.which("gcc") is None:
        say("gcc is not installed; install it (apt-get install gcc) to see compiles")
    tmp = None
    data_dir = args.data_dir
    if data_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="watcher-demo-")
        data_dir = Path(tmp.name)
    workspace = data_dir / "workspace"
    workspace.mkdir(parents=True, exist_ok=True)
    port = args.port
    if not port_is_free(port):
        port = free_port()
    stack = LocalStack(
        workspace,
        data_dir / "data",
        port=port,
        filemon_metrics_port=free_port(),
        procmon_metrics_port=free_port(),
        procmon_mode=args.procmon,
        node_name="demo-node",
    )
    say(f"starting backend, filemon and procmon (data in {data_dir})")
    try:
        stack.start(say=lambda m: say(m))
    except RuntimeError as exc:
        say(f"could not start: {exc}")
        if tmp:
            tmp.cleanup()
        return 1
    try:
        with_processes = "procmon" in stack.components
        procmon_note = (
            ""
            if with_processes
            else (
                "procmon is not running (it needs root for eBPF or the process connector), so compiles and runs "
                "are not shown; run the demo as root to see them"
            )
        )
        say(f"two students start working in {workspace}")
        logs: dict[str, list[str]] = {sid: [] for sid in STUDENTS}
        threads = [
            threading.Thread(target=play_student, args=(student_dir(workspace, sid), logs[sid])) for sid in STUDENTS
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for sid in STUDENTS:
            say(f"student {sid}: " + "; ".join(logs[sid]))
        say("waiting for every event to be queryable")
        with httpx.Client(
            base_url=stack.url, headers={"Authorization": f"Bearer {stack.tokens['read']}"}, timeout=10
        ) as http:
            timelines = wait_for_events(
                http, expected_counts(with_processes, shutil.which("gcc") is not None), args.timeout, say
            )
            print_report(http, timelines, stack.url, procmon_note)
        if args.keep_running:
            say("the stack keeps running; press Ctrl-C to stop")
            try:
                while all(c.alive() for c in stack.components.values()):
                    time.sleep(0.5)
            except KeyboardInterrupt:
                pass
    finally:
        say("stopping")
        stack.stop()
        if tmp:
            tmp.cleanup()
    return 0


def main(argv: list[str]) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:  # e.g. `watcher demo | head`: the stack was stopped; say nothing more
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 0
