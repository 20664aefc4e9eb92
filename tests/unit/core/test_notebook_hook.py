"""The notebook hook's pure parts: who (from the token), where (assignment and notebook), what (the event), and
the spool that keeps events until the backend has them. The hook in a real kernel: tests/integration/notebook."""

from __future__ import annotations

import ast
import fnmatch
import json
import os
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from pydantic import TypeAdapter

from watcher_core import cell_tokens, identity, wire
from watcher_core import notebook_hook as hook

KEY = "k" * 40
WS = "/home/coder/project"
PATTERN = re.compile(identity.DEFAULT_ASSIGNMENT_PATTERN)


# ---------------------------------------------------------------- identity from the token


@pytest.mark.parametrize(
    "student",
    [
        identity.Student("os", "1", "202012345"),
        identity.Student("data-structure", "2", "000123"),  # hyphenated course, leading zeros kept
        identity.Student("a_b", "A7", "s99"),
    ],
)
def test_identity_comes_from_a_genuine_token(student):
    token = cell_tokens.derive(KEY, student)
    assert hook.identity_from_token(token) == {
        "course": student.course,
        "section": student.section,
        "student_id": student.student_id,
    }
    assert cell_tokens.verify(KEY, token) == student  # the backend reads the same student from it


@pytest.mark.parametrize(
    "token",
    [
        None,
        "",
        "ingest-abc123",
        "nb1.os.1.2020",  # not a notebook token / no MAC
        "nb2.os.1.2020.mac",
        "nb1.os.1.2020.mac.extra",  # wrong version / too many parts
        "nb1.os.1-2.2020.mac",
        "nb1.os.1.20 20.mac",  # a section or student id the backend refuses
        "nb1.-os.1.2020.mac",
        "nb1.os.1.2020.ma/c",
    ],
)
def test_malformed_tokens_name_nobody(token):
    assert hook.identity_from_token(token) is None


def test_token_file_is_read_on_every_send(tmp_path):
    token_file = tmp_path / "token"
    config = hook.config_from_env({"WATCHER_NOTEBOOK_TOKEN_FILE": str(token_file)})
    assert config.read_token() is None  # secret not mounted yet
    token_file.write_text("nb1.os.1.2020.mac\n")
    assert config.read_token() == "nb1.os.1.2020.mac"  # picked up without a kernel restart
    assert hook.config_from_env({"WATCHER_NOTEBOOK_TOKEN": " t \n"}).read_token() == "t"


def test_configuration_defaults_match_the_platform():
    config = hook.config_from_env({"WATCHER_ASSIGNMENT_PATTERN": "lab[0-9]+", "WATCHER_BACKEND_URL": "http://b:3000/"})
    assert config.url == "http://b:3000" and config.pattern.fullmatch("lab3")
    config = hook.config_from_env({})
    assert config.url == "http://watcher-backend-service.watcher.svc.cluster.local:3000"
    assert config.workspace == identity.POD_WORKSPACE_MOUNT
    assert config.spool_dir == os.path.expanduser("~/.local/state/jcode-watcher/notebook")
    assert config.pattern.pattern == identity.DEFAULT_ASSIGNMENT_PATTERN
    assert re.fullmatch(r"[A-Za-z0-9._-]+", config.node)


# ---------------------------------------------------------------- which notebook, which assignment


def test_notebook_path_prefers_vscode_then_jupyter_server_then_the_cell_uri():
    uri = "vscode-notebook-cell:/home/coder/project/hw2/my%20lab.ipynb#W1sZmlsZQ%3D%3D"
    cwd = f"{WS}/hw1"
    assert (
        hook.notebook_path(
            {"__vsc_ipynb_file__": f"{WS}/hw1/a.ipynb"}, {"JPY_SESSION_NAME": f"{WS}/hw1/b.ipynb"}, uri, cwd
        )
        == f"{WS}/hw1/a.ipynb"
    )
    assert hook.notebook_path({}, {"JPY_SESSION_NAME": f"{WS}/hw1/b.ipynb"}, uri, cwd) == f"{WS}/hw1/b.ipynb"
    assert hook.notebook_path({}, {}, uri, cwd) == f"{WS}/hw2/my lab.ipynb"  # URL-decoded, fragment dropped
    # a remote window's URI has an authority; the path is still the notebook
    assert (
        hook.notebook_path({}, {}, "vscode-notebook-cell://ssh-remote%2Bpod/home/coder/project/hw3/x.ipynb#c1", cwd)
        == f"{WS}/hw3/x.ipynb"
    )
    # Jupyter Server < 2.0.7 gave the path relative to its root; the kernel runs in the notebook's folder
    assert hook.notebook_path({}, {"JPY_SESSION_NAME": "hw1/b.ipynb"}, None, cwd) == f"{WS}/hw1/b.ipynb"
    assert hook.notebook_path({"__vsc_ipynb_file__": 42}, {}, "plain-cell-id", cwd) is None  # nothing usable


