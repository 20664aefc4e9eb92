"""ProgSnap2 (CSSPLICE) datasets from Watcher events: the mapping (pure) and the dataset writer.

Mapping, one stored event at a time (events of one student in time order):

| Watcher event        | ProgSnap2 row(s)                                                                   |
|----------------------|-------------------------------------------------------------------------------------|
| file.save            | File.Edit, CodeStateID = the student's assignment folder after the save             |
| file.delete          | File.Delete, CodeStateID = the folder after the deletion                            |
| file.too_large       | File.Edit without CodeStateID, LoggingErrorID=content-not-kept                      |
| process.compile      | Compile (CompileResult Success/Error); when it failed also a Compile.Error row,     |
|                      | ParentEventID = the Compile, IsFabricatedEvent=true (only the exit status is known) |
| process.run          | Run.Program (ExecutionResult Success, or Error on non-zero exit or a signal)        |
| notebook.cell        | Run.Program of the notebook (ExecutionResult Success, or Error: X-Exception names it) |

A CodeState is the whole assignment folder of one student (Directory representation): every file whose
content is known, at its latest saved version. Its id is a hash of the (path, sha256) list, so identical
folders share one CodeState. When some file's content is unknown (a legacy save reported only a size, a
file over the size limit, a snapshot missing from the store) the folder is not fully known and
CodeStateID is left blank, which ProgSnap2 defines as "changed but not logged", until every unknown file
is saved again or deleted.
"""

from __future__ import annotations

import csv
import errno
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from watcher_core import __version__, identity, snapshots, wire
from watcher_core.redact import redact_argv

PROGSNAP2_VERSION = "6.0.0"

COLUMNS = [
    "EventType",
    "EventID",
    "Order",
    "SubjectID",
    "ToolInstances",
    "ServerTimestamp",
    "ClientTimestamp",
    "CourseID",
    "CourseSectionID",
    "AssignmentID",
    "CodeStateID",
    "CodeStateSection",
    "ParentEventID",
    "ExecutionID",
    "CompileResult",
    "CompileMessageType",
    "CompileMessageData",
    "ExecutionResult",
    "LoggingErrorID",
    "IsFabricatedEvent",
    # Watcher's own columns (ProgSnap2 reserves the X- prefix for dataset-specific values).
    "X-Source",
    "X-Size",
    "X-ExitCode",
    "X-Signal",
    "X-DurationMs",
    "X-Argv",
    "X-Exception",
    "X-CellID",
]

METADATA = [
    ("Version", PROGSNAP2_VERSION),
    # Agents on many nodes stamp events with their own clocks; the server stamps arrival.
    ("IsEventOrderingConsistent", "false"),
    ("EventOrderScope", "Restricted"),
    ("EventOrderScopeColumns", "SubjectID"),
    ("CodeStateRepresentation", "Directory"),
    ("ProgramInputLinkTable", ""),
]

LOGGING_ERRORS = {
    "content-not-kept": "The file was saved but was over the size limit, so its content was not kept.",
    "content-not-recorded": "The save came through the old platform API, which reports sizes only, never content.",
    "snapshot-missing": "The save names a content (sha256) that the snapshot store given to the export does not hold.",
}

TOOL = f"JCode;JCode Watcher {__version__}"


def iso(value: datetime | str | None) -> str:
    """ISO 8601 in UTC with milliseconds and an explicit offset (``2025-03-02T01:00:00.000+00:00``)."""
    if value is None:
        return ""
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="milliseconds")


def code_state_id(files: dict[str, str]) -> str:
    """A stable id for one folder state: the hash of its sorted (path, sha256) list."""
    h = hashlib.sha256()
    for path in sorted(files):
        h.update(path.encode("utf-8", "surrogateescape") + b"\x00" + files[path].encode() + b"\n")
    return "cs-" + h.hexdigest()[:32]


@dataclass
class Mapped:
    """The rows one event becomes, and the CodeState to write if it is new to the dataset."""

    rows: list[dict[str, str]]
    new_code_state: tuple[str, dict[str, str]] | None = None


@dataclass
class _Folder:
    files: dict[str, str | None] = field(default_factory=dict)  # path -> sha256, None = content unknown

    def known(self) -> dict[str, str] | None:
        if any(sha is None for sha in self.files.values()):
            return None
        return dict(self.files)  # type: ignore[arg-type]


