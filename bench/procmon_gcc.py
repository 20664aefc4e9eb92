"""procmon compile benchmark: N gcc compiles started at once in a student's assignment, half of them
failing; every one must be captured with the right exit code, sources and output.

    .venv/bin/python bench/procmon_gcc.py              # 50 compiles (25 failing), 2 sources each
    .venv/bin/python bench/procmon_gcc.py --compiles 100

Results go to bench/results/procmon.md (section "gcc"). Needs root.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from procmon_common import Cgroup, Procmon, machine, require_root, write_section


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--compiles", type=int, default=50, help="parallel gcc compiles, half failing (default 50)")
    args = p.parse_args(argv)
    require_root()
    tmp = Path(tempfile.mkdtemp(prefix="procmon-gcc-"))
    ws = tmp / "ws"
    hw = ws / "bench-1-000004" / "hw9"
    (hw / "lib").mkdir(parents=True)
    expected = {}
    for i in range(args.compiles):
        fail = i % 2 == 1
        (hw / f"main{i}.c").write_text(f"int helper{i}(void);\nint main(void) {{ return helper{i}(); }}\n")
        body = "return 0; }" if not fail else "return undefined_name; }"
        (hw / "lib" / f"util{i}.c").write_text(f"int helper{i}(void) {{ {body}\n")
        expected[f"main{i}.c"] = (1 if fail else 0, [f"main{i}.c", f"lib/util{i}.c"], f"prog{i}")
    pm = Procmon(ws, tmp / "state", tmp / "procmon.log").start()
    script = " ".join(f"gcc -O1 main{i}.c lib/util{i}.c -o prog{i} 2>/dev/null &" for i in range(args.compiles))
    cg = Cgroup("gcc")
    t0 = time.monotonic()
    try:
        cg.run(["sh", "-c", script + " wait"], hw)
    finally:
        cg.remove()
    wall = time.monotonic() - t0
    deadline = time.monotonic() + 60
    events = []
    while time.monotonic() < deadline:
        events = [json.loads(b) for b in pm.outbox_bodies()]
        events = [e for e in events if e["type"] == "process.compile"]
        if len(events) >= args.compiles:
            break
        time.sleep(0.5)
    lost = pm.metric("procmon_events_lost_total")
    pm.stop()
    got = {e["path"]: (e["exit_code"], e["sources"], e["output"]) for e in events}
    right = sum(1 for k, v in expected.items() if got.get(k) == v)
    wrong = [(k, got.get(k), v) for k, v in expected.items() if got.get(k) != v]
    extra = len(events) - len(got)
    ok = right == args.compiles and extra == 0
    body = f"""Workload: {args.compiles} `gcc -O1 mainN.c lib/utilN.c -o progN` started at once (one shell, `&` and `wait`) in a
student's assignment folder, in their own cgroup; every second one fails to compile (undeclared name).
They took {wall:.1f} s together. procmon (eBPF) wrote each compile to its outbox.
Machine: {machine()}.
Command: `.venv/bin/python bench/procmon_gcc.py --compiles {args.compiles}`

| figure | value | target |
|---|---|---|
| compiles captured with the right exit code, both sources and the output | **{right} / {args.compiles}** | all ({"met" if ok else "MISSED"}) |
| compile events reported twice or for gcc's children (cc1, as, collect2, ld) | {extra + max(0, len(got) - args.compiles)} | 0 |
| lost events counter | {lost:.0f} | 0 |
"""
    if wrong:
        body += (
            "\nWrong or missing (first 5): " + "; ".join(f"{k}: got {g}, expected {v}" for k, g, v in wrong[:5]) + "\n"
        )
    write_section("gcc", "Compiles: 50 parallel gcc, half failing (bench/procmon_gcc.py)", body)
    print(body)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
