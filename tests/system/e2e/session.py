"""Shared helpers of the end-to-end and fault suites: the real local stack, reads, metrics, polling.

Everything here drives REAL parts: ``LocalStack`` runs ``watcher backend``, ``watcher filemon`` and
``watcher procmon --mode ebpf`` as processes; students are real files and real gcc/python processes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from support.ports import free_port
from watcher_local.stack import LocalStack

COURSE, SECTION, ASSIGNMENT = "os", "1", "hw1"
BASE = f"/api/v1/courses/{COURSE}/sections/{SECTION}/assignments/{ASSIGNMENT}"


def why_no_ebpf() -> str | None:
    """The missing machine feature, if any (a skip reason), for tests that need procmon's eBPF tracer."""
    if os.geteuid() != 0:
        return "needs root (eBPF)"
    try:
        from watcher_agents.procmon.ebpf import import_bcc

        import_bcc()
    except Exception as exc:  # noqa: BLE001 - the reason is the skip message
        return f"bcc is not installed (scripts/deps/bcc.sh): {exc}"
    if shutil.which("gcc") is None:
        return "gcc is not installed"
    return None


def require_ebpf() -> None:
    reason = why_no_ebpf()
    if reason:
        pytest.skip(reason)


def start_stack(
    tmp: Path,
    *,
    database_url: str | None = None,
    procmon: bool = True,
    node: str = "e2e-node",
    agent_args: dict[str, list[str]] | None = None,
    extra_env: dict[str, str] | None = None,
) -> LocalStack:
    """A started LocalStack on free ports under ``tmp`` (workspace ``tmp/workspace``, data ``tmp/data``)."""
    workspace = tmp / "workspace"
    workspace.mkdir(parents=True, exist_ok=True)
    env = {"WATCHER_FLUSH_TIMEOUT_SECONDS": "10"} | (extra_env or {})
    stack = LocalStack(
        workspace,
        tmp / "data",
        port=free_port(),
        filemon_metrics_port=free_port(),
        procmon_metrics_port=free_port(),
        procmon_mode="ebpf" if procmon else "off",
        node_name=node,
        database_url=database_url,
        agent_args=agent_args or {},
        extra_env=env,
    )
    stack.prepare()
    stack.start(timeout=90)
    if procmon and "procmon" not in stack.components:
        logs = (stack.data_dir / "logs" / "procmon.log").read_text(errors="replace")[-2000:]
        stack.stop()
        raise AssertionError(f"procmon did not start in eBPF mode:\n{logs}")
    return stack


def student_hw(stack: LocalStack, student_id: str, assignment: str = ASSIGNMENT) -> Path:
    hw = stack.workspace / f"{COURSE}-{SECTION}-{student_id}" / assignment
    hw.mkdir(parents=True, exist_ok=True)
    return hw


# ------------------------------------------------------------------------------------------- reads


def reader(stack: LocalStack) -> httpx.Client:
    return httpx.Client(base_url=stack.url, headers={"Authorization": f"Bearer {stack.tokens['read']}"}, timeout=30)


def timeline(http: httpx.Client, student_id: str, assignment: str = ASSIGNMENT) -> list[dict]:
    """Every event of one student in one assignment, following the cursor."""
    events, cursor = [], None
    base = f"/api/v1/courses/{COURSE}/sections/{SECTION}/assignments/{assignment}/students/{student_id}/timeline"
    while True:
        r = http.get(base, params={"limit": 1000} | ({"cursor": cursor} if cursor else {}))
        assert r.status_code == 200, r.text
        body = r.json()
        events += body["events"]
        cursor = body.get("next_cursor")
        if not cursor:
            return events


def count_types(events: list[dict]) -> dict[str, int]:
    return dict(Counter(ev["type"] for ev in events))


def wait_until(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.25):
    """Poll ``predicate`` until it returns something truthy; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last value: {last!r})")


# ------------------------------------------------------------------------------------------- metrics


def metrics(stack: LocalStack, agent: str) -> dict[str, float]:
    """One agent's /metrics as {series: value} (series with labels as exposed, e.g. ``a{b="c"}``)."""
    text = httpx.get(stack.metrics_url(agent), timeout=5).text
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and " " in line:
            key, value = line.rsplit(" ", 1)
            try:
                out[key] = float(value)
            except ValueError:
                pass
    return out


def agents_idle(stack: LocalStack, agents=("filemon", "procmon")) -> bool:
    """True when every running agent has an empty outbox and nothing pending (all delivered)."""
    for agent in agents:
        if agent not in stack.components or not stack.components[agent].alive():
            continue
        m = metrics(stack, agent)
        if m.get("watcher_outbox_events", 0) != 0:
            return False
        if agent == "filemon" and (m.get("filemon_pending_files", 0) or m.get("filemon_pipeline_queue", 0)):
            return False
        if agent == "procmon" and (m.get("procmon_pending_processes", 0) or m.get("procmon_queue_depth", 0)):
            return False
    return True


def settle(stack: LocalStack, timeout: float = 60.0, quiet: float = 1.5) -> None:
    """Wait until the agents are idle, and still idle ``quiet`` seconds later (so nothing more is coming)."""

    def idle_twice() -> bool:
        if not agents_idle(stack):
            return False
        time.sleep(quiet)
        return agents_idle(stack)

    wait_until(idle_twice, timeout, "the agents' outboxes to drain")


# ------------------------------------------------------------------------------------------- processes


def run(argv: list[str], cwd: Path, check_exit: int | None = None) -> int:
    """A real process in the student's directory (what the student types in the IDE's terminal)."""
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=120)
    if check_exit is not None:
        assert done.returncode == check_exit, (argv, done.returncode, done.stdout, done.stderr)
    return done.returncode


PY = sys.executable  # the interpreter itself, not a shim that execs again
