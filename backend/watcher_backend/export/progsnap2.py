"""ProgSnap2 (CSSPLICE) datasets from Watcher events: the mapping (pure) and the dataset writer.

Mapping, one stored event at a time (events of one student in time order):

| Watcher event        | ProgSnap2 row(s)                                                                   |
|----------------------|-------------------------------------------------------------------------------------|
| file.save            | File.Save (what filemon observes), preceded by a File.Edit (EditType=GenericEdit,   |
|                      | fabricated) when the saved content differs from the file's previous content         |
| file.delete          | File.Delete, CodeStateID = the folder after the deletion                            |
| file.too_large       | File.Save without CodeStateID, LoggingErrorID=content-not-kept                      |
| process.compile      | Compile (CompileResult Success/Error); when it failed also a Compile.Error row,     |
|                      | ParentEventID = the Compile, IsFabricatedEvent=true (only the exit status is known) |
| process.run          | Run.Program (ExecutionResult Success, or Error on non-zero exit or a signal)        |
| notebook.cell        | Run.Program of the notebook (ExecutionResult Success, or Error: X-Exception names it) |

A CodeState is the whole assignment folder of one student (Directory representation): every file whose
content is known, at its latest saved version. Its id is a hash of the (path, sha256) list, so identical
folders share one CodeState. When some file's content is unknown (a legacy save reported only a size, a
file over the size limit, a snapshot missing from the store) the CodeState is *partial*: the known files,
with the unknown ones listed in LinkTables/PartialCodeStates.csv and the row marked X-CodeStateIsPartial.
The event whose own content was not recorded keeps a blank CodeStateID ("changed but not logged").
SessionID splits a student's work on one assignment where the idle gap of time on task splits it
(``rollups.continues_work``).
"""

from __future__ import annotations

import csv
import errno
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from watcher_core import __version__, identity, snapshots, wire
from watcher_core.redact import redact_argv

from .. import rollups

PROGSNAP2_VERSION = "6.0.0"

COLUMNS = [
    "EventType",
    "EventID",
    "Order",
    "SubjectID",
    "ToolInstances",
    "ServerTimestamp",
    "ClientTimestamp",
    "SessionID",
    "TermID",
    "CourseID",
    "CourseSectionID",
    "AssignmentID",
    "CodeStateID",
    "CodeStateSection",
    "EditType",
    "ParentEventID",
    "ExecutionID",
    "CompileResult",
    "CompileMessageType",
    "CompileMessageData",
    "SourceLocation",
    "ExecutionResult",
    "LoggingErrorID",
    "IsFabricatedEvent",
    # Watcher's own columns (ProgSnap2 reserves the X- prefix for dataset-specific values).
    "X-CodeStateIsPartial",
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
    "result-not-recorded": "The process was seen to start but its exit status was never reported (e.g. the agent "
    "restarted while it ran), so CompileResult/ExecutionResult is unknown.",
    "diagnostic-not-recorded": "The compiler failed but its diagnostic (message type, text, location) was not "
    "captured; the Compile.Error row only says that compilation failed.",
}

# An empty folder (every file deleted) is a real CodeState, but zip and git drop empty directories: this one
# empty file stands in for "no files", so the CodeState folder survives being shared. Documented in the README.
EMPTY_CODE_STATE_PLACEHOLDER = ".progsnap2-empty-code-state"

# Edits between two saves are not observed one by one: the File.Edit a save reveals is all of them at once.
# The spec's GenericEdit is "any edit that can not be described by the edits listed".
EDIT_TYPE = "GenericEdit"

TOOL = f"JCode;JCode Watcher {__version__}"
FILE_EVENT_TYPES = (wire.FILE_SAVE, wire.FILE_DELETE, wire.FILE_TOO_LARGE)


def iso(value: datetime | str | None) -> str:
    """ISO 8601 in UTC with milliseconds and an explicit offset (``2025-03-02T01:00:00.000+00:00``)."""
    if value is None:
        return ""
    return utc(value).isoformat(timespec="milliseconds")