class Mapper:
    """Turns stored events (``store.event_dict`` shapes, or wire-like dicts) into ProgSnap2 rows.

    Feed the events of each student in time order. ``has_content(sha)`` says whether the snapshot store
    holds a content; ``subject_id(student_id)`` may pseudonymise; ``with_argv`` adds command lines
    (they may contain secrets, so they are left out unless asked for).
    """

    def __init__(
        self,
        *,
        has_content: Callable[[str], bool] = lambda sha: True,
        subject_id: Callable[[str], str] = lambda sid: sid,
        with_argv: bool = False,
    ):
        self._has_content = has_content
        self._subject_id = subject_id
        self._with_argv = with_argv
        self._order = 0
        self._folders: dict[tuple[str, str, str, str], _Folder] = {}
        self._written: set[str] = set()
        self.logging_errors_used: set[str] = set()

    # -- helpers ---------------------------------------------------------------------------------

    def _base(self, ev: dict[str, Any], event_type: str, event_id: str) -> dict[str, str]:
        self._order += 1
        row = dict.fromkeys(COLUMNS, "")
        row.update(
            {
                "EventType": event_type,
                "EventID": event_id,
                "Order": str(self._order),
                "SubjectID": self._subject_id(ev["student_id"]),
                "ToolInstances": TOOL,
                "ServerTimestamp": iso(ev.get("received_at")),
                "ClientTimestamp": iso(ev["timestamp"]),
                "CourseID": ev["course"],
                "CourseSectionID": f"{ev['course']}-{ev['section']}",
                # Unique across courses, as the spec asks: hw1 of two courses are different assignments.
                "AssignmentID": f"{ev['course']}:{ev['assignment']}",
                "X-Source": ev.get("source") or "",
            }
        )
        return row

    def _state(self, folder: _Folder) -> tuple[str, tuple[str, dict[str, str]] | None]:
        files = folder.known()
        if files is None:
            return "", None
        cid = code_state_id(files)
        if cid in self._written:
            return cid, None
        self._written.add(cid)
        return cid, (cid, files)

    def _error(self, row: dict[str, str], error_id: str) -> None:
        row["LoggingErrorID"] = error_id
        self.logging_errors_used.add(error_id)

    # -- the mapping -----------------------------------------------------------------------------

    def feed(self, ev: dict[str, Any]) -> Mapped:
        key = (ev["course"], ev["section"], ev["student_id"], ev["assignment"])
        folder = self._folders.setdefault(key, _Folder())
        etype = ev["type"]
        path = ev["path"]

        if etype == wire.FILE_SAVE:
            row = self._base(ev, "File.Edit", ev["event_id"])
            row["CodeStateSection"] = path
            row["X-Size"] = _str(ev.get("size"))
            sha = ev.get("sha256")
            if sha is None:
                folder.files[path] = None
                self._error(row, "content-not-recorded")
            elif not self._has_content(sha):
                folder.files[path] = None
                self._error(row, "snapshot-missing")
            else:
                folder.files[path] = sha
            cid, new = self._state(folder)
            # A save whose own content is unknown never gets a CodeStateID, even if the folder were known.
            row["CodeStateID"] = cid if folder.files.get(path) is not None else ""
            return Mapped([row], new if row["CodeStateID"] else None)

        if etype == wire.FILE_DELETE:
            row = self._base(ev, "File.Delete", ev["event_id"])
            row["CodeStateSection"] = path
            folder.files.pop(path, None)
            cid, new = self._state(folder)
            row["CodeStateID"] = cid
            return Mapped([row], new)

        if etype == wire.FILE_TOO_LARGE:
            row = self._base(ev, "File.Edit", ev["event_id"])
            row["CodeStateSection"] = path
            row["X-Size"] = _str(ev.get("size"))
            folder.files[path] = None
            row["CodeStateID"] = ""
            self._error(row, "content-not-kept")
            return Mapped([row])

        if etype in wire.PROCESS_TYPES:
            return self._process(ev, folder)

        if etype == wire.NOTEBOOK_CELL:
            cid, new = self._state(folder)
            row = self._base(ev, "Run.Program", ev["event_id"])
            row.update(
                CodeStateID=cid,
                CodeStateSection=path if path != "." else "",
                ExecutionID=ev["event_id"],
                ExecutionResult="Success" if ev.get("error") is None else "Error",
                ToolInstances=f"{TOOL};ipykernel",
                **{"X-Exception": _str(ev.get("error")), "X-CellID": _str(ev.get("cell_id"))},
            )
            row["X-DurationMs"] = "" if ev.get("duration_ms") is None else f"{float(ev['duration_ms']):.3f}"
            return Mapped([row], new)

        raise ValueError(f"unknown event type {etype!r}")

    def _process(self, ev: dict[str, Any], folder: _Folder) -> Mapped:
        is_compile = ev["type"] == wire.PROCESS_COMPILE
        exit_code, signal = ev.get("exit_code"), ev.get("signal")
        known = exit_code is not None or signal is not None
        ok = signal is None and exit_code == 0
        cid, new = self._state(folder)
        row = self._base(ev, "Compile" if is_compile else "Run.Program", ev["event_id"])
        row["CodeStateID"] = cid
        row["X-ExitCode"] = _str(exit_code)
        row["X-Signal"] = _str(signal)
        row["X-DurationMs"] = "" if ev.get("duration_ms") is None else f"{float(ev['duration_ms']):.3f}"
        if self._with_argv:
            argv = ev.get("argv") or []
            argv = redact_argv(argv if isinstance(argv, list) else json.loads(argv))  # known secrets replaced
            row["X-Argv"] = json.dumps(argv, ensure_ascii=False)
        rows = [row]
        if is_compile:
            sources = ev.get("sources") or []
            if isinstance(sources, str):
                sources = json.loads(sources)
            section = sources[0] if sources else (ev["path"] if ev["path"] != "." else "")
            row["CodeStateSection"] = section
            if ev.get("compiler"):
                row["ToolInstances"] = f"{TOOL};{ev['compiler']}"
            if known:
                row["CompileResult"] = "Success" if ok else "Error"
                if ok:
                    row["CompileMessageType"] = "Success"
            if known and not ok:
                err = self._base(ev, "Compile.Error", f"{ev['event_id']}:error")
                err.update(
                    ToolInstances=row["ToolInstances"],
                    CodeStateID=cid,
                    CodeStateSection=section,
                    ParentEventID=ev["event_id"],
                    CompileMessageType="Unknown",
                    CompileMessageData=(
                        f"compiler killed by signal {signal}"
                        if signal is not None
                        else f"compiler exited with status {exit_code}"
                    ),
                    IsFabricatedEvent="true",
                )
                rows.append(err)
        else:
            target = ev.get("target")
            row["CodeStateSection"] = target or (ev["path"] if ev["path"] != "." else "")
            row["ExecutionID"] = ev["event_id"]
            if known:
                row["ExecutionResult"] = "Success" if ok else "Error"
            if ev.get("kind") == "python":
                row["ToolInstances"] = f"{TOOL};python"
        return Mapped(rows, new)


