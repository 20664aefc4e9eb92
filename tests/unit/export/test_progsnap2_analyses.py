"""Error Quotient, RED and Watwin computed on an exported dataset from the MainTable columns alone, with the
numbers the community's reference scripts give on the same dataset.

The reference implementations are thomaswp/ProgSnap2Analysis eq.py, red.py and watwin.py (commit 0a1a456,
2020-04-06; pandas scripts, not vendored). They were run once, unchanged, on the dataset ``export_example``
writes (docs/export.md says how and what they printed): EQ and RED ran on it as exported; Watwin stopped on
our timestamps (it parses ``%Y-%m-%dT%H:%M:%S``, no fraction, no offset) and ran once they were cut to 19
characters. Their outputs are the expected values below. This reader follows the same definitions, reading
only spec columns, so if the export stopped carrying what the analyses need (Compile.Error children by
ParentEventID, CompileMessageType, SessionID, CodeStateID, ordered rows, timestamps) these numbers would move.

What the scripts do (Jadud 2006; Becker 2016; Watson, Li & Godwin 2013, as implemented there):
* data preparation: sessions with fewer than 4 compiles are dropped (their student-level z-score filter on
  session counts drops no one here);
* a metric is computed per session and a student's value is the mean over their sessions;
* EQ and RED walk "segments": a session's compiles, skipping a compile whose CodeStateID equals the previous
  compile's (nothing changed), split where AssignmentID changes. EQ: per pair +8 when both failed, +3 more
  when they share a CompileMessageType, /11, mean over pairs. RED: each run of r consecutive repeats of a
  shared type adds r^2/(r+1); the sum is divided by the number of pairs;
* Watwin: per pair of consecutive compiles of a session whose code changed and whose first failed: when the
  second failed too, +4 for the same CompileMessageData, +4 for a shared type, +2 for the same line
  (SourceLocation); then a time term against the student's mean M and SD of such fix times (keyed by the
  first compile's CodeStateID): +1 below M-SD, +25 above M+SD, +15 otherwise; sum/35/(compiles-1).
"""

from __future__ import annotations

import csv
import statistics
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from support.progsnap2_spec import assert_valid_dataset
from watcher_backend.export import progsnap2
from watcher_core import snapshots

T0 = datetime(2025, 3, 2, 1, 0, tzinfo=UTC)
MIN_COMPILES = 4  # the reference's data preparation keeps sessions with at least this many compiles


# -- a spec-only reader -----------------------------------------------------------------------------


class Compile:
    def __init__(self, row: dict[str, str], errors: list[dict[str, str]]):
        self.row, self.errors = row, errors
        self.failed = bool(errors)
        self.types = {e["CompileMessageType"] for e in errors}

    def __getitem__(self, column: str) -> str:
        return self.row[column]


def sessions_by_subject(rows) -> dict[str, list[list[Compile]]]:
    """Per SubjectID, its sessions (by SessionID) that have enough compiles, each its Compiles in Order."""
    errors: dict[str, list[dict[str, str]]] = defaultdict(list)
    for r in rows:
        if r["EventType"] == "Compile.Error":
            errors[r["ParentEventID"]].append(r)
    sessions: dict[str, dict[str, list[Compile]]] = defaultdict(lambda: defaultdict(list))
    for r in sorted(rows, key=lambda r: int(r["Order"])):
        if r["EventType"] == "Compile":
            sessions[r["SubjectID"]][r["SessionID"]].append(Compile(r, errors.get(r["EventID"], [])))
    return {
        subject: kept
        for subject, by_id in sessions.items()
        if (kept := [c for c in by_id.values() if len(c) >= MIN_COMPILES])
    }


def segments(compiles: list[Compile]) -> list[list[Compile]]:
    out: list[list[Compile]] = [[compiles[0]]] if compiles else []
    for prev, cur in zip(compiles, compiles[1:]):
        if cur["CodeStateID"] == prev["CodeStateID"]:
            continue  # nothing changed: not a new attempt
        if cur["AssignmentID"] != prev["AssignmentID"]:
            out.append([])
        out[-1].append(cur)
    return out