def utc(value: datetime | str) -> datetime:
    """An aware UTC datetime (SQLite hands back naive UTC datetimes, the API ISO strings)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def code_state_id(files: Mapping[str, str | None]) -> str:
    """A stable id for one folder state: the hash of its sorted (path, sha256) list. A file whose content is
    unknown (``None``) counts by its path, so a partial folder never shares an id with a complete one."""
    h = hashlib.sha256()
    for path in sorted(files):
        sha = files[path]
        h.update(path.encode("utf-8", "surrogateescape") + b"\x00" + (sha or "?").encode() + b"\n")
    return "cs-" + h.hexdigest()[:32]


@dataclass
class CodeState:
    """One folder state to write: the files with known content, and the files whose content is not known
    (path -> the LoggingErrorID saying why)."""

    id: str
    files: dict[str, str]
    missing: dict[str, str] = field(default_factory=dict)


@dataclass
class Mapped:
    """The rows one event becomes, and the CodeState to write if it is new to the dataset."""

    rows: list[dict[str, str]]
    new_code_state: CodeState | None = None


@dataclass
class _Folder:
    files: dict[str, str] = field(default_factory=dict)  # path -> sha256 of a content the store holds
    missing: dict[str, str] = field(default_factory=dict)  # path -> LoggingErrorID: content not known
    shas: dict[str, str | None] = field(default_factory=dict)  # path -> the last sha256 reported (edit detection)

    def set_known(self, path: str, sha: str) -> None:
        self.files[path] = sha
        self.missing.pop(path, None)

    def set_missing(self, path: str, error_id: str) -> None:
        self.files.pop(path, None)
        self.missing[path] = error_id

    def remove(self, path: str) -> None:
        self.files.pop(path, None)
        self.missing.pop(path, None)
        self.shas.pop(path, None)


@dataclass
class _Session:
    last: datetime
    id: str


class Mapper:
    """Turns stored events (``store.event_dict`` shapes, or wire-like dicts) into ProgSnap2 rows.

    Feed the events of each student in time order. ``has_content(sha)`` says whether the snapshot store
    holds a content; ``subject_id(student_id)`` may pseudonymise; ``with_argv`` adds command lines
    (they may contain secrets, so they are left out unless asked for); ``term`` fills TermID and
    qualifies CourseSectionID; ``idle_gap_seconds`` is the backend's idle gap (SessionID).
    """

    def __init__(
        self,
        *,
        has_content: Callable[[str], bool] = lambda sha: True,
        subject_id: Callable[[str], str] = lambda sid: sid,
        event_id: Callable[[str], str] = lambda eid: eid,
        with_argv: bool = False,
        term: str | None = None,
        idle_gap_seconds: float = 300,
    ):
        self._has_content = has_content
        self._subject_id = subject_id
        self._event_id = event_id
        self._with_argv = with_argv
        self._term = term or ""
        self._gap_us = round(idle_gap_seconds * 1_000_000)
        self._order = 0
        self._folders: dict[tuple[str, str, str, str], _Folder] = {}
        self._sessions: dict[tuple[str, str, str, str], _Session] = {}
        self._written: set[str] = set()
        self.logging_errors_used: set[str] = set()

    # -- helpers ---------------------------------------------------------------------------------

    def _base(self, ev: dict[str, Any], event_type: str, event_id: str) -> dict[str, str]:
        self._order += 1
        row = dict.fromkeys(COLUMNS, "")
        section = f"{ev['course']}-{ev['section']}"
        row.update(
            {
                "EventType": event_type,
                "EventID": event_id,
                "Order": str(self._order),
                "SubjectID": self._subject_id(ev["student_id"]),
                "ToolInstances": TOOL,
                "ServerTimestamp": iso(ev.get("received_at")),
                "ClientTimestamp": iso(ev["timestamp"]),
                "SessionID": ev.get("_session", ""),
                "TermID": self._term,
                "CourseID": ev["course"],
                # The spec: sections "should not share IDs across terms", so the term is part of the id.
                "CourseSectionID": f"{section}@{self._term}" if self._term else section,
                # Unique across courses, as the spec asks: hw1 of two courses are different assignments.
                "AssignmentID": f"{ev['course']}:{ev['assignment']}",
                "X-Source": ev.get("source") or "",
            }
        )
        return row

    def _state(self, folder: _Folder) -> tuple[str, CodeState | None]:
        everything: dict[str, str | None] = {**folder.files, **dict.fromkeys(folder.missing)}
        cid = code_state_id(everything)
        if cid in self._written:
            return cid, None
        self._written.add(cid)
        return cid, CodeState(cid, dict(folder.files), dict(folder.missing))

    def _error(self, row: dict[str, str], error_id: str) -> None:
        row["LoggingErrorID"] = error_id
        self.logging_errors_used.add(error_id)

    def _session(self, key: tuple[str, str, str, str], ev: dict[str, Any]) -> str:
        """The SessionID of this event: a new session after a gap longer than the idle gap (the rule of time
        on task), named after its first event (EventIDs are unique, so SessionIDs are too)."""
        ts = utc(ev["timestamp"])
        current = self._sessions.get(key)
        if current is not None and rollups.continues_work(current.last, ts, self._gap_us)[0]:
            current.last = max(current.last, ts)
            return current.id
        self._sessions[key] = _Session(ts, f"session:{ev['event_id']}")
        return self._sessions[key].id

    # -- the mapping -----------------------------------------------------------------------------

    def prime(self, ev: dict[str, Any]) -> None:
        """Take in a file event from before the export's window: it writes no row, but the folder it leaves
        is where the window starts, so a save gives the same CodeState in a full and a windowed export."""
        if ev["type"] not in FILE_EVENT_TYPES:  # compiles and runs before the window change no folder
            return
        key = (ev["course"], ev["section"], ev["student_id"], ev["assignment"])
        folder = self._folders.setdefault(key, _Folder())
        self._apply_file_event(ev, folder)

    def _apply_file_event(self, ev: dict[str, Any], folder: _Folder) -> tuple[str, bool]:
        """Update the folder for a file event; returns (LoggingErrorID or "", whether an edit is observed)."""
        etype, path = ev["type"], ev["path"]
        if etype == wire.FILE_DELETE:
            folder.remove(path)
            return "", False
        if etype == wire.FILE_TOO_LARGE:
            folder.set_missing(path, "content-not-kept")
            folder.shas[path] = None
            return "content-not-kept", False
        sha = ev.get("sha256")
        # An edit is observed when the content (by its hash) differs from what this file held before.
        edited = sha is not None and (path not in folder.shas or folder.shas[path] != sha)
        folder.shas[path] = sha
        if sha is None:
            folder.set_missing(path, "content-not-recorded")
            return "content-not-recorded", False
        if not self._has_content(sha):
            folder.set_missing(path, "snapshot-missing")
            return "snapshot-missing", edited
        folder.set_known(path, sha)
        return "", edited

    def _mark_state(self, rows: list[dict[str, str]], folder: _Folder, cid: str) -> None:
        for row in rows:
            if cid and row["CodeStateID"] == cid and folder.missing:
                row["X-CodeStateIsPartial"] = "true"

    def feed(self, ev: dict[str, Any]) -> Mapped:
        key = (ev["course"], ev["section"], ev["student_id"], ev["assignment"])
        folder = self._folders.setdefault(key, _Folder())
        # Stored EventIDs are hashes of facts that include the student id (the old API's) or the path: with
        # pseudonymised subjects they are pseudonymised too, before anything (ParentEventID, ExecutionID,
        # SessionID) is derived from them.
        ev = {**ev, "event_id": self._event_id(ev["event_id"])}
        ev["_session"] = self._session(key, ev)
        mapped = self._feed(ev, folder)
        for row in mapped.rows:
            self._mark_gaps(row)
        return mapped

    def _mark_gaps(self, row: dict[str, str]) -> None:
        """Annotate a row whose spec-required value was never reported with the logging error saying so (the
        spec: leave the data as it is, mark it with a LoggingErrorID)."""
        if row["LoggingErrorID"]:
            return
        etype = row["EventType"]
        if (etype == "Compile" and not row["CompileResult"]) or (etype == "Run.Program" and not row["ExecutionResult"]):
            self._error(row, "result-not-recorded")
        elif etype == "Compile.Error" and not row["SourceLocation"]:
            self._error(row, "diagnostic-not-recorded")

    def _feed(self, ev: dict[str, Any], folder: _Folder) -> Mapped:
        etype = ev["type"]
        path = ev["path"]

        if etype in (wire.FILE_SAVE, wire.FILE_TOO_LARGE):
            error_id, edited = self._apply_file_event(ev, folder)
            # A save whose own content is unknown never gets a CodeStateID: its change was not logged.
            own_cid, new = ("", None) if path in folder.missing else self._state(folder)
            rows = []
            if edited:
                edit = self._base(ev, "File.Edit", f"{ev['event_id']}:edit")
                edit.update(CodeStateSection=path, EditType=EDIT_TYPE, CodeStateID=own_cid, IsFabricatedEvent="true")
                rows.append(edit)
            save = self._base(ev, "File.Save", ev["event_id"])
            save.update(CodeStateSection=path, CodeStateID=own_cid, **{"X-Size": _str(ev.get("size"))})
            rows.append(save)
            for row in rows:
                if error_id:
                    self._error(row, error_id)
            self._mark_state(rows, folder, own_cid)
            return Mapped(rows, new)

        if etype == wire.FILE_DELETE:
            row = self._base(ev, "File.Delete", ev["event_id"])
            row["CodeStateSection"] = path
            self._apply_file_event(ev, folder)
            cid, new = self._state(folder)
            row["CodeStateID"] = cid
            self._mark_state([row], folder, cid)
            return Mapped([row], new)

        if etype in wire.PROCESS_TYPES:
            mapped = self._process(ev, folder)
            if mapped.rows:
                self._mark_state(mapped.rows, folder, mapped.rows[0]["CodeStateID"])
            return mapped

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
            self._mark_state([row], folder, cid)
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
    event_id: Callable[[str], str] = lambda eid: eid,
    with_argv: bool = False,
    term: str | None = None,
    idle_gap_seconds: float = 300,
    since: datetime | None = None,
    provenance: Mapping[str, str] | None = None,
    progress: Callable[[ExportStats], None] | None = None,
    progress_every: int = 1000,
) -> ExportStats:
    """Write MainTable.csv, DatasetMetadata.csv, CodeStates/, LinkTables/ and README.md.

    ``events`` must come ordered by student, then time. File events before ``since`` only set up the folders
    (no rows): pass them so the window's CodeStates hold the files saved before it. ``provenance`` (property
    -> value, names without the ``X-``) is written into DatasetMetadata and the README. Without a snapshot dir
    every save counts as "snapshot-missing", which is still a valid ProgSnap2 dataset.
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

    mapper = Mapper(
        has_content=has_content,
        subject_id=subject_id,
        event_id=event_id,
        with_argv=with_argv,
        term=term,
        idle_gap_seconds=idle_gap_seconds,
    )
    partial: list[tuple[str, str, str]] = []  # CodeStateID, path, LoggingErrorID
    tmp_main = out / ".MainTable.csv.partial"
    with open(tmp_main, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS, restval="", extrasaction="raise")
        writer.writeheader()
        for ev in events:
            if since is not None and utc(ev["timestamp"]) < since:
                mapper.prime(ev)
                continue
            mapped = mapper.feed(ev)
            for row in mapped.rows:
                writer.writerow(row)
            stats.rows += len(mapped.rows)
            state = mapped.new_code_state
            if state is not None:
                stats.files_copied += _write_code_state(states_dir / state.id, state.files, store)  # type: ignore[arg-type]
                stats.code_states += 1
                partial += [(state.id, path, why) for path, why in sorted(state.missing.items())]
                mapper.logging_errors_used.update(state.missing.values())
            stats.events += 1
            if progress is not None and stats.events % progress_every == 0:
                progress(stats)
    os.replace(tmp_main, out / "MainTable.csv")

    extra = [(f"X-{name}", value) for name, value in (provenance or {}).items()]
    with open(out / "DatasetMetadata.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["Property", "Value"])
        w.writerows(METADATA + extra)
    links = out / "LinkTables"
    links.mkdir(exist_ok=True)
    with open(links / "LoggingErrors.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["LoggingErrorID", "Explanation"])
        for key, text in LOGGING_ERRORS.items():
            w.writerow([key, text])
    with open(links / "PartialCodeStates.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["CodeStateID", "MissingFile", "LoggingErrorID"])
        w.writerows(partial)
    readme = DATASET_README
    if extra:
        readme += "\n## Provenance (also in DatasetMetadata.csv)\n" + "".join(
            f"* `{k}`: {v or '(none)'}\n" for k, v in extra
        )
    (out / "README.md").write_text(readme, encoding="utf-8")
    return stats


def _write_code_state(folder: Path, files: dict[str, str], store: Path) -> int:
    """One CodeState folder: every file at its path relative to the assignment folder (the placeholder
    alone when the folder is empty, so zip and git keep it)."""
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
    if not files:
        (tmp / EMPTY_CODE_STATE_PLACEHOLDER).write_bytes(b"")
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
  A folder with no file of known content holds one empty file, `.progsnap2-empty-code-state`, because zip
  and git drop empty folders; it is not a student file.
* Partial CodeStates: when a file's content is not known (see `LoggingErrorID`), the CodeState holds the
  other files, the row has `X-CodeStateIsPartial=true`, and `LinkTables/PartialCodeStates.csv` lists the
  missing files of each such CodeState and why. The save whose own content was not kept has a blank
  CodeStateID ("changed but not logged").
* `TermID` is the term given at export (blank if none); `CourseSectionID` is `<course>-<section>`, or
  `<course>-<section>@<term>` with a term; `AssignmentID` is `<course>:<assignment>`.
* `SessionID`: a student's events on one assignment split wherever two consecutive events are more than
  the idle gap apart (`X-IdleGapSeconds` in DatasetMetadata), the same rule Watcher uses for time on task.
  It is named after the session's first event. In an export with a start time, sessions begin at it.

## Event mapping and fabricated events
* a saved file -> `File.Save` (what Watcher observes: the editor wrote the file). When the saved content
  differs from the file's previous content, a `File.Edit` row comes first (EventID = the save's + `:edit`,
  `EditType=GenericEdit`, **`IsFabricatedEvent=true`**): the edits are known to have happened, all of them
  together, but not one by one; its time is the save's.
* a deleted file -> `File.Delete`; a file over the size limit -> `File.Save` without CodeStateID and
  `LoggingErrorID=content-not-kept`.
* a compiler run (gcc, g++, clang...) -> `Compile` with `CompileResult` Success or Error
  (exit status 0 and no signal = Success). When it failed, a `Compile.Error` row follows with
  `ParentEventID` = the Compile and **`IsFabricatedEvent=true`**: Watcher records only the exit status,
  not the diagnostics, so `CompileMessageType` is `Unknown`, `CompileMessageData` states the exit status
  or signal, `SourceLocation` is blank and `LoggingErrorID=diagnostic-not-recorded`. Its EventID is the
  Compile's EventID plus `:error`.
* a program run (student binary or `python x.py`) -> `Run.Program` with `ExecutionResult` Success
  (exit 0) or Error (non-zero exit or killed by a signal); `ExecutionID` = its EventID.
* a notebook cell run -> `Run.Program` with `CodeStateSection` = the notebook, `ToolInstances` ending in
  `ipykernel`, `ExecutionResult` Success or Error (the cell raised; `X-Exception` names the class).
* a compile or run whose exit status never arrived: blank result, `LoggingErrorID=result-not-recorded`.

## Custom columns
| column | meaning |
|---|---|
| X-CodeStateIsPartial | true when the row's CodeState lacks files whose content is not known |
| X-Source | which collector reported the event: filemon, procmon, legacy (old platform API), ipynb, import |
| X-Size | file size in bytes (File.Save) |
| X-ExitCode | process exit status (0-255), blank when killed by a signal or unknown |
| X-Signal | signal number that ended the process (e.g. 11 = SIGSEGV) |
| X-DurationMs | process run time in milliseconds, when known |
| X-Argv | the command line as a JSON list (only with `--with-argv`; it may contain secrets) |
| X-Exception | the exception class a notebook cell raised (e.g. ZeroDivisionError), blank on success |
| X-CellID | the front end's id of a notebook cell (the same cell keeps it across re-runs) |

## Logging errors
See `LinkTables/LoggingErrors.csv`.
"""
