"""What compiles and runs write to stderr, captured by the real eBPF program (bpf_stderr.c) and kept in
procmon's own outbox: no backend answers here (port 9), so each event is read back exactly as procmon
wrote it. What the backend makes of it: test_stderr_e2e.py."""

from __future__ import annotations

import json
import sqlite3
import time

import pytest
from system.procmon.pm_helpers import GCC, PYTHON, Procmon, write

NOBODY = "http://127.0.0.1:9"
LOUD = r"""
#include <stdio.h>
#include <string.h>
int main(void) {
    char line[100];
    memset(line, 'o', 99); line[99] = 0;
    for (int i = 0; i < 1000; i++) puts(line);                    /* 100 KB of stdout */
    for (int i = 0; i < 200; i++) fprintf(stderr, "e%03d%s\n", i, line);   /* 20 KB of stderr */
    return 0;
}
"""
THREE_WAYS = r"""
#include <stdio.h>
#include <sys/uio.h>
#include <unistd.h>
int main(void) {
    write(2, "by write\n", 9);
    struct iovec v[2] = {{"by ", 3}, {"writev\n", 7}};
    writev(2, v, 2);
    fputs("by stdio\n", stderr);
    puts("to stdout");
    return 0;
}
"""

# Their only stderr write is of a string literal, likely on a page the program never touched (the write
# faults it in, a tracepoint cannot): read again at the process's end, exit_group or the fatal signal.
LAST_WORDS = r"""
#include <unistd.h>
int main(void) { write(2, "last words\n", 11); return 3; }
"""
DIES = r"""
#include <stdlib.h>
#include <unistd.h>
int main(void) { write(2, "before abort\n", 13); abort(); }
"""


def outbox(pm: Procmon) -> list[dict]:
    db = sqlite3.connect(str(pm.state / "outbox.sqlite3"))
    try:
        return [json.loads(r[0]) for r in db.execute("SELECT body FROM outbox")]
    finally:
        db.close()


def events_of(pm: Procmon, n: int, timeout: float = 30, **match) -> list[dict]:
    deadline = time.monotonic() + timeout
    found: list[dict] = []
    while time.monotonic() < deadline:
        found = [e for e in outbox(pm) if all(e.get(k) == v for k, v in match.items())]
        if len(found) >= n:
            return found
        time.sleep(0.25)
    raise AssertionError(f"{len(found)} of {n} events {match}: {found}\n{pm.log()[-3000:]}")


@pytest.fixture(scope="module")
def capturing(tmp_path_factory, ebpf_ready):
    tmp = tmp_path_factory.mktemp("stderr")
    ws = tmp / "ws"
    ws.mkdir()
    pm = Procmon(tmp, ws, NOBODY, None, "--mode", "ebpf").start()
    yield pm, ws
    pm.stop()


def test_gcc_diagnostics_come_from_its_children_into_the_compile(capturing, container):
    pm, ws = capturing
    hw = ws / "os-1-202400101" / "hw1"
    write(hw / "bad.c", "int main(void){ return x }\n")
    write(hw / "link.c", "int helper(void);\nint main(void){ return helper(); }\n")
    c = container("gcc-stderr")
    bad = c.sh(f"{GCC} bad.c -o bad", hw)
    link = c.sh(f"{GCC} link.c -o link", hw)
    assert bad.returncode == 1 and link.returncode == 1
    by_path = {e["path"]: e for e in events_of(pm, 2, student_id="202400101", type="process.compile")}
    # cc1 wrote these, gcc's record holds them, exactly what the terminal showed
    assert by_path["bad.c"]["stderr"] == bad.stderr
    assert "bad.c:1:24: error:" in bad.stderr and "undeclared" in bad.stderr
    assert "bad.c:1:25: error: expected" in bad.stderr
    # ld's undefined reference and collect2's summary line: two more processes under gcc
    assert by_path["link.c"]["stderr"] == link.stderr
    assert "undefined reference to `helper'" in link.stderr and "collect2" in link.stderr
    assert by_path["bad.c"]["stderr_truncated"] is False


