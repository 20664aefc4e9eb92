"""The ProgSnap2 mapping, checked row by row against a golden MainTable reviewed by hand."""

import csv
import io
import os
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from support.progsnap2_spec import assert_valid_rows
from watcher_backend import store
from watcher_backend.export import progsnap2 as ps

GOLDEN = Path(__file__).parent / "golden" / "main_table.csv"
T0 = datetime(2025, 3, 2, 1, 0, 0, tzinfo=UTC)
SHA_A1 = "a1" * 32
SHA_A2 = "a2" * 32
SHA_B1 = "b1" * 32
SHA_GONE = "ff" * 32


def ev(i, type_, path, **fields):
    base = {
        "event_id": f"ev-{i:04d}-test",
        "type": type_,
        "timestamp": T0 + timedelta(minutes=i),
        "received_at": T0 + timedelta(minutes=i, seconds=2),
        "node": "node-1",
        "source": "filemon" if type_.startswith("file") else "procmon",
        "course": "data-structure",
        "section": "2",
        "student_id": "000123",
        "assignment": "hw1",
        "path": path,
    }
    base.update(fields)
    return base


def proc(i, type_, path, exit_code, signal=None, **fields):
    return ev(
        i,
        type_,
        path,
        argv=["gcc", "-o", "a", "a.c"],
        cwd=".",
        exit_code=exit_code,
        signal=signal,
        started_at=T0 + timedelta(minutes=i),
        ended_at=None,
        duration_ms=12.5,
        pid=42,
        **fields,
    )


EVENTS = [
    ev(1, "file.save", "a.c", sha256=SHA_A1, size=10),  # File.Edit, state {a1}
    ev(2, "file.save", "src/b.h", sha256=SHA_B1, size=5),  # state {a1,b1}
    proc(3, "process.compile", "a.c", 0, compiler="gcc", sources=["a.c"], output="a"),  # Compile Success
    proc(4, "process.compile", "a.c", 1, compiler="gcc", sources=["a.c"], output="a"),  # Compile Error + Compile.Error
    proc(5, "process.run", "a", 0, kind="binary", target="a"),  # Run.Program Success
    proc(6, "process.run", "a", None, signal=11, kind="binary", target="a"),  # signal -> Error
    ev(7, "file.save", "a.c", sha256=SHA_A2, size=12),  # new state {a2,b1}
    ev(8, "file.save", "a.c", sha256=SHA_A1, size=10),  # back to {a1,b1}: reused id
    ev(9, "file.too_large", "big.c", size=2_000_000, limit=1_048_576),  # unknown -> blank
    proc(10, "process.run", "main.py", 0, kind="python", target="main.py"),  # folder unknown -> blank
    ev(11, "file.delete", "big.c"),  # known again {a1,b1}
    ev(12, "file.save", "c.c", sha256=None, size=3, source="legacy"),  # legacy: content-not-recorded
    ev(13, "file.save", "c.c", sha256=SHA_GONE, size=3),  # not in the store
    ev(14, "file.delete", "c.c"),
    ev(15, "file.save", "a.c", sha256=SHA_A1, size=10, student_id="000124"),  # another student
]


def map_all(events, **kw):
    mapper = ps.Mapper(has_content=lambda sha: sha != SHA_GONE, **kw)
    rows, states = [], []
    for e in events:
        m = mapper.feed(e)
        rows += m.rows
        if m.new_code_state:
            states.append(m.new_code_state)
    return rows, states, mapper


def to_csv(rows):
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=ps.COLUMNS, restval="", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def test_main_table_matches_golden_file():
    rows, _, _ = map_all(EVENTS)
    assert_valid_rows(rows, logging_errors=ps.LOGGING_ERRORS)
    text = to_csv(rows)
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.write_text(text, encoding="utf-8")
    assert text == GOLDEN.read_text(encoding="utf-8")