@pytest.mark.parametrize(
    "notebook, cwd, expected",
    [
        (f"{WS}/hw1/lab.ipynb", f"{WS}/hw1", ("hw1", "lab.ipynb")),
        (f"{WS}/hw1/sub/deep/lab.ipynb", f"{WS}", ("hw1", "sub/deep/lab.ipynb")),
        (f"{WS}/week3/hw21/lab.ipynb", f"{WS}", ("hw21", "lab.ipynb")),  # first matching folder, whole name
        (f"{WS}/hw1/hw2/lab.ipynb", f"{WS}", ("hw1", "hw2/lab.ipynb")),
        (f"{WS}/hw1.ipynb", f"{WS}/hw4", ("hw4", ".")),  # a file named like one is no folder
        ("/tmp/scratch.ipynb", f"{WS}/hw2/data", ("hw2", ".")),  # notebook elsewhere: the cwd decides
        (None, f"{WS}/hw5", ("hw5", ".")),
        (f"{WS}/hw1/../../../etc/x.ipynb", "/etc", None),  # '..' does not escape the workspace
        ("/home/coder/project-old/hw1/lab.ipynb", "/home/coder/project-old/hw1", None),  # a prefix is not a parent
        (f"{WS}/notes/lab.ipynb", f"{WS}/notes", None),
        (f"{WS}/hw1/.ipynb_checkpoints/lab-checkpoint.ipynb", "/", None),  # ignored folders are never work
        (f"{WS}/venv/hw1/lab.ipynb", "/", None),
        (None, "/home/coder", None),
    ],
)
def test_assignment_and_notebook_path(notebook, cwd, expected):
    assert hook.resolve(notebook, cwd, WS, PATTERN) == expected


def test_the_workspace_may_be_reached_through_a_symlink(tmp_path):
    (tmp_path / "real" / "hw1").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "real")
    # os.getcwd() gives the real path; the configured workspace is the link
    assert hook.resolve(None, str(tmp_path / "real" / "hw1"), str(tmp_path / "link"), PATTERN) == ("hw1", ".")


@pytest.mark.parametrize(
    "rel",
    [
        "hw1/lab.ipynb",
        "a/b/hw3/x/y.ipynb",
        "hw1.ipynb",
        "x/lab.ipynb",
        "hw1/hw2/n.ipynb",
        ".hidden/hw1/n.ipynb",
        "hw1/__pycache__/n.ipynb",
        "hw1/site-packages/p/n.ipynb",
        "node_modules/hw2/n.ipynb",
        "hw02/n.ipynb",
        "HW1/n.ipynb",
    ],
)
def test_the_hook_places_notebooks_where_filemon_places_their_saves(rel):
    rules = identity.LayoutRules()
    student = identity.Student("os", "1", "2020")
    try:
        found = rules.locate_in_pod(student, f"{WS}/{rel}")
        expected = (found.assignment, found.path)
    except identity.IdentityError:
        expected = None
    assert hook.assignment_of(f"{WS}/{rel}", WS, PATTERN, is_dir=False) == expected
    folder = rel.rsplit("/", 1)[0]
    assert hook.assignment_of(f"{WS}/{folder}", WS, PATTERN, is_dir=True) == rules.assignment_dir(student, folder)


def test_ignored_folders_are_identitys():
    names = [
        "venv",
        ".git",
        ".ipynb_checkpoints",
        "__pycache__",
        "site-packages",
        "dist-packages",
        "node_modules",
        "src",
        "hw1",
        "venv2",
        "my.venv",
        "data",
    ]
    for name in names:
        expected = any(fnmatch.fnmatchcase(name, p) for p in identity.DEFAULT_IGNORE_DIRS)
        assert bool(hook.IGNORED_DIRS.fullmatch(name)) == expected, name


# ---------------------------------------------------------------- the event


class Oops(Exception):
    pass


def _local_error():
    class Local(Exception):
        pass

    return Local()


