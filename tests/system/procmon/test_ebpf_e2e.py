"""The real eBPF program on this kernel, the real agent, a real backend: what students' compiles and
runs look like once stored. Each test is its own student so the shared agent's events do not mix."""

from __future__ import annotations

import time

from system.procmon.pm_helpers import GCC, PYTHON, wait_events, write

SEGV = '#include <stdio.h>\nint main(void){ int *p = 0; puts("about to crash"); return *p; }\n'
SPIN = "#include <unistd.h>\nint main(void){ for (;;) pause(); }\n"
MT = r"""
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>
static void *worker(void *arg) {
    long i = (long)arg;
    usleep(100000 * i);
    if (i == 4) exit(4);              /* the last thread ends the process with 4 */
    return NULL;
}
int main(void) {
    pthread_t t[4];
    for (long i = 0; i < 4; i++) pthread_create(&t[i], NULL, worker, (void *)(i + 1));
    pthread_exit(NULL);               /* the main thread leaves first */
}
"""


def test_failing_and_succeeding_gcc_compiles(stack, container):
    backend, pm, ws = stack
    hw = ws / "os-1-202400011" / "hw1"
    write(hw / "main.c", '#include "util.h"\nint main(void){ return helper(); }\n')
    write(hw / "util.c", "int helper(void){ return 0; }\n")
    write(hw / "util.h", "int helper(void);\n")
    write(hw / "bad.c", "int main(void){ this is not C }\n")
    c = container("compile")
    ok = c.sh(f"{GCC} -Wall main.c util.c -o prog", hw)
    bad = c.sh(f"{GCC} bad.c -o bad", hw)
    assert ok.returncode == 0 and bad.returncode == 1, (ok.stderr, bad.stderr)
    events = wait_events(backend, "os", "1", "202400011", "hw1", 2, type="process.compile")
    by_path = {e["path"]: e for e in events}
    good, failed = by_path["main.c"], by_path["bad.c"]
    assert (good["exit_code"], good["signal"], good["succeeded"]) == (0, None, True)
    assert good["sources"] == ["main.c", "util.c"] and good["output"] == "prog"
    assert good["argv"] == [GCC, "-Wall", "main.c", "util.c", "-o", "prog"] and good["cwd"] == "."
    assert good["compiler"] == "gcc" and good["source"] == "procmon" and good["node"] == "test-node"
    assert 0 < good["duration_ms"] < 60_000
    assert (failed["exit_code"], failed["sources"], failed["output"], failed["succeeded"]) == (
        1,
        ["bad.c"],
        "bad",
        False,
    )
    # gcc's own children (cc1, as, collect2, ld) are not reported as runs
    runs = [e for e in events if e["type"] == "process.run"]
    assert runs == []


def test_python_script_run_with_exit_code(stack, container):
    backend, pm, ws = stack
    hw = ws / "os-1-202400012" / "hw2"
    write(hw / "src" / "main.py", "import sys\nprint('hi')\nsys.exit(3)\n")
    r = container("python").sh(f"{PYTHON} src/main.py", hw)
    assert r.returncode == 3
    (run,) = wait_events(backend, "os", "1", "202400012", "hw2", 1, type="process.run")
    assert (run["kind"], run["target"], run["path"], run["exit_code"], run["signal"]) == (
        "python",
        "src/main.py",
        "src/main.py",
        3,
        None,
    )


def test_student_binary_segfault_and_signals(stack, container):
    backend, pm, ws = stack
    hw = ws / "os-1-202400013" / "hw3"
    write(hw / "seg.c", SEGV)
    write(hw / "spin.c", SPIN)
    c = container("signals")
    assert c.sh(f"{GCC} seg.c -o seg && {GCC} spin.c -o spin", hw).returncode == 0
    r = c.sh("./seg", hw)
    assert r.returncode != 0
    c.sh("./spin & sleep 0.5; kill -TERM $!; wait $!", hw)
    c.sh("./spin & sleep 0.5; kill -KILL $!; wait $!", hw)
    runs = wait_events(backend, "os", "1", "202400013", "hw3", 3, type="process.run")
    seg = [e for e in runs if e["target"] == "seg"]
    spins = sorted((e["signal"], e["exit_code"]) for e in runs if e["target"] == "spin")
    assert [(e["signal"], e["exit_code"], e["kind"]) for e in seg] == [(11, None, "binary")]
    assert spins == [(9, None), (15, None)]