def test_key_facts_of_the_mapping():
    rows, states, mapper = map_all(EVENTS)
    assert_valid_rows(rows, logging_errors=ps.LOGGING_ERRORS)
    by_id = {r["EventID"]: r for r in rows}
    types = [r["EventType"] for r in rows]
    assert types == [
        "File.Edit",
        "File.Save",
        "File.Edit",
        "File.Save",
        "Compile",
        "Compile",
        "Compile.Error",
        "Run.Program",
        "Run.Program",
        "File.Edit",
        "File.Save",
        "File.Edit",
        "File.Save",
        "File.Save",  # too large: a save, no edit is observable
        "Run.Program",
        "File.Delete",
        "File.Save",  # legacy: size only, no edit is observable
        "File.Edit",  # snapshot missing: the hash changed, so an edit is observed
        "File.Save",
        "File.Delete",
        "File.Edit",
        "File.Save",
    ]
    assert [int(r["Order"]) for r in rows] == list(range(1, len(rows) + 1))
    assert len({r["EventID"] for r in rows}) == len(rows)
    edit, save = by_id["ev-0001-test:edit"], by_id["ev-0001-test"]
    assert (edit["EditType"], edit["IsFabricatedEvent"], save["EditType"]) == ("GenericEdit", "true", "")
    assert edit["CodeStateID"] == save["CodeStateID"] != ""
    ok, bad, err = by_id["ev-0003-test"], by_id["ev-0004-test"], by_id["ev-0004-test:error"]
    assert (ok["CompileResult"], ok["CompileMessageType"]) == ("Success", "Success")
    assert bad["CompileResult"] == "Error"
    assert err["ParentEventID"] == "ev-0004-test" and err["IsFabricatedEvent"] == "true"
    assert err["CodeStateID"] == bad["CodeStateID"] != ""
    assert by_id["ev-0005-test"]["ExecutionResult"] == "Success"
    assert by_id["ev-0006-test"]["ExecutionResult"] == "Error" and by_id["ev-0006-test"]["X-Signal"] == "11"
    # the folder state after save 2 is what was compiled
    assert (
        ok["CodeStateID"]
        == by_id["ev-0002-test"]["CodeStateID"]
        == ps.code_state_id({"a.c": SHA_A1, "src/b.h": SHA_B1})
    )
    # returning to an earlier folder reuses its CodeStateID and does not write it again; it is still an edit
    assert by_id["ev-0008-test"]["CodeStateID"] == ok["CodeStateID"]
    assert by_id["ev-0008-test:edit"]["EditType"] == "GenericEdit"
    big = by_id["ev-0009-test"]
    assert (big["EventType"], big["CodeStateID"], big["LoggingErrorID"]) == ("File.Save", "", "content-not-kept")
    assert big["X-CodeStateIsPartial"] == ""  # no CodeState, so nothing is partial
    # the run after it sees the other files (a partial CodeState, marked), not a blank
    partial = by_id["ev-0010-test"]
    assert partial["CodeStateID"] == ps.code_state_id({"a.c": SHA_A1, "src/b.h": SHA_B1, "big.c": None})
    assert partial["X-CodeStateIsPartial"] == "true"
    assert by_id["ev-0011-test"]["CodeStateID"] == ok["CodeStateID"]  # deleting it makes the folder whole again
    assert by_id["ev-0011-test"]["X-CodeStateIsPartial"] == ""
    assert by_id["ev-0012-test"]["LoggingErrorID"] == "content-not-recorded"
    assert by_id["ev-0013-test"]["LoggingErrorID"] == "snapshot-missing"
    assert by_id["ev-0015-test"]["SubjectID"] == "000124"
    assert [(s.id, s.files, s.missing) for s in states] == [
        (ps.code_state_id({"a.c": SHA_A1}), {"a.c": SHA_A1}, {}),
        (ps.code_state_id({"a.c": SHA_A1, "src/b.h": SHA_B1}), {"a.c": SHA_A1, "src/b.h": SHA_B1}, {}),
        (ps.code_state_id({"a.c": SHA_A2, "src/b.h": SHA_B1}), {"a.c": SHA_A2, "src/b.h": SHA_B1}, {}),
        (partial["CodeStateID"], {"a.c": SHA_A1, "src/b.h": SHA_B1}, {"big.c": "content-not-kept"}),
    ]
    assert all(r["CourseSectionID"] == "data-structure-2" and r["AssignmentID"] == "data-structure:hw1" for r in rows)
    assert all(r["TermID"] == "" for r in rows)
    assert mapper.logging_errors_used == {
        "content-not-kept",
        "content-not-recorded",
        "snapshot-missing",
        "diagnostic-not-recorded",
    }
    assert all(r["X-Argv"] == "" for r in rows)


