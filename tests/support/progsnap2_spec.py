"""The ProgSnap2 specification, encoded for tests, and a validator every exported dataset goes through.

Independent of the exporter on purpose (it imports nothing from watcher_backend): the exporter must not grade
its own homework. The tables below are transcribed from the specification's machine-readable form,

    CSSPLICE/ProgSnapToolbox, src/spec/versions/progsnap2-v1.0.yaml (spec "version: 1.0" of that file,
    commit e165ac9a8ff32040221a9189d9c9f3ddf3dd4794, 2025-05-23), the CSSPLICE ProgSnap2 standard
    (https://cssplice.github.io/progsnap2/) as its maintainers encode it,

and checked by hand against it: the universal Required columns, each event type's required columns, the enum
values, the DatasetMetadata properties, and the datatypes of timestamps. What this module adds beyond the
YAML is marked "(our reading)" where the spec leaves it open.

``validate_dataset(path)`` returns a list of problems (empty = valid); ``assert_valid_dataset`` fails a test
with all of them listed.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path

import pytest

SPEC_SOURCE = "CSSPLICE/ProgSnapToolbox src/spec/versions/progsnap2-v1.0.yaml @ e165ac9a (2025-05-23)"

# -- MainTable columns -------------------------------------------------------------------------------------

# requirement: Required (present on every row, never blank).
REQUIRED_UNIVERSAL = ("EventType", "EventID", "SubjectID", "ToolInstances")
# The YAML marks CodeStateID Required too, while its own description says a blank CodeStateID means "changed
# but not logged": so the column must exist, and its value may be blank.
REQUIRED_COLUMN_MAY_BE_BLANK = ("CodeStateID",)
OPTIONAL_UNIVERSAL = (
    "Order",
    "ClientTimestamp",
    "ServerTimestamp",
    "CourseID",
    "CourseSectionID",
    "TermID",
    "AssignmentID",
    "AssignmentIsGraded",
    "ProblemID",
    "ProblemIsGraded",
    "Attempt",
    "ExperimentalCondition",
    "TeamID",
    "LoggingErrorID",
    "IsFabricatedEvent",
)
EVENT_SPECIFIC = (
    "ParentEventID",
    "SessionID",
    "ProjectID",
    "ResourceID",
    "CodeStateSection",
    "DestinationCodeStateSection",
    "EventInitiator",
    "EditType",
    "CompileResult",
    "CompileMessageType",
    "CompileMessageData",
    "SourceLocation",
    "ExecutionID",
    "TestID",
    "ExecutionResult",
    "Score",
    "ExtraCreditScore",
    "ProgramInput",
    "ProgramOutput",
    "ProgramErrorOutput",
    "InterventionCategory",
    "InterventionType",
    "InterventionMessage",
)
SPEC_COLUMNS = frozenset(REQUIRED_UNIVERSAL + REQUIRED_COLUMN_MAY_BE_BLANK + OPTIONAL_UNIVERSAL + EVENT_SPECIFIC)

# event type -> its required columns (the YAML's ``event_types[].required_columns``).
EVENT_TYPES: dict[str, tuple[str, ...]] = {
    "Session.Start": ("SessionID",),
    "Session.End": ("SessionID",),
    "Project.Open": ("ProjectID",),
    "Project.Close": ("ProjectID",),
    "File.Create": ("CodeStateSection",),
    "File.Delete": ("CodeStateSection",),
    "File.Open": ("CodeStateSection",),
    "File.Close": ("CodeStateSection",),
    "File.Save": ("CodeStateSection",),
    "File.Rename": ("CodeStateSection", "DestinationCodeStateSection"),
    "File.Copy": ("CodeStateSection", "DestinationCodeStateSection"),
    "File.Edit": ("CodeStateSection", "EditType"),
    "File.Focus": ("CodeStateSection",),
    "Compile": ("CodeStateSection", "CompileResult"),
    "Compile.Error": (
        "ParentEventID",
        "CodeStateSection",
        "CompileMessageType",
        "CompileMessageData",
        "SourceLocation",
    ),
    "Compile.Warning": (
        "ParentEventID",
        "CodeStateSection",
        "CompileMessageType",
        "CompileMessageData",
        "SourceLocation",
    ),
    "Submit": (),
    "Run.Program": ("ExecutionResult",),
    "Run.Test": ("ExecutionID", "TestID", "ExecutionResult"),
    "Debug.Program": ("ExecutionResult",),
    "Debug.Test": ("ExecutionID", "TestID", "ExecutionResult"),
    "Resource.View": ("ResourceID",),
    "Intervention": ("EventInitiator", "InterventionCategory", "InterventionType", "InterventionMessage"),
}

ENUMS: dict[str, frozenset[str]] = {
    "EditType": frozenset(
        {"Insert", "Delete", "Replace", "Move", "Paste", "Undo", "Redo", "Refactor", "Reset", "GenericEdit"}
    ),
    "CompileResult": frozenset({"Success", "Warning", "Error"}),
    "ExecutionResult": frozenset({"Success", "Timeout", "Error", "TestFailed"}),
    "EventInitiator": frozenset(
        {
            "UserDirectAction",
            "UserIndirectAction",
            "ToolReaction",
            "ToolTimedEvent",
            "InstructorDirectAction",
            "InstructorIndirectAction",
            "TeamMemberDirectAction",
            "TeamMemberIndirectAction",
        }
    ),
    "InterventionCategory": frozenset({"Feedback", "Hint", "CodeHighlight", "CodeChange", "EarnedGrade"}),
}
BOOLEANS = ("AssignmentIsGraded", "ProblemIsGraded", "IsFabricatedEvent")
INTEGERS = ("Order", "Attempt")
TIMESTAMPS = ("ClientTimestamp", "ServerTimestamp")

# -- DatasetMetadata ---------------------------------------------------------------------------------------

METADATA_PROPERTIES = frozenset(
    {
        "Version",
        "IsEventOrderingConsistent",
        "EventOrderScope",
        "EventOrderScopeColumns",
        "CodeStateRepresentation",
        "ProgramInputLinkTable",
    }
)
METADATA_ENUMS = {
    "EventOrderScope": frozenset({"Global", "Restricted", "None"}),
    "CodeStateRepresentation": frozenset({"Table", "Directory", "Git"}),
}

# (our reading) The spec has no way to keep an empty folder in a Directory CodeState through zip or git (both
# drop empty directories); the exporter writes this one placeholder file into an empty CodeState, documented in
# its README. A CodeState folder holding nothing at all would not survive being shared.
EMPTY_CODE_STATE_PLACEHOLDER = ".progsnap2-empty-code-state"

_TIMESTAMP_FORMATS = ("%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S.%f%z")


def _custom(name: str) -> bool:
    return name.startswith("X-")


def _is_timestamp_with_zone(value: str) -> bool:
    # The Toolbox's validator requires an explicit offset on both timestamps; these are its formats with one.
    for fmt in _TIMESTAMP_FORMATS:
        try:
            datetime.strptime(value, fmt)
            return True
        except ValueError:
            continue
    return False


def validate_rows(
    rows: Iterable[Mapping[str, str]], columns: Iterable[str] | None = None, *, logging_errors: Iterable[str] = ()
) -> list[str]:
    """Problems of MainTable rows against the spec (a row's blank value = the column is absent for it).

    (our reading) A row whose required event-specific value is blank is accepted only when it carries a
    LoggingErrorID: the spec asks producers to leave lost data as it is and annotate it with a logging error.
    """
    rows = list(rows)
    problems: list[str] = []
    header = list(columns) if columns is not None else (list(rows[0]) if rows else [])
    for col in REQUIRED_UNIVERSAL + REQUIRED_COLUMN_MAY_BE_BLANK:
        if col not in header:
            problems.append(f"MainTable: required column {col} is missing")
    for col in header:
        if col not in SPEC_COLUMNS and not _custom(col):
            problems.append(f"MainTable: column {col!r} is neither in the spec nor custom (X-)")
    if len(set(header)) != len(header):
        problems.append("MainTable: a column name repeats")
    known_errors = set(logging_errors)
    ids: set[str] = set()
    for n, row in enumerate(rows, start=2):  # line 1 is the header
        where = f"MainTable line {n} ({row.get('EventType')} {row.get('EventID')})"
        for col in REQUIRED_UNIVERSAL:
            if not row.get(col):
                problems.append(f"{where}: required {col} is blank")
        etype = row.get("EventType") or ""
        if etype not in EVENT_TYPES and not _custom(etype):
            problems.append(f"{where}: EventType {etype!r} is not in the spec (custom types start with X-)")
        for col in EVENT_TYPES.get(etype, ()):
            if not row.get(col) and not row.get("LoggingErrorID"):
                problems.append(f"{where}: {etype} requires {col}")
        eid = row.get("EventID") or ""
        if eid in ids:
            problems.append(f"{where}: EventID repeats")
        ids.add(eid)
        for col, allowed in ENUMS.items():
            value = row.get(col) or ""
            if value and value not in allowed and not _custom(value):
                problems.append(f"{where}: {col}={value!r} is not a spec value")
        for col in BOOLEANS:
            if (row.get(col) or "") not in ("", "true", "false"):
                problems.append(f"{where}: {col}={row.get(col)!r} is not a boolean")
        for col in INTEGERS:
            value = row.get(col) or ""
            if value and not re.fullmatch(r"-?\d+", value):
                problems.append(f"{where}: {col}={value!r} is not an integer")
        for col in TIMESTAMPS:
            value = row.get(col) or ""
            if value and not _is_timestamp_with_zone(value):
                problems.append(f"{where}: {col}={value!r} is not a timestamp with a UTC offset")
        error_id = row.get("LoggingErrorID") or ""
        if error_id and error_id not in known_errors:
            problems.append(f"{where}: LoggingErrorID {error_id!r} is not in LinkTables/LoggingErrors.csv")
        if row.get("DestinationCodeStateSection") and not row.get("CodeStateSection"):
            problems.append(f"{where}: DestinationCodeStateSection without CodeStateSection")
    for n, row in enumerate(rows, start=2):
        parent = row.get("ParentEventID") or ""
        if parent and parent not in ids:
            problems.append(f"MainTable line {n}: ParentEventID {parent!r} names no event")
    return problems


def _read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
        return list(reader.fieldnames or []), rows


def validate_dataset(root: str | Path) -> list[str]:
    """Problems of a whole dataset folder: DatasetMetadata, MainTable, CodeStates, LinkTables."""
    root = Path(root)
    problems: list[str] = []
    meta_path, main_path = root / "DatasetMetadata.csv", root / "MainTable.csv"
    for required in (meta_path, main_path):
        if not required.is_file():
            problems.append(f"{required.name} is missing")
    if problems:
        return problems

    meta_cols, meta_rows = _read_csv(meta_path)
    if meta_cols != ["Property", "Value"]:
        problems.append(f"DatasetMetadata: columns are {meta_cols}, not Property,Value")
    meta = {r.get("Property", ""): r.get("Value", "") for r in meta_rows}
    if len(meta) != len(meta_rows):
        problems.append("DatasetMetadata: a property repeats")
    for prop in meta:
        if prop not in METADATA_PROPERTIES and not _custom(prop):
            problems.append(f"DatasetMetadata: property {prop!r} is neither in the spec nor custom (X-)")
    if not re.fullmatch(r"\d+(\.\d+){0,2}", meta.get("Version", "")):
        problems.append(f"DatasetMetadata: Version {meta.get('Version')!r} is not a version number")
    if meta.get("IsEventOrderingConsistent", "false") not in ("true", "false"):
        problems.append("DatasetMetadata: IsEventOrderingConsistent is not a boolean")
    for prop, allowed in METADATA_ENUMS.items():
        if prop in meta and meta[prop] not in allowed:
            problems.append(f"DatasetMetadata: {prop}={meta[prop]!r} is not a spec value")

    columns, rows = _read_csv(main_path)
    if meta.get("EventOrderScope") == "Restricted":
        scope = [c for c in meta.get("EventOrderScopeColumns", "").split(";") if c]
        if not scope:
            problems.append("DatasetMetadata: EventOrderScope=Restricted needs EventOrderScopeColumns")
        problems += [
            f"DatasetMetadata: EventOrderScopeColumns names {c!r}, not a column" for c in scope if c not in columns
        ]

    logging_errors: list[str] = []
    links = root / "LinkTables"
    if links.is_dir():
        for table in sorted(links.glob("*.csv")):
            cols, link_rows = _read_csv(table)
            if not cols:
                problems.append(f"LinkTables/{table.name}: no header")
                continue
            keys = [r[cols[0]] for r in link_rows]
            if len(set(keys)) != len(keys) and table.name == "LoggingErrors.csv":
                problems.append(f"LinkTables/{table.name}: an id repeats")
            if table.name == "LoggingErrors.csv":
                if cols[0] != "LoggingErrorID":
                    problems.append("LinkTables/LoggingErrors.csv: the first column is not LoggingErrorID")
                logging_errors = keys
            elif cols[0] in SPEC_COLUMNS:
                # (our reading) a link table keyed by a MainTable id column links only ids the MainTable holds
                held = {r.get(cols[0], "") for r in rows}
                problems += [
                    f"LinkTables/{table.name}: {cols[0]} {k!r} is not in the MainTable" for k in set(keys) - held
                ]
    problems += validate_rows(rows, columns, logging_errors=logging_errors)

    representation = meta.get("CodeStateRepresentation", "Table")
    referenced = {r["CodeStateID"] for r in rows if r.get("CodeStateID")}
    if representation == "Directory":
        states = root / "CodeStates"
        present = {p.name for p in states.iterdir() if p.is_dir()} if states.is_dir() else set()
        problems += [f"CodeStates/{cid}/ is missing (named by the MainTable)" for cid in sorted(referenced - present)]
        problems += [f"CodeStates/{cid}/ is named by no MainTable row" for cid in sorted(present - referenced)]
        for cid in sorted(present & referenced):
            entries = list((states / cid).rglob("*"))
            if not any(p.is_file() for p in entries):
                problems.append(f"CodeStates/{cid}/ holds no file (zip and git would drop it)")
            empty_dirs = [p for p in entries if p.is_dir() and not any(p.iterdir())]
            problems += [f"CodeStates/{cid}/{p.relative_to(states / cid)} is an empty folder" for p in empty_dirs]
    return problems


def assert_valid_dataset(root: str | Path) -> None:
    problems = validate_dataset(root)
    assert not problems, f"{root} is not a valid ProgSnap2 dataset ({SPEC_SOURCE}):\n  " + "\n  ".join(problems[:50])


def assert_valid_rows(rows: Iterable[Mapping[str, str]], *, logging_errors: Iterable[str] = ()) -> None:
    problems = validate_rows(rows, logging_errors=logging_errors)
    assert not problems, f"rows are not valid ProgSnap2 ({SPEC_SOURCE}):\n  " + "\n  ".join(problems[:50])


# A dataset written by hand to test the validator itself (some broken on purpose) carries this file, so the
# check of every export leaves it alone.
NOT_AN_EXPORT = ".not-an-export"


def datasets_under(root: str | Path) -> list[Path]:
    """Every exported dataset folder (one with a DatasetMetadata.csv) below ``root``."""
    return sorted(p.parent for p in Path(root).rglob("DatasetMetadata.csv") if not (p.parent / NOT_AN_EXPORT).exists())


_validated: set[Path] = set()


@pytest.fixture(autouse=True)
def every_export_is_valid(tmp_path_factory):
    """Autouse (import it into a test module): after each test, every dataset written anywhere under the
    session's temporary folder and not yet checked goes through the validator, so no export the suite
    produces escapes it."""
    yield
    for dataset in datasets_under(tmp_path_factory.getbasetemp()):
        if dataset not in _validated:
            _validated.add(dataset)
            assert_valid_dataset(dataset)
