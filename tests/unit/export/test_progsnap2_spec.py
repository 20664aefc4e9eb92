"""The spec validator (tests/support/progsnap2_spec.py) itself: it accepts a small dataset written by hand
from the spec, and names each violation of a copy broken one way at a time. Every export the suite writes
goes through it (tests/integration/export, tests/system/legacy)."""

import csv
from pathlib import Path

import pytest

from support import progsnap2_spec as spec

HEADER = ["EventType", "EventID", "Order", "SubjectID", "ToolInstances", "ClientTimestamp", "CodeStateID"]
HEADER += ["CodeStateSection", "EditType", "ParentEventID", "CompileResult", "CompileMessageType"]
HEADER += ["CompileMessageData", "SourceLocation", "ExecutionResult", "LoggingErrorID", "X-Note"]


def row(etype, eid, **values):
    r = dict.fromkeys(HEADER, "")
    r.update(EventType=etype, EventID=eid, SubjectID="s1", ToolInstances="gcc 12")
    r.update(ClientTimestamp="2025-03-02T01:00:00.000+00:00", CodeStateID="1")
    r.update(values)
    return r


GOOD = [
    row("File.Edit", "e1", Order="1", CodeStateSection="a.c", EditType="GenericEdit"),
    row("File.Save", "e2", Order="2", CodeStateSection="a.c"),
    row("Compile", "e3", Order="3", CodeStateSection="a.c", CompileResult="Error"),
    row(
        "Compile.Error",
        "e4",
        Order="4",
        ParentEventID="e3",
        CodeStateSection="a.c",
        CompileMessageType="error",
        CompileMessageData="expected ';'",
        SourceLocation="Text:3:10",
    ),
    row("Run.Program", "e5", Order="5", CodeStateID="", ExecutionResult="", LoggingErrorID="lost"),
    row("X-Custom", "e6", Order="6"),
]


def write(root: Path, rows, meta=None, states=("1",), errors=("lost",)):
    root.mkdir()
    (root / spec.NOT_AN_EXPORT).touch()
    with open(root / "MainTable.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    meta = meta or {
        "Version": "6.0.0",
        "IsEventOrderingConsistent": "false",
        "EventOrderScope": "Restricted",
        "EventOrderScopeColumns": "SubjectID",
        "CodeStateRepresentation": "Directory",
    }
    with open(root / "DatasetMetadata.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["Property", "Value"])
        w.writerows(meta.items())
    for cid in states:
        (root / "CodeStates" / cid).mkdir(parents=True)
        (root / "CodeStates" / cid / "a.c").write_text("int x;\n")
    (root / "LinkTables").mkdir()
    with open(root / "LinkTables" / "LoggingErrors.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["LoggingErrorID", "Explanation"])
        w.writerows((e, "why") for e in errors)
    return root


def test_a_dataset_written_from_the_spec_is_valid(tmp_path):
    assert spec.validate_dataset(write(tmp_path / "ok", GOOD)) == []


def test_the_encoded_table_is_the_specs():
    # spot checks against the spec's event_types (progsnap2-v1.0.yaml): what analyses rely on
    assert spec.EVENT_TYPES["File.Edit"] == ("CodeStateSection", "EditType")
    assert spec.EVENT_TYPES["Compile"] == ("CodeStateSection", "CompileResult")
    assert spec.EVENT_TYPES["Compile.Error"] == (
        "ParentEventID",
        "CodeStateSection",
        "CompileMessageType",
        "CompileMessageData",
        "SourceLocation",
    )
    assert spec.EVENT_TYPES["Run.Program"] == ("ExecutionResult",)
    assert spec.EVENT_TYPES["File.Save"] == ("CodeStateSection",)
    assert spec.EVENT_TYPES["Session.Start"] == ("SessionID",)
    assert len(spec.EVENT_TYPES) == 23


def _edit(rows, i, **values):
    rows = [dict(r) for r in rows]
    rows[i].update(values)
    return rows


@pytest.mark.parametrize(
    ("rows", "problem"),
    [
        (_edit(GOOD, 0, EditType=""), "File.Edit requires EditType"),
        (_edit(GOOD, 0, EditType="Typing"), "EditType='Typing' is not a spec value"),
        (_edit(GOOD, 2, CompileResult=""), "Compile requires CompileResult"),
        (_edit(GOOD, 3, SourceLocation=""), "Compile.Error requires SourceLocation"),
        (_edit(GOOD, 3, ParentEventID="nope"), "ParentEventID 'nope' names no event"),
        (_edit(GOOD, 4, LoggingErrorID=""), "Run.Program requires ExecutionResult"),
        (_edit(GOOD, 4, LoggingErrorID="unlisted"), "LoggingErrorID 'unlisted' is not in LinkTables"),
        (_edit(GOOD, 1, EventID="e1"), "EventID repeats"),
        (_edit(GOOD, 1, SubjectID=""), "required SubjectID is blank"),
        (_edit(GOOD, 1, EventType="File.Touch"), "EventType 'File.Touch' is not in the spec"),
        (_edit(GOOD, 1, ClientTimestamp="2025-03-02 01:00"), "is not a timestamp with a UTC offset"),
        (_edit(GOOD, 1, ClientTimestamp="2025-03-02T01:00:00"), "is not a timestamp with a UTC offset"),
        (_edit(GOOD, 1, Order="first"), "Order='first' is not an integer"),
        (_edit(GOOD, 1, CodeStateID="2"), "CodeStates/2/ is missing"),
        ([{k: v for k, v in r.items() if k != "ToolInstances"} for r in GOOD], "required column ToolInstances"),
        ([{**r, "Grade": ""} for r in GOOD], "column 'Grade' is neither in the spec nor custom"),
    ],
)
def test_each_violation_is_named(tmp_path, rows, problem):
    problems = spec.validate_dataset(write(tmp_path / "bad", rows))
    assert any(problem in p for p in problems), problems


def test_metadata_and_code_state_shape(tmp_path):
    bad_meta = {"Version": "six", "EventOrderScope": "Restricted", "CodeStateRepresentation": "Folder", "Color": "x"}
    problems = spec.validate_dataset(write(tmp_path / "m", GOOD, meta=bad_meta))
    for expected in (
        "Version 'six'",
        "EventOrderScope=Restricted needs EventOrderScopeColumns",
        "CodeStateRepresentation='Folder'",
        "property 'Color'",
    ):
        assert any(expected in p for p in problems), (expected, problems)

    root = write(tmp_path / "s", GOOD, states=("1", "9"))
    (root / "CodeStates" / "1" / "a.c").unlink()
    problems = spec.validate_dataset(root)
    assert any("CodeStates/1/ holds no file" in p for p in problems), problems
    assert any("CodeStates/9/ is named by no MainTable row" in p for p in problems), problems
