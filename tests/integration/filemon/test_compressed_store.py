"""The compressed snapshot store end to end: real filemon (in-process, real inotify) stores a file typed and
saved version after version as zstd deltas against its base; the REAL backend on loopback serves every
version and the diffs between them; erasing the student removes every one of their contents, bases and
deltas alike, while a classmate's identical version stays readable (rewritten whole first)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from integration.filemon.harness import by_path, new_student, running_filemon, sha, student_dir, timeline, wait_until

from support.backend import run_backend
from watcher_core import snapshots

DAY = 86400.0
LIBRARY = (Path(__file__).resolve().parents[3] / "bench" / "corpus" / "library.c").read_bytes()
LINES = LIBRARY.splitlines(keepends=True)
# A student typing: the file at 120 lines, then a few more lines at each save.
VERSIONS = [b"".join(LINES[:n]) for n in (120, 124, 129, 133, 140, 146)]


def save_and_wait(ws: Path, backend, student, content: bytes, versions: int) -> None:
    folder = student_dir(ws, student) / "hw1"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "main.c").write_bytes(content)
    wait_until(
        lambda: len(by_path(timeline(backend, student), "file.save").get("main.c", [])) == versions,
        message=f"version {versions} of main.c recorded",
    )


def content_files(root: Path) -> set[str]:
    """Every file under the store that is not the lock: what is left of the contents on disk."""
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.name != snapshots.LOCK_NAME}


def test_typed_versions_are_deltas_served_whole_and_erased_to_the_last_byte(tmp_path):
    a, b = new_student(), new_student()
    ws = tmp_path / "ws"
    ws.mkdir()
    with (
        run_backend(tmp_path) as backend,
        running_filemon(ws, tmp_path / "state", backend, collector_options={"initial_delay": 3600}) as agent,
    ):
        store = backend.snapshot_dir
        for n, version in enumerate(VERSIONS, 1):
            save_and_wait(ws, backend, a, version, n)
        shared = VERSIONS[3]  # B arrives at exactly A's fourth version: one content for both
        save_and_wait(ws, backend, b, shared, 1)

        forms = [snapshots.stored_form(store, sha(v)) for v in VERSIONS]
        assert forms == ["whole"] + ["delta"] * 5, forms  # each save small against the first one
        written = agent.runtime.registry.get_sample_value("filemon_snapshot_bytes_written_total")
        content = agent.runtime.registry.get_sample_value("filemon_snapshot_content_bytes_total")
        assert content == sum(len(v) for v in VERSIONS) and written < 0.25 * content

        with backend.client("read") as http:
            for version in VERSIONS:
                r = http.get(f"/api/v1/snapshots/{sha(version)}")
                assert r.status_code == 200 and r.content == version
            r = http.get("/api/v1/diff", params={"from": sha(VERSIONS[1]), "to": sha(VERSIONS[4])})
            assert r.status_code == 200, r.text
            added = [line[1:] for line in r.json()["diff"].splitlines() if line.startswith("+") and line[1:2] != "+"]
            assert added == [line.decode().rstrip("\n") for line in LINES[124:140]]

        past = time.time() - 2 * DAY  # every content is past its grace period
        for version in VERSIONS:
            os.utime(snapshots.snapshot_path(store, sha(version)), (past, past))
        with backend.client("admin") as http:
            assert http.delete(f"/api/v1/students/{a[2]}").json()["contents_queued"] == len(VERSIONS)
        report = agent.collector.run_once()

        # The backend offered the five that only A referred to, the base among them; B's stays, now whole.
        assert report.ok and (report.removed, report.recent, report.errors) == (5, 0, 0), report
        assert content_files(store) == {f"{sha(shared)[:2]}/{sha(shared)}"}  # no delta index, no aside copy
        assert snapshots.stored_form(store, sha(shared)) == "whole"
        assert os.stat(snapshots.snapshot_path(store, sha(shared))).st_mtime == past  # its grace period kept
        b_save = by_path(timeline(backend, b), "file.save")["main.c"][-1]
        with backend.client("read") as http:
            assert http.get(f"/api/v1/snapshots/{b_save['sha256']}").content == shared
            for version in VERSIONS:
                if version != shared:
                    assert http.get(f"/api/v1/snapshots/{sha(version)}").status_code == 404


def test_migrating_a_raw_store_while_filemon_saves_and_collects(tmp_path):
    """`watcher snapshots migrate` (a real subprocess) on a store that an older filemon wrote raw, while this
    filemon stores a student's saves and its collector removes an erased student's raw contents. Afterwards
    every content is compressed and reads back, and nothing erased came back."""
    a, b = new_student(), new_student()
    ws = tmp_path / "ws"
    ws.mkdir()
    with (
        run_backend(tmp_path) as backend,
        running_filemon(ws, tmp_path / "state", backend, collector_options={"initial_delay": 3600}) as agent,
    ):
        store = backend.snapshot_dir
        erased = [VERSIONS[0], VERSIONS[2]]
        for n, version in enumerate(erased, 1):
            save_and_wait(ws, backend, a, version, n)
        past = time.time() - 2 * DAY
        old = {}  # what the older filemon left: raw files, some of them the erased student's
        for i in range(2000):  # enough for the migration to run through the saves and the collection
            data = b"".join(LINES[i % 200 : i % 200 + 40]) + b"/* %d */\n" % i
            old[sha(data)] = data
        for data in [*old.values(), *erased]:
            path = snapshots.snapshot_path(store, sha(data))
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            os.utime(path, (past, past))
        with backend.client("admin") as http:
            assert http.delete(f"/api/v1/students/{a[2]}").json()["contents_queued"] == 2

        migration = subprocess.Popen(
            [sys.executable, "-m", "watcher_core.cli", "snapshots", "migrate", "--root", str(store)],
            stderr=subprocess.PIPE,
            text=True,
        )
        for n, version in enumerate(VERSIONS[3:], 1):  # B types meanwhile
            save_and_wait(ws, backend, b, version, n)
        report = agent.collector.run_once()
        _, err = migration.communicate(timeout=120)

        assert migration.returncode == 0, err
        assert report.ok and report.removed == 2, report
        assert "directories" in err and "done: " in err
        for data in erased:  # removed, raw or compressed, and not written back by the migration
            assert not snapshots.snapshot_path(store, sha(data)).exists()
            assert not snapshots.snapshot_path(store, sha(data)).with_name(snapshots.GC_PREFIX + sha(data)).exists()
        rerun = snapshots.migrate(store)  # idempotent: the first run left nothing raw
        assert rerun.compressed == 0 and rerun.damaged == []
        for digest, data in old.items():
            assert snapshots.stored_form(store, digest) == "whole" and snapshots.read_snapshot(store, digest) == data
            assert os.stat(snapshots.snapshot_path(store, digest)).st_mtime == past
        for version in VERSIONS[3:]:
            assert snapshots.read_snapshot(store, sha(version)) == version
