"""Legacy requests -> wire events (pure parts of legacy.adapter)."""

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from watcher_backend.legacy import adapter as st
from watcher_backend.legacy.schemas import BuildLogCreate, RunLogCreate, SnapshotCreate
from watcher_core import identity

STUDENT = identity.Student("os", "1", "000123")
SCOPE = st.Scope("os", "1", "hw1", "000123")
WHEN = datetime(2025, 7, 30, 6, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "raw,expected",
    [
        ("/home/coder/project/hw1/a.c", "a.c"),
        ("/home/coder/project/hw1/src/util.c", "src/util.c"),
        ("/home/coder/project/hw1", "."),
        ("/home/coder/project/hw1/", "."),
        ("hw1/a.c", "a.c"),
        ("/watcher/codes/os-1-000123/hw1/a.c", "a.c"),  # a node-side path
        ("/home/coder/project/hw2/a.c", None),  # another assignment
        ("/home/coder/project/a.c", None),  # outside any assignment
        ("/tmp/a.c", None),
        ("/home/coder/project/hw1/../../etc/passwd", None),
        ("ipykernel", None),
        ("", None),
        ("/home/coder/project/.venv/hw1/x.py", None),  # ignored folder
    ],
)
def test_relative_in_assignment(raw, expected):
    assert st.relative_in_assignment(raw, STUDENT, "hw1") == expected


def test_pod_path_roundtrip():
    assert st.pod_path("hw1", "src/a.c") == "/home/coder/project/hw1/src/a.c"
    assert st.pod_path("hw1", ".") == st.pod_path("hw1", None) == "/home/coder/project/hw1"


def build_body(**kw):
    body = dict(
        binary_path="/usr/bin/gcc",
        cmdline="gcc -Wall -o a a.c",
        exit_code=0,
        cwd="/home/coder/project/hw1",
        target_path="/home/coder/project/hw1/a.c",
        timestamp="2025-07-30T15:00:00",
    )
    body.update(kw)
    return BuildLogCreate(**body)


def test_build_event_fields():
    ev = st.build_event(SCOPE, build_body(), WHEN)
    assert (ev.type, ev.source, ev.node, ev.path, ev.cwd, ev.compiler, ev.sources) == (
        "process.compile",
        "legacy",
        "legacy-api",
        "a.c",
        ".",
        "/usr/bin/gcc",
        ["a.c"],
    )  # the full path, as sent
    assert ev.argv == ["gcc", "-Wall", "-o", "a", "a.c"] and ev.exit_code == 0 and ev.signal is None
    assert ev.student_id == "000123" and ev.started_at == WHEN


def test_build_event_outside_assignment_and_signal():
    ev = st.build_event(SCOPE, build_body(cwd="/tmp", target_path="/tmp/x.c", exit_code=-9), WHEN)
    assert (ev.path, ev.cwd, ev.sources, ev.exit_code, ev.signal) == (".", ".", [], None, 9)


def test_event_ids_are_deterministic_and_fact_sensitive():
    a = st.build_event(SCOPE, build_body(), WHEN)
    assert st.build_event(SCOPE, build_body(), WHEN).event_id == a.event_id
    assert st.build_event(SCOPE, build_body(exit_code=1), WHEN).event_id != a.event_id
    assert st.build_event(st.Scope("os", "1", "hw1", "123"), build_body(), WHEN).event_id != a.event_id
    s1 = st.snapshot_event(SCOPE, "a.c", WHEN, 10)
    assert s1.event_id == st.snapshot_event(SCOPE, "a.c", WHEN, 10).event_id
    assert s1.event_id != st.snapshot_event(SCOPE, "a.c", WHEN, 11).event_id
    assert s1.sha256 is None and s1.size == 10 and s1.source == "legacy"


def test_run_event_kinds():
    body = RunLogCreate(
        cmdline="python3 main.py",
        exit_code=0,
        cwd="/home/coder/project/hw1/sub",
        target_path="/home/coder/project/hw1/sub/main.py",
        process_type="python",
        timestamp="2025-07-30T15:00:00",
    )
    ev = st.run_event(SCOPE, body, WHEN)
    assert (ev.kind, ev.target, ev.path, ev.cwd) == ("python", "sub/main.py", "sub/main.py", "sub")
    other = RunLogCreate(
        cmdline="x",
        exit_code=1,
        cwd="/home/coder/project/hw1",
        target_path="",
        process_type="notebook",
        timestamp="2025-07-30T15:00:00",
    )
    ev = st.run_event(SCOPE, other, WHEN)
    assert (ev.kind, ev.target, ev.path, ev.exit_code) == ("other", None, ".", 1)


def test_the_old_hooks_runs_are_notebook_cells():
    hook = RunLogCreate(
        cmdline="<unknown>",
        exit_code=1,
        cwd="/home/coder/project/hw1/lab",
        target_path="ipykernel",
        process_type="python",
        timestamp="2025-07-30T15:00:00",
    )
    ev = st.run_event(SCOPE, hook, WHEN)
    assert (ev.type, ev.source, ev.path, ev.cwd, ev.error, ev.started_at) == (
        "notebook.cell",
        "legacy",
        ".",
        "lab",
        "Exception",
        WHEN,
    )
    assert st.run_event(SCOPE, hook.model_copy(update={"exit_code": 0}), WHEN).error is None


def test_a_compiler_path_longer_than_the_column_keeps_its_name():
    ev = st.build_event(SCOPE, build_body(binary_path="/" + "d/" * 200 + "gcc-12"), WHEN)
    assert ev.compiler == "gcc-12"


def test_long_command_lines_are_truncated_not_rejected():
    ev = st.build_event(SCOPE, build_body(cmdline=" ".join(["x"] * 1000)), WHEN)
    assert len(ev.argv) == 256 and ev.argv_truncated


def test_request_bodies_are_strict():
    with pytest.raises(ValidationError):
        SnapshotCreate(bytes=-1)
    with pytest.raises(ValidationError):
        SnapshotCreate(bytes=1, extra=2)
    with pytest.raises(ValidationError):
        build_body(exit_code=256)
    with pytest.raises(ValidationError) as err:
        BuildLogCreate.model_validate({"bytes": 3})
    assert "build-log route" in str(err.value)
    assert SnapshotCreate(bytes=0).bytes == 0


def test_snapshot_times_sorted_distinct_kst():
    from watcher_backend.legacy.stats import Snap

    snaps = [Snap(WHEN, "a.c", 1), Snap(WHEN.replace(hour=5), "a.c", 2), Snap(WHEN, "a.c", 3)]
    assert st.snapshot_times(snaps) == ["20250730_140000", "20250730_150000"]