def test_write_writev_and_stdio_are_captured_never_stdout(capturing, container):
    pm, ws = capturing
    hw = ws / "os-1-202400102" / "hw1"
    write(hw / "three.c", THREE_WAYS)
    write(hw / "calc.py", "print('to stdout')\nprint(1 / 0)\n")
    c = container("ways")
    assert c.sh(f"{GCC} three.c -o three", hw).returncode == 0
    r = c.sh("./three", hw)
    py = c.sh(f"{PYTHON} calc.py", hw)
    assert r.stdout == "to stdout\n" and py.returncode == 1
    runs = {e["target"]: e for e in events_of(pm, 2, student_id="202400102", type="process.run")}
    assert runs["three"]["stderr"] == "by write\nby writev\nby stdio\n"
    tb = runs["calc.py"]["stderr"]
    assert tb == py.stderr and tb.startswith("Traceback") and tb.endswith("ZeroDivisionError: division by zero\n")
    assert "to stdout" not in tb
    compile_ = events_of(pm, 1, student_id="202400102", type="process.compile")[0]
    assert (compile_["stderr"], compile_["stderr_truncated"]) == ("", False)


def test_a_last_write_is_captured_when_the_process_ends_or_is_killed(capturing, container):
    pm, ws = capturing
    hw = ws / "os-1-202400105" / "hw1"
    write(hw / "last.c", LAST_WORDS)
    write(hw / "dies.c", DIES)
    c = container("last")
    assert c.sh(f"{GCC} last.c -o last && {GCC} dies.c -o dies", hw).returncode == 0
    assert c.sh("./last", hw).returncode == 3
    assert c.sh("./dies", hw).returncode != 0
    runs = {e["target"]: e for e in events_of(pm, 2, student_id="202400105", type="process.run")}
    assert (runs["last"]["stderr"], runs["last"]["exit_code"]) == ("last words\n", 3)
    assert (runs["dies"]["stderr"], runs["dies"]["signal"]) == ("before abort\n", 6)


def test_more_than_16_kib_is_cut_flagged_and_counted(capturing, container):
    pm, ws = capturing
    hw = ws / "os-1-202400103" / "hw1"
    write(hw / "loud.c", LOUD)
    c = container("loud")
    assert c.sh(f"{GCC} loud.c -o loud", hw).returncode == 0
    truncated_before = pm.metric("procmon_stderr_truncated_total")
    r = c.sh("./loud", hw)
    assert len(r.stdout) == 100_000 and len(r.stderr) == 20_800
    (run,) = events_of(pm, 1, student_id="202400103", type="process.run")
    # exactly the first 16 KiB of stderr: nothing of the 100 KB it wrote to stdout in between
    assert run["stderr"] == r.stderr[:16384] and run["stderr_truncated"] is True
    assert pm.metric("procmon_stderr_truncated_total") == truncated_before + 1
    assert pm.metric("procmon_stderr_bytes_total") >= 16384
    assert pm.metric("procmon_stderr_lost_total") == 0


def test_capture_off_and_the_fallback_record_null(tmp_path, container, ebpf_ready):
    ws = tmp_path / "ws"
    hw = ws / "os-1-202400104" / "hw1"
    write(hw / "calc.py", "import time\ntime.sleep(0.3)  # the process connector reads /proc at exec\nprint(1 / 0)\n")
    c = container("off")
    for i, args in enumerate((("--mode", "ebpf", "--capture-stderr", "off"), ("--mode", "proc-connector"))):
        pm = Procmon(tmp_path, ws, NOBODY, None, *args, env={"WATCHER_CAPTURE_STDERR": "on"}).start()
        try:
            assert c.sh(f"{PYTHON} calc.py", hw).returncode == 1
            (run,) = events_of(pm, 1, student_id="202400104", type="process.run", target="calc.py")
            assert (run["stderr"], run["stderr_truncated"]) == (None, False)
            said = pm.log().count("stderr is not captured")
            assert said == (0 if i == 0 else 1), pm.log()
            if i == 0:
                assert "stderr capture off" in pm.log()
        finally:
            pm.stop()
