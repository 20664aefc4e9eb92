"""Error Quotient, RED and Watwin computed on an exported dataset from the MainTable columns alone.

The reference implementations (thomaswp/ProgSnap2Analysis eq.py, red.py, watwin.py) are pandas scripts we do
not vendor; this reader follows the definitions they implement (docs/export.md lists what they need and what
we found), reading only spec columns, never Watcher's own. If the export stopped carrying what the analyses
need (Compile.Error children by ParentEventID, CompileMessageType, SessionID, CodeStateID, ordered rows,
parseable timestamps) these numbers would change or the reader would fail.

Definitions: EQ (Jadud 2006, as eq.py): consecutive Compile pairs of a student within one SessionID and
AssignmentID; +8 when both have errors, +3 more when they share a CompileMessageType; /11; mean over pairs.
RED (Becker 2016, as red.py): for each run of r consecutive repeats of a shared error type, r^2/(r+1), summed.
Watwin (Watson, Li & Godwin 2013, as watwin.py): pairs within a session; pairs with identical CodeStateID
are pruned; when e1 errored: (if e2 errored: +4 same CompileMessageData, +4 same type, +2 same line) and a
time term against the student's mean M and SD of such fix times: +1 below M-SD, +25 above M+SD, else +15;
Watwin = sum/35/(compiles-1).
"""

from __future__ import annotations

import csv
import statistics
from datetime import UTC, datetime, timedelta

import pytest

from support.progsnap2_spec import assert_valid_dataset
from watcher_backend.export import progsnap2
from watcher_core import snapshots

T0 = datetime(2025, 3, 2, 1, 0, tzinfo=UTC)


# -- a spec-only reader -----------------------------------------------------------------------------


def compiles_by_subject(rows):
    """Per SubjectID: its Compile rows in Order, each with the set of its Compile.Error children's rows."""
    errors: dict[str, list[dict]] = {}
    for r in rows:
        if r["EventType"] == "Compile.Error":
            errors.setdefault(r["ParentEventID"], []).append(r)
    out: dict[str, list[tuple[dict, list[dict]]]] = {}
    for r in sorted(rows, key=lambda r: int(r["Order"])):
        if r["EventType"] == "Compile":
            out.setdefault(r["SubjectID"], []).append((r, errors.get(r["EventID"], [])))
    return out


def same_segment(a, b):
    return all(a[col] == b[col] for col in ("SessionID", "AssignmentID"))


def error_quotient(compiles):
    score, pairs = 0, 0
    for (c1, e1), (c2, e2) in zip(compiles, compiles[1:]):
        if not same_segment(c1, c2):
            continue
        pairs += 1
        if e1 and e2:
            score += 8
            if {e["CompileMessageType"] for e in e1} & {e["CompileMessageType"] for e in e2}:
                score += 3
    return None if pairs == 0 else score / 11 / pairs


def repeated_error_density(compiles):
    total, run = 0.0, 0
    for (_, e1), (_, e2) in zip(compiles, compiles[1:]):
        if e1 and e2 and {e["CompileMessageType"] for e in e1} & {e["CompileMessageType"] for e in e2}:
            run += 1
            continue
        total += run**2 / (run + 1)
        run = 0
    return total + run**2 / (run + 1)


def _time(row):
    return datetime.fromisoformat(row["ServerTimestamp"] or row["ClientTimestamp"])


def watwin(compiles):
    fix_times = [
        (_time(c2) - _time(c1)).total_seconds()
        for (c1, e1), (c2, _) in zip(compiles, compiles[1:])
        if e1 and c1["CodeStateID"] != c2["CodeStateID"]
    ]
    if len(compiles) < 2:
        return None
    mean = statistics.fmean(fix_times) if fix_times else 0.0
    sd = statistics.pstdev(fix_times) if fix_times else 0.0
    score, pairs = 0, 0
    for (c1, e1), (c2, e2) in zip(compiles, compiles[1:]):
        if not same_segment(c1, c2):
            continue
        pairs += 1
        if c1["CodeStateID"] == c2["CodeStateID"] or not e1:
            continue
        if e2:
            score += 4 * (e1[0]["CompileMessageData"] == e2[0]["CompileMessageData"])
            score += 4 * bool({e["CompileMessageType"] for e in e1} & {e["CompileMessageType"] for e in e2})
            line1, line2 = e1[0]["SourceLocation"].split(":")[1:2], e2[0]["SourceLocation"].split(":")[1:2]
            score += 2 * (bool(line1) and line1 == line2)
        t = (_time(c2) - _time(c1)).total_seconds()
        score += 1 if t < mean - sd else 25 if t > mean + sd else 15
    return None if pairs == 0 else score / 35 / (len(compiles) - 1)