def _str(value: Any) -> str:
    return "" if value is None else str(value)


# ------------------------------------------------------------------------------------------ writer


class ExportError(Exception):
    """The export cannot go on (the message names the option or file to fix)."""


@dataclass
class ExportStats:
    events: int = 0
    rows: int = 0
    code_states: int = 0
    files_copied: int = 0
    missing_snapshots: int = 0


def write_dataset(
    events: Iterable[dict[str, Any]],
    out_dir: str | os.PathLike,
    snapshot_dir: str | os.PathLike | None,
    *,
    subject_id: Callable[[str], str] = lambda sid: sid,
    with_argv: bool = False,
    progress: Callable[[ExportStats], None] | None = None,
    progress_every: int = 1000,
) -> ExportStats:
    """Write MainTable.csv, DatasetMetadata.csv, CodeStates/, LinkTables/LoggingErrors.csv and README.md.

    ``events`` must come ordered by student, then time. Without a snapshot dir every save counts as
    "snapshot-missing" (no CodeStates are written), which is still a valid ProgSnap2 dataset.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    states_dir = out / "CodeStates"
    states_dir.mkdir(exist_ok=True)
    store = Path(snapshot_dir) if snapshot_dir is not None else None
    stats = ExportStats()

    presence: dict[str, bool] = {}

    def has_content(sha: str) -> bool:
        if store is None:
            return False
        if sha not in presence:
            presence[sha] = snapshots.snapshot_path(store, sha).is_file()
            if not presence[sha]:
                stats.missing_snapshots += 1
        return presence[sha]

    mapper = Mapper(has_content=has_content, subject_id=subject_id, with_argv=with_argv)
    tmp_main = out / ".MainTable.csv.partial"
    with open(tmp_main, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS, restval="", extrasaction="raise")
        writer.writeheader()
        for ev in events:
            mapped = mapper.feed(ev)
            for row in mapped.rows:
                writer.writerow(row)
            stats.rows += len(mapped.rows)
            if mapped.new_code_state is not None:
                cid, files = mapped.new_code_state
                stats.files_copied += _write_code_state(states_dir / cid, files, store)  # type: ignore[arg-type]
                stats.code_states += 1
            stats.events += 1
            if progress is not None and stats.events % progress_every == 0:
                progress(stats)
    os.replace(tmp_main, out / "MainTable.csv")

    with open(out / "DatasetMetadata.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["Property", "Value"])
        w.writerows(METADATA)
    links = out / "LinkTables"
    links.mkdir(exist_ok=True)
    with open(links / "LoggingErrors.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["LoggingErrorID", "Explanation"])
        for key, text in LOGGING_ERRORS.items():
            w.writerow([key, text])
    (out / "README.md").write_text(DATASET_README, encoding="utf-8")
    return stats


def _write_code_state(folder: Path, files: dict[str, str], store: Path) -> int:
    """One CodeState folder: every file at its path relative to the assignment folder."""
    tmp = folder.with_name(folder.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    copied = 0
    for path, sha in sorted(files.items()):
        rel = identity.check_relative_path(path)  # stored paths are already checked; never trust them twice
        dest = tmp / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        data = snapshots.read_snapshot(store, sha)  # stored compressed (or raw, in an older store)
        if data is None:
            raise FileNotFoundError(errno.ENOENT, "removed from the snapshot store during the export", sha)
        dest.write_bytes(data)
        copied += 1
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)
    return copied


def iter_csv(path: str | os.PathLike) -> Iterator[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        yield from csv.DictReader(fh)


DATASET_README = """\
# JCode Watcher ProgSnap2 export