@pytest.mark.parametrize(
    "result, expected",
    [
        (SimpleNamespace(error_before_exec=None, error_in_exec=None), None),
        (
            SimpleNamespace(error_before_exec=None, error_in_exec=ZeroDivisionError("division by zero")),
            "ZeroDivisionError",
        ),
        (SimpleNamespace(error_before_exec=SyntaxError("bad"), error_in_exec=None), "SyntaxError"),
        (SimpleNamespace(error_before_exec=None, error_in_exec=KeyboardInterrupt()), "KeyboardInterrupt"),
        (
            SimpleNamespace(error_before_exec=None, error_in_exec=json.JSONDecodeError("x", "", 0)),
            "json.decoder.JSONDecodeError",
        ),
        (SimpleNamespace(error_before_exec=None, error_in_exec=Oops()), f"{__name__}.Oops"),
        (SimpleNamespace(error_before_exec=None, error_in_exec=_local_error()), "Local"),  # qualname has <locals>
        (SimpleNamespace(error_before_exec=None, error_in_exec=type("bad name", (Exception,), {})()), "Exception"),
        (None, None),  # IPython passes None when run_cell itself failed
    ],
)
def test_error_names(result, expected):
    name = hook.error_name(result)
    assert name == expected
    if name is not None:
        TypeAdapter(wire.ExceptionName).validate_python(name)


def _event(**overrides):
    start = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
    args = dict(
        node="jcode-os-1-2020-7d9f8b6c5d-x2x7z",
        where=("hw1", "lab.ipynb"),
        started=start,
        ended=start + timedelta(seconds=2),
        error=None,
        cell_id="cell-a",
        execution_count=3,
    )
    args.update(overrides)
    return hook.build_event(**args)


def test_the_event_is_a_valid_notebook_cell_once_the_sender_adds_the_student():
    student = hook.identity_from_token(cell_tokens.derive(KEY, identity.Student("os", "1", "000123")))
    event = wire.parse_event(dict(_event(error="ZeroDivisionError"), **student))
    assert isinstance(event, wire.NotebookCell)
    assert (event.student_id, event.assignment, event.path, event.source) == ("000123", "hw1", "lab.ipynb", "ipynb")
    assert (event.error, event.execution_count) == ("ZeroDivisionError", 3)
    assert (event.cell_id, event.cell_index) == ("cell-a", None)
    assert event.timestamp == event.started_at and (event.ended_at - event.started_at).total_seconds() == 2


def test_event_ids_are_unique_and_fields_are_kept_inside_the_wire_limits():
    ids = {_event()["event_id"] for _ in range(200)}
    assert len(ids) == 200 and all(TypeAdapter(wire.EventId).validate_python(i) for i in ids)
    start = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
    # the wall clock stepped back during the cell, a huge cell id with a NUL, a nonsense counter
    event = _event(ended=start - timedelta(seconds=5), cell_id="\x00" + "c" * 400, execution_count=-1)
    parsed = wire.parse_event(dict(event, course="os", section="1", student_id="2020"))
    assert parsed.ended_at == parsed.started_at
    assert parsed.cell_id == "c" * 255 and parsed.execution_count is None
    assert _event(cell_id=17)["cell_id"] is None


# ---------------------------------------------------------------- cell_index from the saved notebook