def pairs(compiles: list[Compile]) -> list[tuple[Compile, Compile]]:
    return [p for seg in segments(compiles) for p in zip(seg, seg[1:])]


def error_quotient(session: list[Compile]) -> float | None:
    scored = [(8 + 3 * bool(a.types & b.types)) if a.failed and b.failed else 0 for a, b in pairs(session)]
    return sum(s / 11 for s in scored) / len(scored) if scored else None


def repeated_error_density(session: list[Compile]) -> float | None:
    total, count = 0.0, 0
    for seg in segments(session):
        run = 0
        for a, b in zip(seg, seg[1:]):
            count += 1
            if a.types & b.types:
                run += 1
                continue
            total += run**2 / (run + 1)
            run = 0
        total += run**2 / (run + 1)
    return total / count if count else None


def _seconds(a: Compile, b: Compile) -> float:
    return (datetime.fromisoformat(b["ServerTimestamp"]) - datetime.fromisoformat(a["ServerTimestamp"])).total_seconds()


def fix_times(sessions: list[list[Compile]]) -> tuple[dict[str, float], float, float]:
    """The student's fix times (after a failed compile, code changed), keyed by the failed compile's
    CodeStateID, and their mean and SD (over the student's kept compiles in Order)."""
    compiles = sorted((c for s in sessions for c in s), key=lambda c: int(c["Order"]))
    times: dict[str, float] = {}
    total, count = 0.0, 0
    for a, b in zip(compiles, compiles[1:]):
        if a["CodeStateID"] != b["CodeStateID"] and a.failed:
            t = _seconds(a, b)
            times[a["CodeStateID"]] = t
            total, count = total + t, count + 1
    return times, (total / count if count else 0.0), (statistics.pstdev(times.values()) if times else 0.0)


def _line(error: dict[str, str]) -> str | None:
    parts = error["SourceLocation"].split(":")
    return parts[1] if len(parts) > 1 else None


def watwin(session: list[Compile], times: dict[str, float], mean: float, sd: float) -> float | None:
    score, count = 0, 0
    for a, b in zip(session, session[1:]):
        if a["AssignmentID"] != b["AssignmentID"]:
            continue
        count += 1
        if a["CodeStateID"] == b["CodeStateID"] or not a.failed:
            continue
        if b.failed:
            score += 4 * (a.errors[0]["CompileMessageData"] == b.errors[0]["CompileMessageData"])
            score += 4 * bool(a.types & b.types)
            score += 2 * (_line(a.errors[0]) is not None and _line(a.errors[0]) == _line(b.errors[0]))
        t = times.get(a["CodeStateID"], -1)
        score += 1 if t < mean - sd else 25 if t > mean + sd else 15
    return score / 35 / (len(session) - 1) if count else None


def per_subject(rows, metric) -> dict[str, float]:
    out = {}
    for subject, sessions in sessions_by_subject(rows).items():
        if metric == "watwin":
            times, mean, sd = fix_times(sessions)
            values = [watwin(s, times, mean, sd) for s in sessions]
        else:
            values = [metric(s) for s in sessions]
        kept = [v for v in values if v is not None]
        if kept:
            out[subject] = statistics.fmean(kept)
    return out


# -- the export they run on -----------------------------------------------------------------------------


def _event(student, i, minute, type_, path, **fields):
    return {
        "event_id": f"ev-{student}-{i:03d}",
        "type": type_,
        "timestamp": T0 + timedelta(minutes=minute),
        "received_at": T0 + timedelta(minutes=minute, seconds=1),
        "node": "n1",
        "source": "filemon" if type_.startswith("file") else "procmon",
        "course": "os",
        "section": "1",
        "student_id": student,
        "assignment": "hw1",
        "path": path,
        **fields,
    }