def test_sessions_split_where_time_on_task_stops_counting():
    """SessionID follows the idle-gap rule of time on task (rollups.active_us): a gap equal to the idle gap
    still counts as work; one microsecond more is a break. Sessions are per student and assignment."""
    gap = 300
    times = [0, 60, 60 + gap, 60 + 2 * gap + 1, 60 + 2 * gap + 2]  # seconds
    events = [
        dict(ev(i, "file.save", "a.c", sha256=SHA_A1, size=1), timestamp=T0 + timedelta(seconds=t))
        for i, t in enumerate(times)
    ]
    events.append(dict(ev(9, "file.save", "a.c", sha256=SHA_A1, size=1, assignment="hw2"), timestamp=T0))
    rows, _, _ = map_all(events, idle_gap_seconds=gap)
    sessions = [r["SessionID"] for r in rows if r["EventType"] == "File.Save"]
    assert sessions == [
        "session:ev-0000-test",
        "session:ev-0000-test",
        "session:ev-0000-test",
        "session:ev-0003-test",
        "session:ev-0003-test",
        "session:ev-0009-test",  # another assignment is another session, even at the same time
    ]
    stamps = [e["timestamp"] for e in events[:5]]
    # the same rule gives time on task: the gaps inside sessions count, the break does not
    assert store.active_seconds(stamps, gap) == 60 + gap + 1


def test_term_goes_into_term_and_section_ids():
    rows, _, _ = map_all(EVENTS[:1], term="Spring 2025")
    assert {(r["TermID"], r["CourseSectionID"]) for r in rows} == {("Spring 2025", "data-structure-2@Spring 2025")}


def test_unknown_exit_status_is_a_logging_error_not_a_spec_violation():
    rows, _, mapper = map_all(
        [
            proc(1, "process.compile", "a.c", None, compiler="cc", sources=[]),
            proc(2, "process.run", ".", None, kind="other", target=None),
        ]
    )
    assert [(r["CompileResult"], r["ExecutionResult"], r["LoggingErrorID"]) for r in rows] == [
        ("", "", "result-not-recorded"),
        ("", "", "result-not-recorded"),
    ]
    assert_valid_rows(rows, logging_errors=ps.LOGGING_ERRORS)
    assert "result-not-recorded" in mapper.logging_errors_used


def test_a_file_saved_again_unchanged_is_a_save_without_an_edit():
    rows, _, _ = map_all(
        [ev(1, "file.save", "a.c", sha256=SHA_A1, size=1), ev(2, "file.save", "a.c", sha256=SHA_A1, size=1)]
    )
    assert [r["EventType"] for r in rows] == ["File.Edit", "File.Save", "File.Save"]


def test_windowed_mapping_starts_from_the_folder_before_the_window():
    """Primed file events set up the folder and write nothing; the first row in the window then has the
    CodeState a full export gives it."""
    full, _, _ = map_all(EVENTS[:5])
    mapper = ps.Mapper()
    for e in EVENTS[:2]:
        mapper.prime(e)
    mapper.prime(proc(0, "process.run", "a", 0, kind="binary", target="a"))  # not a file event: changes nothing
    window = [row for e in EVENTS[2:5] for row in mapper.feed(e).rows]
    assert [r["CodeStateID"] for r in window] == [r["CodeStateID"] for r in full[4:]]
    assert window[0]["Order"] == "1"


def test_argv_only_on_request_and_subject_pseudonymised():
    rows, _, _ = map_all(EVENTS[2:3], with_argv=True, subject_id=lambda s: "S-" + s[::-1])
    assert rows[0]["X-Argv"] == '["gcc", "-o", "a", "a.c"]'
    assert rows[0]["SubjectID"] == "S-321000"


def test_unknown_event_type_is_an_error():
    with pytest.raises(ValueError):
        ps.Mapper().feed(ev(1, "file.rename", "a.c"))


def test_timestamps_are_iso_utc():
    assert ps.iso(datetime(2025, 3, 2, 10, 0, tzinfo=timezone(timedelta(hours=9)))) == "2025-03-02T01:00:00.000+00:00"
    assert ps.iso("2025-03-02T01:00:00Z") == "2025-03-02T01:00:00.000+00:00"
    assert ps.iso(None) == ""
