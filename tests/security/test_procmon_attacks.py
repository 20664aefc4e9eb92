"""The student as the attacker of procmon: every program in their pod is theirs, with any argv, as many
execs and forks as their cgroup allows, and any name. procmon sees every process on the node, so none of
that may crash it, grow its memory without bound, lose events without a count, or put an event on
another student's record. The real eBPF program on this kernel, the real agent, a real backend; student
containers are real cgroups (and namespaces for the pod view), as in tests/system/procmon.

Needs root and bcc, so this module is in the system tier (tests/conftest.py honours its marker)."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from system.procmon import conftest as procmon_fixtures
from system.procmon.pm_helpers import GCC, Container, Procmon, wait_events, write

from support.backend import run_backend
from support.cgroups import pids_limit

pytestmark = pytest.mark.system

NOOP = "int main(void){ return 0; }\n"
# fork+exec ./noop N times as fast as the machine allows: 4 loops side by side, each child waited for
STORM = r"""
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
int main(int argc, char **argv) {
    int n = atoi(argv[1]) / 4;
    char *args[] = {"./noop", NULL};
    for (int w = 0; w < 4; w++) {
        if (fork() == 0) {
            for (int i = 0; i < n; i++) {
                pid_t p = vfork();
                if (p == 0) { execv("./noop", args); _exit(127); }
                if (p > 0) waitpid(p, NULL, 0);
            }
            _exit(0);
        }
    }
    while (wait(NULL) > 0) {}
    return 0;
}
"""
# the root reaps every descendant (a subreaper); every child execs ./bomb again twice and exits, until
# the deadline: an exponential fork+exec bomb whose only bound is the cgroup's pids.max
BOMB = r"""
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
static void spawn(const char *until) {
    if (fork() == 0) { execl("./bomb", "./bomb", "child", until, (char *)NULL); _exit(127); }
}
int main(int argc, char **argv) {
    long until = atol(argv[2]);
    if (strcmp(argv[1], "root") == 0) {
        prctl(PR_SET_CHILD_SUBREAPER, 1);
        spawn(argv[2]);
        while (wait(NULL) > 0 || errno == EINTR) {}
        return 0;
    }
    if (time(NULL) >= until) return 0;
    spawn(argv[2]);
    spawn(argv[2]);
    return 0;
}
"""


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


# The procmon system tests' fixtures: one backend and eBPF procmon per module, cgroups that are killed after.
stack, container, ebpf_ready = procmon_fixtures.stack, procmon_fixtures.container, procmon_fixtures.ebpf_ready

_IDS = iter(range(1, 10**6))


def student(course: str = "sec") -> tuple[str, str, str]:
    return course, "1", f"{os.getpid() % 10000:04d}{next(_IDS):04d}"


def folder(ws: Path, st: tuple[str, str, str]) -> Path:
    return ws / "-".join(st)


def timeline(backend, st, assignment: str = "hw1") -> list[dict]:
    course, section, sid = st
    url = f"/api/v1/courses/{course}/sections/{section}/assignments/{assignment}/students/{sid}/timeline"
    out, cursor = [], None
    with backend.client("read") as http:
        while True:
            r = http.get(url, params={"limit": 1000, **({"cursor": cursor} if cursor else {})})
            if r.status_code == 404:
                return out
            r.raise_for_status()
            out += r.json()["events"]
            cursor = r.json().get("next_cursor")
            if not cursor:
                return out


def counter(pm: Procmon, series: str) -> float:
    value = pm.metric(series)
    return 0.0 if value != value else value  # NaN: not exported yet


def healthy(pm: Procmon) -> None:
    assert pm.proc.poll() is None, pm.log()[-3000:]
    h = pm.health()
    assert h.status_code == 200 and h.json()["mode"] == "ebpf", h.text


def compile_in(c: Container, hw: Path, name: str, source: str) -> None:
    write(hw / f"{name}.c", source)
    r = c.sh(f"{GCC} -O1 -o {name} {name}.c", hw)
    assert r.returncode == 0, r.stderr


def test_hostile_argv_is_cut_to_the_limits_and_recorded(stack, container):
    backend, pm, ws = stack
    st = student()
    hw = folder(ws, st) / "hw1"
    c = container("argv")
    compile_in(c, hw, "prog", NOOP)
    rss_before = rss(pm.proc.pid)
    invalid_before = counter(pm, "procmon_invalid_events_total")
    # many MB of argv (40 arguments of 128 KiB - 1, the kernel's per-argument maximum: 5 MiB; a larger
    # stack limit lets the kernel take it), binary bytes that are no UTF-8, and 10,000 arguments
    huge = '$(python3 -c \'import sys; sys.stdout.write(" ".join(["A" * 131071] * 40))\')'
    binary = "\"$(printf 'a\\377\\376b')\" \"$(printf '\\001\\002\\033[31m')\" \"$(printf '\\342\\202')\""
    script = f"ulimit -s 65536 && ./prog {huge} && ./prog {binary} && ./prog $(seq 10000) && ./prog last"
    r = c.sh(script, hw)
    assert r.returncode == 0, r.stderr
    runs = wait_events(backend, *st, "hw1", 4, type="process.run", target="prog")
    assert len(runs) == 4, runs
    by_last = {e["argv"][-1] if e["argv"] else "": e for e in runs}
    assert by_last["last"]["argv"] == ["./prog", "last"] and not by_last["last"]["argv_truncated"]
    for ev in runs:
        assert len(ev["argv"]) <= 64
        assert sum(len(a.encode("utf-8", "surrogateescape")) + 1 for a in ev["argv"]) <= 4096 + 1024
    cut = [e for e in runs if e["argv_truncated"]]
    assert len(cut) == 2  # the huge one and the 10,000 arguments
    # bytes that are no UTF-8 become U+FFFD: the run is recorded, never dropped as an invalid event
    odd = next(e for e in runs if len(e["argv"]) == 4)
    assert odd["argv"][:3] == ["./prog", "a\ufffd\ufffdb", "\x01\x02\x1b[31m"] and "\ufffd" in odd["argv"][3]
    assert counter(pm, "procmon_invalid_events_total") == invalid_before
    healthy(pm)
    grown = rss(pm.proc.pid) - rss_before
    assert grown < 20 * 2**20, f"procmon grew by {grown / 2**20:.1f} MiB"


def test_an_exec_storm_is_reported_or_counted_and_memory_stays_bounded(stack, container):
    backend, pm, ws = stack
    st = student()
    hw = folder(ws, st) / "hw1"
    c = container("storm")
    compile_in(c, hw, "noop", NOOP)
    compile_in(c, hw, "storm", STORM)
    wait_events(backend, *st, "hw1", 2, type="process.compile")
    reported_before = counter(pm, 'process_events_total{process_name="binary"}')
    lost_before = counter(pm, "procmon_events_lost_total")
    rss_before = rss(pm.proc.pid)
    # a second procmon with the smallest ring buffer it accepts (64 KiB, about 14 exec events), whose
    # reader is held still through the storm, as a procmon starved of CPU would be (on a fast machine a
    # running reader kept up with a 64 KiB ring: 20,001 reported, 0 lost): its ring fills, and whatever the
    # kernel cannot put in it must show in its loss counter (its own backend: its events are not this
    # test's record)
    small_backend = run_backend(ws.parent / "small-ring")
    small = Procmon(
        ws.parent, ws, small_backend.url, small_backend.tokens["ingest"], "--mode", "ebpf", "--ring-buffer-pages", "16"
    ).start()
    n = 20_000
    os.kill(small.proc.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        r = c.sh(f"./storm {n}", hw, timeout=300)
        rate = n / (time.monotonic() - started)
    finally:
        os.kill(small.proc.pid, signal.SIGCONT)
    assert r.returncode == 0, r.stderr
    assert rate > 1000, f"only {rate:.0f} execs/s: not a storm"
    # every exec is either stored or counted as lost in the kernel (an exec or its exit)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        stored = [e for e in timeline(backend, st) if e["type"] == "process.run" and e["target"] == "noop"]
        lost = counter(pm, "procmon_events_lost_total") - lost_before
        if len(stored) + lost >= n:
            break
        time.sleep(1)
    reported = counter(pm, 'process_events_total{process_name="binary"}') - reported_before
    try:
        time.sleep(3)  # its last exits
        small_lost = counter(small, "procmon_events_lost_total")
        small_reported = counter(small, 'process_events_total{process_name="binary"}')
        healthy(small)
    finally:
        small.stop()
        small_backend.stop()
    print(f"small ring: {small_reported:.0f} reported, {small_lost:.0f} kernel events lost")
    # an exec lost loses its run; an exit lost leaves the run pending (reported when the pid comes back)
    assert small_lost > 0, "a 64 KiB ring kept up with the storm: its loss count was not exercised"
    assert small_reported + small_lost >= n
    print(
        f"storm: {n} execs at {rate:.0f}/s, {len(stored)} stored, {lost:.0f} lost, RSS +{(rss(pm.proc.pid) - rss_before) / 2**20:.1f} MiB"
    )
    assert len(stored) + lost >= n, f"{len(stored)} stored + {lost} counted lost < {n} execs"
    assert reported >= len(stored)
    assert all(e["exit_code"] == 0 for e in stored)
    healthy(pm)
    grown = rss(pm.proc.pid) - rss_before
    assert grown < 32 * 2**20, f"procmon grew by {grown / 2**20:.1f} MiB for {n} execs"
    assert counter(pm, "procmon_pending_processes") < 100


def received(event: dict) -> datetime:
    return datetime.fromisoformat(event["received_at"].replace("Z", "+00:00"))


def test_a_classmates_compile_is_delivered_ahead_of_an_exec_storm_waiting_in_the_outbox(stack, container):
    """The outbox serves students in turn: while the backend is down, one student's exec storm fills
    procmon's outbox, and a classmate's compile and run made after it reach the backend in the first
    batches once it is back, not after the storm (with one FIFO, after every event of it)."""
    backend, pm, ws = stack
    stormer, classmate = student(), student()
    shw, chw = folder(ws, stormer) / "hw1", folder(ws, classmate) / "hw1"
    s, c = container("storm-delivery"), container("classmate")
    compile_in(s, shw, "noop", NOOP)
    compile_in(s, shw, "storm", STORM)
    write(chw / "mine.c", NOOP)
    wait_events(backend, *stormer, "hw1", 2, type="process.compile")
    n = 10_000
    backend.stop()
    try:
        assert s.sh(f"./storm {n}", shw, timeout=300).returncode == 0
        assert c.sh(f"{GCC} -o mine mine.c && ./mine", chw).returncode == 0
        # procmon has queued the storm and the classmate's two events (a few storm events may be lost in
        # the kernel, and counted: they are not needed here)
        queued = pm.wait_metric("watcher_outbox_events", lambda v: v >= n * 0.9 + 2, timeout=60)
    finally:
        back_at = datetime.now(UTC)
        backend.start()
    mine = wait_events(backend, *classmate, "hw1", 2, timeout=90)  # the sender backs off up to 30 s
    assert sorted(e["type"] for e in mine) == ["process.compile", "process.run"]
    pm.wait_metric("watcher_outbox_events", lambda v: v == 0, timeout=120)
    storm = [e for e in timeline(backend, stormer) if received(e) > back_at]
    arrived = max(received(e) for e in mine)
    ahead = {received(e) for e in storm if received(e) < arrived}  # one received_at per batch
    print(
        f"storm: {len(storm)} events sent after the outage ({queued:.0f} queued), "
        f"the classmate's after {len(ahead)} batches of it"
    )
    assert len(storm) > n * 0.9
    # at most the batch the sender had already taken (and kept retrying) when the classmate's events came
    assert len(ahead) <= 1, f"the classmate's events waited behind {len(ahead)} batches of the storm"
    healthy(pm)


def test_a_fork_bomb_stays_in_its_cgroup_and_procmon_keeps_reporting_the_others(stack, container):
    backend, pm, ws = stack
    bomber, classmate = student(), student()
    bhw, chw = folder(ws, bomber) / "hw1", folder(ws, classmate) / "hw1"
    b, c = container("bomb"), container("classmate")
    compile_in(b, bhw, "bomb", BOMB)
    rss_before = rss(pm.proc.pid)
    lost_before = counter(pm, "procmon_events_lost_total")
    with pids_limit(f"procmon-bomb-{uuid.uuid4().hex[:8]}", 64) as limited:
        until = int(time.time()) + 8
        bomb = b.spawn(f"echo $$ > {limited.procs} && exec ./bomb root {until}", bhw)
        time.sleep(2)  # the bomb is at its limit now
        write(chw / "mine.c", NOOP)
        assert c.sh(f"{GCC} -o mine mine.c && ./mine", chw).returncode == 0  # the node still works
        assert bomb.wait(60) == 0
        refused = limited.refused()
    assert refused > 0, "pids.max never stopped a fork: the bomb was not bounded by it"
    mine = wait_events(backend, *classmate, "hw1", 2)
    assert sorted(e["type"] for e in mine) == ["process.compile", "process.run"]
    assert all(e["student_id"] == classmate[2] for e in mine)
    healthy(pm)
    time.sleep(2)
    bombs = [e for e in timeline(backend, bomber) if e["type"] == "process.run"]
    lost = counter(pm, "procmon_events_lost_total") - lost_before
    print(f"bomb: {len(bombs)} runs stored, {refused} forks refused, {lost:.0f} lost")
    assert len(bombs) > 64  # the bomb's execs are the bomber's, recorded or counted
    assert all(e["target"] == "bomb" for e in bombs)
    assert len(timeline(backend, classmate)) == 2  # nothing of the bomb on the classmate's record
    grown = rss(pm.proc.pid) - rss_before
    # RSS keeps its peak (CPython returns little to the OS); the runs in flight to the outbox are bounded
    # by the pipeline's back-pressure (BACKLOG), not by how many forks the bomb made
    assert grown < 32 * 2**20, f"procmon grew by {grown / 2**20:.1f} MiB for {len(bombs)} runs"


def test_a_student_binary_named_gcc_is_still_that_students(stack, container):
    backend, pm, ws = stack
    me, classmate = student(), student()
    mine, theirs = folder(ws, me) / "hw1", folder(ws, classmate) / "hw1"
    write(theirs / "answer.c", "int answer(void){ return 42; }\n")
    c = container("fakegcc")
    compile_in(c, mine, "gcc", "int main(int c, char **v){ return 3; }\n")
    r = c.sh(f"./gcc {theirs}/answer.c -o {theirs}/answer; ./gcc own.c -o prog", mine)
    assert r.returncode == 3
    events = wait_events(backend, *me, "hw1", 3, type="process.compile")
    fake = [e for e in events if e["argv"][0] == "./gcc"]
    assert len(fake) == 2 and all(e["student_id"] == me[2] for e in fake)
    # the classmate's file is neither a source nor an output of the student's record
    assert all("answer" not in " ".join(e["sources"] + [e["output"] or ""]) for e in fake)
    assert all(e["exit_code"] == 3 for e in fake)
    time.sleep(1)
    assert timeline(backend, classmate) == []


# forge <go> <pod name> <program> <args>: a child in a UTS namespace of its own, named before anything runs
# in it, waits for the file <go> (without an exec) and then runs the program
FORGE = r"""
#define _GNU_SOURCE
#include <sched.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
int main(int argc, char **argv) {
    pid_t p = fork();
    if (p == 0) {
        if (unshare(CLONE_NEWUTS) != 0) _exit(90);
        if (sethostname(argv[2], strlen(argv[2])) != 0) _exit(91);
        while (access(argv[1], F_OK) != 0) usleep(50000);
        execv(argv[3], argv + 3);
        _exit(127);
    }
    int st;
    waitpid(p, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
}
"""


def forger(tmp_path: Path) -> Path:
    """The forging program, built outside the workspace (it is nobody's compile)."""
    write(tmp_path / "forge.c", FORGE)
    subprocess.run([GCC, "-o", tmp_path / "forge", tmp_path / "forge.c"], check=True)
    return tmp_path / "forge"


def test_a_pod_that_claims_a_classmates_pod_name_is_not_recorded_as_the_classmate(stack, container, tmp_path):
    """Inside their pod a student can make their own UTS namespace (unshare in a user namespace, in a pod
    without a seccomp profile) and name it after a classmate's pod. procmon reads the hostname per
    namespace; the pod's cgroup is still the student's."""
    backend, pm, ws = stack
    me, classmate = student(), student()
    files = tmp_path / "pvc"
    write(files / "hw1" / "a.c", NOOP)
    forge = forger(tmp_path)
    pod = f"jcode-{me[0]}-{me[1]}-{me[2]}-7d9f8b6c5d-x2x7z"
    fake = f"jcode-{classmate[0]}-{classmate[1]}-{classmate[2]}-7d9f8b6c5d-q4w8z"
    refused_before = counter(pm, 'procmon_events_filtered_total{reason="other_students_cgroup"}')
    script = f"{GCC} a.c -o own && {forge} / {fake} {GCC} a.c -o forged"
    r = container("forger").pod(script, pod, files, "hw1")
    assert r.returncode == 0, r.stderr
    assert (files / "hw1" / "forged").exists()  # the forged compile did run
    (own,) = wait_events(backend, *me, "hw1", 1, type="process.compile")
    assert own["output"] == "own"
    deadline = time.monotonic() + 5  # the forged compile has long been handled by then
    while time.monotonic() < deadline:
        assert timeline(backend, classmate) == [], "a forged hostname put an event on the classmate's record"
        time.sleep(0.5)
    assert [e["output"] for e in wait_events(backend, *me, "hw1", 1, type="process.compile")] == ["own"]
    assert counter(pm, 'procmon_events_filtered_total{reason="other_students_cgroup"}') >= refused_before + 1
    assert "claims" in pm.log() and "not recorded" in pm.log()


def test_after_a_restart_the_pods_own_processes_still_name_its_student(stack, container, tmp_path):
    """procmon learns a cgroup's student anew when it starts: from the processes already running in it,
    oldest first (code-server, with the pod's own name), not from the first thing it sees the pod run.
    Here the first exec procmon sees from the pod is already in the forged namespace."""
    backend, _, ws = stack
    me, classmate = student(), student()
    files = tmp_path / "pvc"
    write(files / "hw1" / "a.c", NOOP)
    forge = forger(tmp_path)
    pod = f"jcode-{me[0]}-{me[1]}-{me[2]}-7d9f8b6c5d-x2x7z"
    fake = f"jcode-{classmate[0]}-{classmate[1]}-{classmate[2]}-7d9f8b6c5d-q4w8z"
    go = tmp_path / "go"
    ide = container("restart").pod_spawn(f"exec {forge} {go} {fake} {GCC} a.c -o forged", pod, files, "hw1")
    time.sleep(1)  # the forger waits in its own namespace, named after the classmate's pod
    fresh = Procmon(tmp_path, ws, backend.url, backend.tokens["ingest"], "--mode", "ebpf").start()  # a restart
    try:
        go.touch()
        assert ide.wait(60) == 0
        assert (files / "hw1" / "forged").exists()
        deadline = time.monotonic() + 5  # both procmons have long handled the forged compile by then
        while time.monotonic() < deadline:
            assert timeline(backend, classmate) == [], "a forged hostname put an event on the classmate's record"
            time.sleep(0.5)
        assert counter(fresh, 'procmon_events_filtered_total{reason="other_students_cgroup"}') >= 1
    finally:
        fresh.stop()


def test_a_pod_that_makes_a_classmates_workspace_path_is_not_recorded_as_the_classmate(stack, container, tmp_path):
    """The same with a path: a mount namespace of their own, with the node's workspace path of a
    classmate's folder on a tmpfs, and a UTS name that is no pod's, so procmon falls back to the path."""
    backend, pm, ws = stack
    me, classmate = student(), student()
    files = tmp_path / "pvc"
    write(files / "hw1" / "a.c", NOOP)
    forge = forger(tmp_path)
    pod = f"jcode-{me[0]}-{me[1]}-{me[2]}-7d9f8b6c5d-x2x7z"
    theirs = folder(ws, classmate) / "hw1"
    fake_tree = (
        f"mount -t tmpfs none {ws} && mkdir -p {theirs} && cp a.c {theirs}/ && cd {theirs} && "
        f"exec {forge} / laptop {GCC} a.c -o forged"
    )
    refused_before = counter(pm, 'procmon_events_filtered_total{reason="other_students_cgroup"}')
    script = f"{GCC} a.c -o own && unshare --mount sh -c {shlex.quote(fake_tree)}"
    r = container("pathforger").pod(script, pod, files, "hw1")
    assert r.returncode == 0, r.stderr
    assert not theirs.exists()  # the fake tree was the forger's alone
    (own,) = wait_events(backend, *me, "hw1", 1, type="process.compile")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        assert timeline(backend, classmate) == [], "a forged path put an event on the classmate's record"
        time.sleep(0.5)
    assert counter(pm, 'procmon_events_filtered_total{reason="other_students_cgroup"}') >= refused_before + 1


def test_a_pod_that_gets_an_ended_pods_namespace_number_is_its_own_students(stack, container, tmp_path):
    """The kernel reuses a freed namespace's inode number for the next new one, so a pod made after
    another pod ended often gets its UTS namespace number, under which procmon had cached the old pod's
    name. Found by the tests above when they ran together (a compile recorded as an earlier student's)."""
    backend, pm, ws = stack
    first, second = student(), student()
    files = tmp_path / "pvc"
    write(files / "hw1" / "a.c", NOOP)

    def pod(st):
        return f"jcode-{st[0]}-{st[1]}-{st[2]}-7d9f8b6c5d-x2x7z"

    ns = "stat -L -c %i /proc/self/ns/uts"
    before = container("reuse-first").pod(f"{ns} && {GCC} a.c -o first", pod(first), files, "hw1")
    assert before.returncode == 0, before.stderr
    wait_events(backend, *first, "hw1", 1, type="process.compile")
    later = container("reuse-second")
    for _ in range(20):
        after = later.pod(f"{ns} && {GCC} a.c -o second", pod(second), files, "hw1")
        assert after.returncode == 0, after.stderr
        if after.stdout.split()[0] == before.stdout.split()[0]:
            break
    assert after.stdout.split()[0] == before.stdout.split()[0], "no namespace number was reused: proves nothing"
    try:
        assert wait_events(backend, *second, "hw1", 1, type="process.compile")[0]["output"] == "second"
    except AssertionError as exc:  # failed once in a full run (not alone): say what procmon saw
        firsts = [e.get("output") for e in timeline(backend, first)]
        raise AssertionError(f"{exc}\nfirst student's events: {firsts}\nprocmon log:\n{pm.log()[-4000:]}") from None
    time.sleep(1)
    assert [e["output"] for e in wait_events(backend, *first, "hw1", 1, type="process.compile")] == ["first"]