def _notebook(path, ids):
    cells = [
        {
            "cell_type": "code",
            "source": "",
            "metadata": {},
            "outputs": [],
            "execution_count": None,
            **({"id": i} if i else {}),
        }
        for i in ids
    ]
    path.write_text(json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": cells}))
    return str(path)


def test_cell_index_is_the_position_of_the_cell_with_that_id(tmp_path):
    nb = _notebook(tmp_path / "lab.ipynb", ["intro", "load", "plot", "load"])
    assert [hook.cell_index(nb, i) for i in ("intro", "load", "plot")] == [0, 1, 2]  # a duplicated id: the first
    assert hook.cell_index(nb, "vscode-notebook-cell:/x.ipynb#W0") is None
    assert hook.cell_index(nb, None) is None and hook.cell_index(None, "intro") is None


def test_cell_index_is_null_when_the_notebook_cannot_tell(tmp_path):
    assert hook.cell_index(_notebook(tmp_path / "old.ipynb", [None, None]), "intro") is None  # nbformat 4.4: no ids
    assert hook.cell_index(str(tmp_path / "missing.ipynb"), "intro") is None
    (tmp_path / "half.ipynb").write_text('{"cells": [{"id": "intro"')  # saved halfway
    assert hook.cell_index(str(tmp_path / "half.ipynb"), "intro") is None
    (tmp_path / "list.ipynb").write_text("[1, 2]")
    assert hook.cell_index(str(tmp_path / "list.ipynb"), "intro") is None


def test_cell_index_reads_each_notebook_once_per_batch(tmp_path):
    nb = tmp_path / "lab.ipynb"
    _notebook(nb, ["a", "b"])
    cache = {}
    assert hook.cell_index(str(nb), "b", cache) == 1
    nb.unlink()
    assert hook.cell_index(str(nb), "a", cache) == 0


# ---------------------------------------------------------------- the spool


def _ids(records):
    return [r["event"]["event_id"] for r in records]


def test_spool_keeps_event_ids_until_removed_so_a_resend_cannot_double(tmp_path):
    spool = hook.Spool(str(tmp_path / "spool"))
    events = [_event() for _ in range(5)]
    for e in events:
        spool.append(e, "/nb.ipynb")
    first, pending, dropped, corrupt = spool.take(3)
    assert _ids(first) == [e["event_id"] for e in events[:3]] and (pending, dropped, corrupt) == (5, 0, 0)
    assert first[0]["notebook"] == "/nb.ipynb"
    again, _, _, _ = spool.take(3)  # a failed send leaves them: the retry sends the very same ids
    assert _ids(again) == _ids(first)
    assert spool.remove(set(_ids(first))) == 2
    assert _ids(spool.take(10)[0]) == [e["event_id"] for e in events[3:]]
    assert spool.remove({"ipynb:unknown"}) == 2


def test_spool_cap_drops_the_oldest_and_says_how_many(tmp_path):
    spool = hook.Spool(str(tmp_path), cap=3)
    events = [_event() for _ in range(5)]
    for e in events:
        spool.append(e)
    records, pending, dropped, _ = spool.take(10)
    assert (pending, dropped) == (3, 2)
    assert _ids(records) == [e["event_id"] for e in events[2:]]
    assert spool.take(10)[2] == 0  # dropped once, counted once


def test_a_line_cut_short_by_a_crash_costs_only_itself(tmp_path):
    spool = hook.Spool(str(tmp_path))
    kept = _event()
    spool.append(kept)
    with open(spool.path, "a") as f:
        f.write('{"id":"ipynb:half","event":{"event_')  # the kernel died mid-write
    later = _event()
    spool.append(later)
    records, pending, dropped, corrupt = spool.take(10)
    assert _ids(records) == [kept["event_id"], later["event_id"]] and (pending, corrupt) == (2, 1)
    assert spool.take(10)[3] == 0
    # a line whose id prefix does not match its event could never be removed: resent forever, so dropped
    with open(spool.path, "a") as f:
        f.write(json.dumps({"event": _event(), "id": "x"}) + "\n")
    assert spool.take(10)[3] == 1 and spool.take(10)[1] == 2


def test_status_adds_up_the_counts_of_every_kernel_that_used_the_spool(tmp_path):
    spool = hook.Spool(str(tmp_path))
    spool.merge_status({"sent": 3, "outside_assignment": 1}, 4, {"last_error": {"message": "HTTP 503: down"}})
    spool.merge_status({"sent": 2, "rejected": 1}, 0, {"last_sent_at": "2025-03-01T09:00:00+00:00"})
    status = json.loads((tmp_path / "status.json").read_text())
    assert (status["sent"], status["rejected"], status["outside_assignment"], status["pending"]) == (5, 1, 1, 0)
    assert status["last_error"]["message"] == "HTTP 503: down" and status["last_sent_at"]
    assert set(hook.COUNTERS) <= set(status)
    for stray in ("{not json", "[1]", '{"sent": "many"}'):  # an operator's stray edit does not stop the counting
        (tmp_path / "status.json").write_text(stray)
        spool.merge_status({"sent": 1}, 0, {})
        assert json.loads((tmp_path / "status.json").read_text())["sent"] == 1


def test_a_bad_assignment_pattern_is_reported_not_fatal():
    config = hook.config_from_env({"WATCHER_ASSIGNMENT_PATTERN": "hw(\\d+"})
    assert config.pattern.pattern == identity.DEFAULT_ASSIGNMENT_PATTERN and "not a regex" in config.problem
    assert hook.Hook(None, config)._extra["config_error"] == config.problem  # goes into status.json


def test_the_file_can_be_mounted_into_any_student_image():
    """Copied verbatim into a ConfigMap: Python 3.9 syntax, and nothing outside the standard library."""
    tree = ast.parse(Path(hook.__file__).read_text(), feature_version=(3, 9))
    imported = {
        alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    }
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported and imported <= set(sys.stdlib_module_names), imported - set(sys.stdlib_module_names)


def test_importing_the_module_installs_nothing():
    assert not hasattr(hook, "_jcode_watcher_saved_ns")
    assert hook.MODULE_NAME not in sys.modules