def test_short_lived_process_is_attributed_to_its_student_and_assignment(stack, container):
    backend, pm, ws = stack
    sub = ws / "data-structure-2-000123" / "hw12" / "part1"
    write(sub / "quick.c", "int main(void){ return 7; }\n")
    c = container("short")
    assert c.sh(f"{GCC} -c quick.c && {GCC} quick.o -o quick && ./quick; ./quick; ./quick", sub).returncode == 7
    events = wait_events(backend, "data-structure", "2", "000123", "hw12", 5)
    runs = [e for e in events if e["type"] == "process.run"]
    compiles = [e for e in events if e["type"] == "process.compile"]
    assert len(runs) == 3 and len(compiles) == 2
    assert all((e["target"], e["cwd"], e["exit_code"]) == ("part1/quick", "part1", 7) for e in runs)
    assert all(e["duration_ms"] < 5_000 for e in runs)
    assert sorted(tuple(e["sources"]) for e in compiles) == [(), ("part1/quick.c",)]


def test_short_lived_child_that_chdirs_before_its_exec_is_attributed(stack, container, tmp_path):
    """Python's subprocess with cwd= (libuv's spawn alike): the child chdir's, execs a 1 ms program and
    is gone before /proc is read; its parent runs elsewhere. The chdir's own path says where it ran."""
    backend, pm, ws = stack
    hw = ws / "os-1-202400017" / "hw4"
    write(hw / "quick.c", "int main(void){ return 3; }\n")
    c = container("chdir")
    assert c.sh(f"{GCC} quick.c -o quick", hw).returncode == 0
    runner = write(
        tmp_path / "runner.py",
        "import subprocess, sys\n"
        "codes = [subprocess.run(['./quick'], cwd=sys.argv[1]).returncode for _ in range(5)]\n"
        "sys.exit(0 if codes == [3] * 5 else 1)\n",
    )
    assert c.sh(f"{PYTHON} {runner} {hw}", tmp_path).returncode == 0  # the parent's cwd: outside
    events = wait_events(backend, "os", "1", "202400017", "hw4", 6)
    runs = [e for e in events if e["type"] == "process.run"]
    assert [(e["target"], e["exit_code"]) for e in runs] == [("quick", 3)] * 5
    time.sleep(1)
    assert len(wait_events(backend, "os", "1", "202400017", "hw4", 6)) == 6  # nothing else, once each


def test_multithreaded_program_reports_once_when_its_last_thread_exits(stack, container):
    backend, pm, ws = stack
    hw = ws / "os-1-202400014" / "hw4"
    write(hw / "mt.c", MT)
    c = container("threads")
    assert c.sh(f"{GCC} -pthread mt.c -o mt", hw).returncode == 0
    start = time.monotonic()
    assert c.sh("./mt", hw).returncode == 4
    assert time.monotonic() - start >= 0.35
    (run,) = wait_events(backend, "os", "1", "202400014", "hw4", 1, type="process.run")
    time.sleep(1.0)
    again = wait_events(backend, "os", "1", "202400014", "hw4", 1, type="process.run")
    assert len(again) == 1  # once, not once per thread
    assert (run["exit_code"], run["signal"]) == (4, None)
    assert run["duration_ms"] >= 350  # reported when the LAST thread ended


def test_pod_view_in_a_uts_and_mount_namespace(stack, container, tmp_path):
    """A process in a 'pod': hostname jcode-..., files at /home/coder/project. The files live outside
    the workspace root, so only the pod view (hostname + in-pod path) can attribute them."""
    backend, pm, ws = stack
    files = tmp_path / "pvc-of-student"
    write(files / "hw2" / "main.c", "int main(void){ return 0; }\n")
    write(files / "hw2" / "run.py", "print('ok')\n")
    pod = "jcode-os-1-202400015-7d9f8b6c5d-x2x7z"
    r = container("pod").pod(f"{GCC} main.c -o main && ./main && {PYTHON} run.py", pod, files, "hw2")
    assert r.returncode == 0, r.stderr
    events = wait_events(backend, "os", "1", "202400015", "hw2", 3)
    kinds = sorted((e["type"], e.get("kind"), e["path"]) for e in events)
    assert kinds == [
        ("process.compile", None, "main.c"),
        ("process.run", "binary", "main"),
        ("process.run", "python", "run.py"),
    ]


def test_metrics_and_health(stack, container):
    backend, pm, ws = stack
    hw = ws / "os-1-202400016" / "hw1"
    write(hw / "a.c", "int main(void){ return 0; }\n")
    container("metrics").sh(f"{GCC} a.c -o a", hw)
    wait_events(backend, "os", "1", "202400016", "hw1", 1)
    assert pm.metric('procmon_mode{mode="ebpf"}') == 1.0
    assert pm.metric('procmon_mode{mode="proc-connector"}') == 0.0
    assert pm.metric('process_events_total{process_name="gcc"}') >= 1
    assert pm.metric("procmon_events_lost_total") == 0
    assert pm.metric('procmon_kernel_events_total{type="exec"}') > 0
    h = pm.health()
    assert h.status_code == 200 and h.json()["status"] == "healthy"
    assert h.json()["checks"]["tracer alive (mode ebpf)"] is True
    assert h.json()["mode"] == "ebpf"