# -- the export they run on -----------------------------------------------------------------------------


def _event(i, minute, type_, path, **fields):
    return {
        "event_id": f"ev-{i:03d}",
        "type": type_,
        "timestamp": T0 + timedelta(minutes=minute),
        "received_at": T0 + timedelta(minutes=minute, seconds=1),
        "node": "n1",
        "source": "filemon" if type_.startswith("file") else "procmon",
        "course": "os",
        "section": "1",
        "student_id": "000123",
        "assignment": "hw1",
        "path": path,
        **fields,
    }


def _compile(i, minute, exit_code):
    return _event(
        i,
        minute,
        "process.compile",
        "main.c",
        argv=["gcc", "main.c"],
        exit_code=exit_code,
        signal=None,
        compiler="gcc",
        sources=["main.c"],
        output="a.out",
    )


@pytest.fixture
def main_table(tmp_path):
    store = tmp_path / "store"

    def save(i, minute, text):
        sha, _ = snapshots.write_snapshot(store, text)
        return _event(i, minute, "file.save", "main.c", sha256=sha, size=len(text))

    events = [
        save(1, 0, b"int main() { return x }\n"),
        _compile(2, 1, 1),  # error
        save(3, 3, b"int main() { return x; }\n"),
        _compile(4, 4, 1),  # error again, on other code
        save(5, 5, b"int main() { return 0; }\n"),
        _compile(6, 6, 0),  # fixed
        # a two-hour break: a new session (idle gap 300 s)
        save(7, 126, b"int main() { return 0 }\n"),
        _compile(8, 127, 1),
        _compile(9, 128, 1),  # recompiled unchanged: same CodeState, pruned by Watwin
    ]
    progsnap2.write_dataset(events, tmp_path / "out", store, idle_gap_seconds=300)
    assert_valid_dataset(tmp_path / "out")
    with open(tmp_path / "out" / "MainTable.csv", newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_the_export_carries_what_the_analyses_read(main_table):
    compiles = compiles_by_subject(main_table)["000123"]
    assert [len(errors) for _, errors in compiles] == [1, 1, 0, 1, 1]
    assert len({c["SessionID"] for c, _ in compiles}) == 2 and all(c["SessionID"] for c, _ in compiles)
    assert compiles[3][0]["CodeStateID"] == compiles[4][0]["CodeStateID"] != ""


def test_error_quotient(main_table):
    compiles = compiles_by_subject(main_table)["000123"]
    # pairs in a session: (1,2) both errors, same type "Unknown": 11; (2,3): 0; (4,5): 11. The pair across
    # the break is not a pair. (11 + 0 + 11) / 11 / 3
    assert error_quotient(compiles) == pytest.approx(2 / 3)


def test_repeated_error_density(main_table):
    compiles = compiles_by_subject(main_table)["000123"]
    # two runs of one repeat each: 1/2 + 1/2
    assert repeated_error_density(compiles) == pytest.approx(1.0)


def test_watwin(main_table):
    compiles = compiles_by_subject(main_table)["000123"]
    # fix times after an error, code changed: 3 min (1->2), 2 min (2->3); (4->5) is pruned (same code).
    # M = 150 s, SD = 30 s. Pair (1,2): same message 4 + same type 4 + no line 0 + 180 s in [120,180] 15 = 23;
    # pair (2,3): 120 s in range: 15; pair (4,5): pruned. 38 / 35 / 4
    assert watwin(compiles) == pytest.approx(38 / 35 / 4)


def test_the_reader_against_the_published_worked_examples():
    """Jadud's EQ on two consecutive failed compiles: 8/11 with different error types, 1.0 with the same."""

    def compile_row(eid, order, *types):
        c = {"EventID": eid, "Order": str(order), "SessionID": "s", "AssignmentID": "a"}
        return c, [{"CompileMessageType": t} for t in types]

    assert error_quotient([compile_row("a", 1, "X"), compile_row("b", 2, "Y")]) == pytest.approx(8 / 11)
    assert error_quotient([compile_row("a", 1, "X"), compile_row("b", 2, "X")]) == pytest.approx(1.0)