Events recorded by JCode Watcher (saved versions, compiles and runs of student code in the JCode web IDE),
written in the ProgSnap2 format (https://cssplice.github.io/progsnap2/).

* `MainTable.csv`: one row per event. `Order` is comparable only within one `SubjectID`
  (`EventOrderScope=Restricted`); events come from agents on many nodes with their own clocks, so
  `IsEventOrderingConsistent=false`. `ClientTimestamp` is when the agent observed the event,
  `ServerTimestamp` when the server stored it, both ISO 8601 in UTC.
* `CodeStates/<CodeStateID>/`: the student's whole assignment folder (every file whose content is known)
  after the event (`CodeStateRepresentation=Directory`). Identical folders share one CodeStateID.
  A blank CodeStateID means the folder changed but is not fully known (see LoggingErrorID).
* `CourseSectionID` is `<course>-<section>`; `AssignmentID` is `<course>:<assignment>`.

## Event mapping and fabricated events
* a saved source file -> `File.Edit`; a deleted file -> `File.Delete`;
  a file over the size limit -> `File.Edit` without CodeStateID and `LoggingErrorID=content-not-kept`.
* a compiler run (gcc, g++, clang...) -> `Compile` with `CompileResult` Success or Error
  (exit status 0 and no signal = Success). When it failed, a `Compile.Error` row follows with
  `ParentEventID` = the Compile and **`IsFabricatedEvent=true`**: Watcher records only the exit status,
  not the diagnostics, so `CompileMessageType` is `Unknown` and `CompileMessageData` states the exit status
  or signal. Its EventID is the Compile's EventID plus `:error`.
* a program run (student binary or `python x.py`) -> `Run.Program` with `ExecutionResult` Success
  (exit 0) or Error (non-zero exit or killed by a signal); `ExecutionID` = its EventID.
* a notebook cell run -> `Run.Program` with `CodeStateSection` = the notebook, `ToolInstances` ending in
  `ipykernel`, `ExecutionResult` Success or Error (the cell raised; `X-Exception` names the class).

## Custom columns
| column | meaning |
|---|---|
| X-Source | which collector reported the event: filemon, procmon, legacy (old platform API), ipynb, import |
| X-Size | file size in bytes (File.Edit) |
| X-ExitCode | process exit status (0-255), blank when killed by a signal or unknown |
| X-Signal | signal number that ended the process (e.g. 11 = SIGSEGV) |
| X-DurationMs | process run time in milliseconds, when known |
| X-Argv | the command line as a JSON list (only with `--with-argv`; it may contain secrets) |
| X-Exception | the exception class a notebook cell raised (e.g. ZeroDivisionError), blank on success |
| X-CellID | the front end's id of a notebook cell (the same cell keeps it across re-runs) |

## Logging errors
See `LinkTables/LoggingErrors.csv`.
"""
