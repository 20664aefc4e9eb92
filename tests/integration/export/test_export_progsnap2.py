"""``watcher export progsnap2`` end to end: events go into a REAL backend (v1 and legacy API), then the
real CLI (a subprocess) exports the database and snapshot store, and the dataset is read back.

``export_backend`` (conftest.py) starts the backend on SQLite here and on PostgreSQL in tests/system/legacy."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from support.progsnap2_spec import every_export_is_valid  # noqa: F401  (autouse: validates every export)
from watcher_backend.export import progsnap2
from watcher_core import snapshots, wire

T0 = datetime(2025, 3, 2, 1, 0, tzinfo=UTC)
A1 = b"int main(void) { return 0; }\n"
A2 = b"int main(void) { return 1 }\n"
H1 = b"#define N 3\n"
PY = b"print('hi')\n"


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def common(i: int, student: str = "000123", course: str = "data-structure", assignment: str = "hw1") -> dict:
    return dict(
        event_id=f"ev-export-{student}-{i:04d}",
        timestamp=at(i),
        node="node-1",
        course=course,
        section="2",
        student_id=student,
        assignment=assignment,
    )


def save(i, path, data, store, **kw):
    sha, _ = snapshots.write_snapshot(store, data)
    return wire.FileSave(source="filemon", path=path, sha256=sha, size=len(data), **common(i, **kw))


def compile_(i, exit_code, signal=None, **kw):
    return wire.ProcessCompile(
        source="procmon",
        path="main.c",
        argv=["gcc", "-o", "main", "main.c"],
        cwd=".",
        exit_code=exit_code,
        signal=signal,
        started_at=at(i),
        ended_at=at(i) + timedelta(seconds=1),
        compiler="gcc",
        sources=["main.c"],
        output="main",
        **common(i, **kw),
    )


def run_(i, exit_code, signal=None, **kw):
    return wire.ProcessRun(
        source="procmon",
        path="main",
        argv=["./main"],
        cwd=".",
        exit_code=exit_code,
        signal=signal,
        started_at=at(i),
        kind="binary",
        target="main",
        **common(i, **kw),
    )


@pytest.fixture(scope="module")
def exported(tmp_path_factory, export_backend):
    tmp = tmp_path_factory.mktemp("export")
    with export_backend(tmp) as backend:
        store = backend.snapshot_dir
        events = [
            save(1, "main.c", A1, store),
            save(2, "inc/defs.h", H1, store),
            compile_(3, 0),
            run_(4, 0),
            save(5, "main.c", A2, store),
            compile_(6, 1),
            run_(7, None, signal=11),
            wire.FileTooLarge(source="filemon", path="data.c", size=5_000_000, limit=1_048_576, **common(8)),
            wire.FileDelete(source="filemon", path="data.c", **common(9)),
            wire.FileDelete(source="filemon", path="inc/defs.h", **common(10)),
            save(11, "solve.py", PY, store, student="000124", course="os", assignment="hw2"),
            save(12, "other.c", A1, store, student="000125", course="algo"),  # filtered out by --course
        ]
        r = backend.post_events(events)
        assert r.status_code == 200 and r.json()["accepted"] == len(events), r.text
        # a legacy save (size only, no content) for the same student, through the old API
        with backend.client("ingest") as http:
            r = http.post("/api/data-structure-2/hw1/000123/notes.c/20250302_101500", json={"bytes": 9})  # KST
            assert r.status_code == 200, r.text
        out = tmp / "dataset"
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "watcher_core",
                "export",
                "progsnap2",
                "--database-url",
                backend.database_url,
                "--snapshot-dir",
                str(store),
                "--out",
                str(out),
                "--course",
                "data-structure",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        os_proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "watcher_core",
                "export",
                "progsnap2",
                "--database-url",
                backend.database_url,
                "--snapshot-dir",
                str(store),
                "--out",
                str(tmp / "os"),
                "--course",
                "os",
                "--section",
                "2",
                "--assignment",
                "hw2",
                "--pseudonymize-key",
                "k" * 20,
                "--with-argv",
                "--term",
                "Spring 2025",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        return out, proc, tmp / "os", os_proc, backend.database_url, store


def read(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_export_succeeds_and_reports(exported):
    out, proc, _, os_proc, _, _ = exported
    assert proc.returncode == 0, proc.stderr
    assert os_proc.returncode == 0, os_proc.stderr
    assert "wrote 15 rows from 11 events" in proc.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "CodeStates",
        "DatasetMetadata.csv",
        "LinkTables",
        "MainTable.csv",
        "README.md",
    ]
    assert sorted(p.name for p in (out / "LinkTables").iterdir()) == ["LoggingErrors.csv", "PartialCodeStates.csv"]


def test_metadata(exported):
    meta = {r["Property"]: r["Value"] for r in read(exported[0] / "DatasetMetadata.csv")}
    assert meta["IsEventOrderingConsistent"] == "false"
    assert meta["EventOrderScope"] == "Restricted"
    assert meta["EventOrderScopeColumns"] == "SubjectID"
    assert meta["CodeStateRepresentation"] == "Directory"
    assert meta["Version"] == progsnap2.PROGSNAP2_VERSION
    # provenance: the tool, the filters and the window, what was done to the ids
    assert meta["X-ExportedBy"].startswith("JCode Watcher ")
    assert (meta["X-FilterCourse"], meta["X-FilterSection"], meta["X-Since"], meta["X-Term"]) == (
        "data-structure",
        "",
        "",
        "",
    )
    assert meta["X-SubjectIDs"].startswith("the institution's student ids")
    assert meta["X-IdleGapSeconds"] == "300"
    os_meta = {r["Property"]: r["Value"] for r in read(exported[2] / "DatasetMetadata.csv")}
    assert os_meta["X-SubjectIDs"].startswith("pseudonymised") and "k" * 20 not in str(os_meta)
    assert os_meta["X-CommandLines"] == "included (X-Argv)"
    assert "X-FilterAssignment`: hw2" in (exported[2] / "README.md").read_text()


def test_main_table_rows(exported):
    rows = read(exported[0] / "MainTable.csv")
    assert list(rows[0].keys()) == progsnap2.COLUMNS
    assert [(r["EventType"], r["CodeStateSection"]) for r in rows] == [
        ("File.Edit", "main.c"),
        ("File.Save", "main.c"),
        ("File.Edit", "inc/defs.h"),
        ("File.Save", "inc/defs.h"),
        ("Compile", "main.c"),
        ("Run.Program", "main"),
        ("File.Edit", "main.c"),
        ("File.Save", "main.c"),
        ("Compile", "main.c"),
        ("Compile.Error", "main.c"),
        ("Run.Program", "main"),
        ("File.Save", "data.c"),
        ("File.Delete", "data.c"),
        ("File.Delete", "inc/defs.h"),
        ("File.Save", "notes.c"),
    ]  # the legacy save is at 10:15 KST = 01:15 UTC, after the delete at 01:10
    by_id = {r["EventID"]: r for r in rows}
    assert {r["SubjectID"] for r in rows} == {"000123"}
    assert [int(r["Order"]) for r in rows] == list(range(1, len(rows) + 1))
    compiles = [r for r in rows if r["EventType"] == "Compile"]
    assert [c["CompileResult"] for c in compiles] == ["Success", "Error"]
    err = by_id[compiles[1]["EventID"] + ":error"]
    assert (err["ParentEventID"], err["IsFabricatedEvent"]) == (compiles[1]["EventID"], "true")
    runs = [r for r in rows if r["EventType"] == "Run.Program"]
    assert [(r["ExecutionResult"], r["X-Signal"]) for r in runs] == [("Success", ""), ("Error", "11")]
    big = rows[11]
    assert (big["CodeStateID"], big["LoggingErrorID"]) == ("", "content-not-kept")
    assert rows[14]["LoggingErrorID"] == "content-not-recorded" and rows[14]["X-Source"] == "legacy"
    assert rows[0]["ClientTimestamp"] == "2025-03-02T01:01:00.000+00:00"
    assert rows[0]["ServerTimestamp"] != ""
    assert all(r["CourseID"] == "data-structure" and r["CourseSectionID"] == "data-structure-2" for r in rows)
    assert all(r["X-Argv"] == "" for r in rows)
    # one minute apart, under the 300 s idle gap: one session, named after its first event; the legacy save
    # comes hours later (the ClientTimestamp above), after a break: a session of its own
    assert {r["SessionID"] for r in rows[:14]} == {"session:" + rows[1]["EventID"]}
    assert rows[14]["SessionID"] == "session:" + rows[14]["EventID"]
    assert rows[14]["ClientTimestamp"] > rows[13]["ClientTimestamp"]


def test_code_states_hold_the_folder_after_each_event(exported):
    out = exported[0]
    rows = read(out / "MainTable.csv")
    saves = {r["EventID"].rsplit("-", 1)[1]: r for r in rows if r["EventType"] in ("File.Save", "File.Delete")}
    states = out / "CodeStates"

    def folder(row):
        d = states / row["CodeStateID"]
        return {str(p.relative_to(d)): p.read_bytes() for p in d.rglob("*") if p.is_file()}

    assert folder(saves["0001"]) == {"main.c": A1}
    assert folder(saves["0002"]) == {"main.c": A1, "inc/defs.h": H1}
    assert rows[4]["CodeStateID"] == saves["0002"]["CodeStateID"]  # what was compiled
    assert folder(saves["0005"]) == {"main.c": A2, "inc/defs.h": H1}
    assert rows[8]["CodeStateID"] == rows[9]["CodeStateID"] == saves["0005"]["CodeStateID"]
    assert saves["0009"]["CodeStateID"] == saves["0005"]["CodeStateID"]  # data.c gone: the folder is whole again
    assert folder(saves["0010"]) == {"main.c": A2}
    every = {r["CodeStateID"] for r in rows if r["CodeStateID"]}
    assert {p.name for p in states.iterdir()} == every
    errors = read(out / "LinkTables" / "LoggingErrors.csv")
    assert {e["LoggingErrorID"] for e in errors} >= {"content-not-kept", "content-not-recorded", "snapshot-missing"}


def test_filters_pseudonyms_and_argv(exported):
    rows = read(exported[2] / "MainTable.csv")
    assert [(r["EventType"], r["CourseID"], r["AssignmentID"]) for r in rows] == [
        ("File.Edit", "os", "os:hw2"),
        ("File.Save", "os", "os:hw2"),
    ]
    assert rows[0]["SubjectID"].startswith("S") and "000124" not in rows[0]["SubjectID"]
    assert {(r["TermID"], r["CourseSectionID"]) for r in rows} == {("Spring 2025", "os-2@Spring 2025")}
    # pseudonymised subjects get keyed EventIDs too (a stored one is a plain hash of facts); the edit row
    # derived from the save keeps pointing at it
    assert rows[1]["EventID"].startswith("E") and "ev-export" not in rows[1]["EventID"]
    assert rows[0]["EventID"] == rows[1]["EventID"] + ":edit"
    assert rows[1]["SessionID"] == "session:" + rows[0]["EventID"].removesuffix(":edit")
    assert (exported[2] / "CodeStates" / rows[0]["CodeStateID"] / "solve.py").read_bytes() == PY


def test_since_until_and_bad_options(exported, tmp_path):
    _, _, _, _, database_url, store = exported
    base = [
        sys.executable,
        "-m",
        "watcher_core",
        "export",
        "progsnap2",
        "--database-url",
        database_url,
        "--snapshot-dir",
        str(store),
    ]
    proc = subprocess.run(
        base
        + [
            "--out",
            str(tmp_path / "window"),
            "--since",
            "2025-03-02T10:03:00+09:00",
            "--until",
            "2025-03-02T01:05:00Z",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    window = read(tmp_path / "window" / "MainTable.csv")
    assert [r["EventType"] for r in window] == ["Compile", "Run.Program"]
    # the files saved before the window are in its CodeStates: the same CodeState as in the full export
    full = read(exported[0] / "MainTable.csv")
    assert [r["CodeStateID"] for r in window] == [full[4]["CodeStateID"], full[5]["CodeStateID"]] != ["", ""]
    assert {p.name for p in (tmp_path / "window" / "CodeStates").iterdir()} == {full[4]["CodeStateID"]}
    meta = {r["Property"]: r["Value"] for r in read(tmp_path / "window" / "DatasetMetadata.csv")}
    assert (meta["X-Since"], meta["X-Until"]) == ("2025-03-02T01:03:00+00:00", "2025-03-02T01:05:00+00:00")

    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    cases = [
        (["--out", str(tmp_path / "a"), "--since", "soon"], "--since"),
        (["--out", str(tmp_path / "a"), "--since", "2025-03-02", "--until", "2025-03-01"], "--until"),
        (["--out", str(tmp_path / "a"), "--section", "1"], "--section"),
        (["--out", str(tmp_path / "a"), "--course", "bad course"], "--course"),
        (["--out", str(tmp_path / "full")], "--out"),
        (["--out", str(tmp_path / "a"), "--pseudonymize-key", "short"], "--pseudonymize-key"),
        (["--out", str(tmp_path / "a"), "--term", "Spring/2025"], "--term"),
        (["--out", str(tmp_path / "a"), "--idle-gap-seconds", "0"], "--idle-gap-seconds"),
        ([], "--out"),
    ]
    for extra, option in cases:
        proc = subprocess.run(base + extra, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2, (extra, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and option in lines[0] and "Traceback" not in proc.stderr, (extra, proc.stderr)
    for url, option in ((f"sqlite:///{tmp_path}/none.db", "--database-url"), ("mysql://x/y", "--database-url")):
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "watcher_core",
                "export",
                "progsnap2",
                "--database-url",
                url,
                "--snapshot-dir",
                str(store),
                "--out",
                str(tmp_path / "b"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 2 and option in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, (
            proc.stderr
        )
    proc = subprocess.run(
        base[:-2] + ["--snapshot-dir", str(tmp_path / "nope"), "--out", str(tmp_path / "c")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "--snapshot-dir" in proc.stderr


def test_progress_lines_for_long_exports(tmp_path):
    """Progress is reported every N events (here N=2 via the library; the CLI uses 1000)."""
    store = tmp_path / "s"
    events = [
        dict(
            type="file.save",
            sha256=snapshots.write_snapshot(store, b"x%d" % i)[0],
            size=2,
            path=f"f{i}.c",
            source="filemon",
            received_at=at(i),
            **common(i),
        )
        for i in range(5)
    ]
    seen = []
    stats = progsnap2.write_dataset(
        events, tmp_path / "out", store, progress=lambda s: seen.append(s.events), progress_every=2
    )
    assert seen == [2, 4] and stats.events == 5 and stats.code_states == 5


def test_force_replaces_an_earlier_export(exported, tmp_path):
    _, _, _, _, database_url, store = exported
    out = tmp_path / "again"
    base = [
        sys.executable,
        "-m",
        "watcher_core",
        "export",
        "progsnap2",
        "--database-url",
        database_url,
        "--snapshot-dir",
        str(store),
        "--out",
        str(out),
        "--quiet",
    ]
    assert subprocess.run(base + ["--course", "os"], capture_output=True, text=True, timeout=120).returncode == 0
    proc = subprocess.run(base + ["--course", "algo"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "--force" in proc.stderr
    proc = subprocess.run(base + ["--course", "algo", "--force"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = read(out / "MainTable.csv")
    assert [(r["EventType"], r["CourseID"]) for r in rows] == [("File.Edit", "algo"), ("File.Save", "algo")]
    assert {p.name for p in (out / "CodeStates").iterdir()} == {rows[0]["CodeStateID"]}


def test_code_states_are_whole_contents_from_a_compressed_and_mixed_store(tmp_path):
    """The export reads through the store: a content the old filemon stored raw, and a later version stored as
    a delta against it, come out as the files the student saved."""
    store = tmp_path / "store"
    lines = (Path(__file__).resolve().parents[3] / "bench" / "corpus" / "library.c").read_bytes().splitlines(True)
    v1, v2 = b"".join(lines[:100]), b"".join(lines[:106])
    raw = snapshots.sha256_of(v1)
    (store / raw[:2]).mkdir(parents=True)
    (store / raw[:2] / raw).write_bytes(v1)
    delta = snapshots.store_snapshot(store, v2, previous=raw)
    assert delta.form == "delta"
    events = [
        wire.FileSave(source="filemon", path="main.c", sha256=sha, size=len(data), **common(i)).model_dump()
        for i, (sha, data) in enumerate([(raw, v1), (delta.sha256, v2)])
    ]
    stats = progsnap2.write_dataset(events, tmp_path / "out", store)
    rows = read(tmp_path / "out" / "MainTable.csv")
    states = tmp_path / "out" / "CodeStates"
    assert stats.missing_snapshots == 0 and stats.files_copied == 2
    saves = [r for r in rows if r["EventType"] == "File.Save"]
    assert [(states / r["CodeStateID"] / "main.c").read_bytes() for r in saves] == [v1, v2]


def test_partial_and_empty_code_states_survive_zip_and_git(tmp_path):
    """A file over the size limit leaves later CodeStates partial (the other files, marked and listed), not
    blank; a folder with every file deleted is a CodeState that survives zip and git (its placeholder)."""
    store = tmp_path / "store"
    events = [
        save(1, "main.c", A1, store),
        wire.FileTooLarge(source="filemon", path="big.c", size=5_000_000, limit=1_048_576, **common(2)),
        compile_(3, 0),
        wire.FileDelete(source="filemon", path="main.c", **common(4)),
        wire.FileDelete(source="filemon", path="big.c", **common(5)),
        compile_(6, 1),
    ]
    out = tmp_path / "dataset"
    progsnap2.write_dataset([e.model_dump() for e in events], out, store)
    rows = {r["EventID"].rsplit("-", 1)[1] + r["EventID"].partition(":")[2]: r for r in read(out / "MainTable.csv")}
    partial, empty = rows["0003"], rows["0005"]
    assert (rows["0002"]["CodeStateID"], rows["0002"]["LoggingErrorID"]) == ("", "content-not-kept")
    assert partial["CodeStateID"] != "" and partial["X-CodeStateIsPartial"] == "true"
    # after main.c is deleted the folder holds only big.c, of unknown content: partial too, and no file known
    only_big = rows["0004"]["CodeStateID"]
    assert read(out / "LinkTables" / "PartialCodeStates.csv") == [
        {"CodeStateID": cid, "MissingFile": "big.c", "LoggingErrorID": "content-not-kept"}
        for cid in (partial["CodeStateID"], only_big)
    ]
    assert [p.name for p in (out / "CodeStates" / partial["CodeStateID"]).iterdir()] == ["main.c"]
    assert rows["0006"]["CodeStateID"] == empty["CodeStateID"] and empty["X-CodeStateIsPartial"] == ""
    placeholder = [progsnap2.EMPTY_CODE_STATE_PLACEHOLDER]
    assert [p.name for p in (out / "CodeStates" / empty["CodeStateID"]).iterdir()] == placeholder

    archive = shutil.make_archive(str(tmp_path / "dataset"), "zip", out)
    with zipfile.ZipFile(archive) as z:
        z.extractall(tmp_path / "unzipped")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", "-c", "init.defaultBranch=main"]
    subprocess.run([*git, "init", "-q", str(out)], check=True)
    subprocess.run([*git, "-C", str(out), "add", "-A"], check=True)
    subprocess.run([*git, "-C", str(out), "commit", "-q", "-m", "dataset"], check=True)
    subprocess.run([*git, "clone", "-q", str(out), str(tmp_path / "cloned")], check=True)
    shutil.rmtree(tmp_path / "cloned" / ".git")
    for copy in (tmp_path / "unzipped", tmp_path / "cloned"):
        assert [p.name for p in (copy / "CodeStates" / empty["CodeStateID"]).iterdir()] == placeholder
        # (the autouse check validates both copies as datasets too)