def _compile(student, i, minute, exit_code):
    return _event(
        student,
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


# (minute, "save", content) or (minute, "compile", exit status), per student
PLANS = {
    # two sessions (a break of over three hours): 6 compiles, one a recompile of unchanged code, then 4
    "000123": [
        (0, "save", b"v1"),
        (1, "compile", 1),
        (2, "compile", 1),
        (3, "save", b"v2"),
        (4, "compile", 1),
        (6, "save", b"v3"),
        (7, "compile", 0),
        (9, "save", b"v4"),
        (10, "compile", 1),
        (12, "save", b"v5"),
        (13, "compile", 0),
        (200, "save", b"w1"),
        (201, "compile", 1),
        (203, "save", b"w2"),
        (204, "compile", 1),
        (206, "save", b"w3"),
        (207, "compile", 0),
        (209, "save", b"w4"),
        (210, "compile", 0),
    ],
    # a 6-minute pause splits this one into sessions of 3 and 2 compiles: both below the minimum
    "000124": [
        (0, "save", b"x1"),
        (1, "compile", 0),
        (3, "save", b"x2"),
        (5, "compile", 1),
        (6, "save", b"x3"),
        (8, "compile", 1),
        (9, "save", b"x4"),
        (15, "compile", 1),
        (16, "save", b"x5"),
        (17, "compile", 0),
    ],
}

# What thomaswp/ProgSnap2Analysis @ 0a1a456 printed for this dataset (pandas reads SubjectID 000123 as 123).
REFERENCE = {
    "eq": {"000123": 0.29166666666666663},
    "red": {"000123": 0.14583333333333331},
    "watwin": {"000123": 0.2923809523809524},  # after cutting the timestamps to seconds, see the docstring
}


def export_example(tmp_path: Path) -> Path:
    """The dataset given to the reference scripts (docs/export.md)."""
    store = tmp_path / "store"
    events = []
    for student, plan in PLANS.items():
        for i, (minute, kind, value) in enumerate(plan):
            if kind == "save":
                sha, _ = snapshots.write_snapshot(store, value)
                events.append(_event(student, i, minute, "file.save", "main.c", sha256=sha, size=len(value)))
            else:
                events.append(_compile(student, i, minute, value))
    progsnap2.write_dataset(events, tmp_path / "out", store, idle_gap_seconds=300)
    return tmp_path / "out"


@pytest.fixture
def main_table(tmp_path):
    out = export_example(tmp_path)
    assert_valid_dataset(out)
    with open(out / "MainTable.csv", newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_the_export_carries_what_the_analyses_read(main_table):
    sessions = sessions_by_subject(main_table)
    assert list(sessions) == ["000123"]  # 000124 has no session of 4 compiles
    first, second = sessions["000123"]
    assert [c.failed for c in first] == [True, True, True, False, True, False]
    assert [c.failed for c in second] == [True, True, False, False]
    assert first[0]["CodeStateID"] == first[1]["CodeStateID"] != ""  # the recompile: nothing changed
    assert all(c["SessionID"] and c["ServerTimestamp"] for c in first + second)


@pytest.mark.parametrize("name", ["eq", "red", "watwin"])
def test_the_reference_numbers(main_table, name):
    metric = {"eq": error_quotient, "red": repeated_error_density, "watwin": "watwin"}[name]
    assert per_subject(main_table, metric) == pytest.approx(REFERENCE[name])


def test_the_reader_against_the_published_worked_examples():
    """Jadud's EQ on two consecutive failed compiles: 8/11 with different error types, 1.0 with the same."""

    def compile_(order, *types):
        row = {"EventID": str(order), "Order": str(order), "CodeStateID": str(order), "AssignmentID": "a"}
        return Compile(row, [{"CompileMessageType": t} for t in types])

    assert error_quotient([compile_(1, "X"), compile_(2, "Y")]) == pytest.approx(8 / 11)
    assert error_quotient([compile_(1, "X"), compile_(2, "X")]) == pytest.approx(1.0)
