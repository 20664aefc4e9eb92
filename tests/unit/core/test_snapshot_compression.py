"""The compressed snapshot store on a real file system: forms, mixed stores, damaged contents, deltas and
their bases under removal (shared contents, crashes), the store lock, and the in-place migration of a raw
store (idempotent, interrupted and resumed)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from watcher_core import snapshots

DAY = 86400.0
LIBRARY = (Path(__file__).resolve().parents[3] / "bench" / "corpus" / "library.c").read_bytes()
LINES = LIBRARY.splitlines(keepends=True)


def version(n: int) -> bytes:
    return b"".join(LINES[:n])


def write_raw(root: Path, data: bytes) -> str:
    """A content as a filemon older than compression stored it."""
    sha = snapshots.sha256_of(data)
    path = snapshots.snapshot_path(root, sha)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return sha


def age(root: Path, sha: str, seconds: float = 2 * DAY) -> float:
    past = time.time() - seconds
    os.utime(snapshots.snapshot_path(root, sha), (past, past))
    return past


def files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.name != snapshots.LOCK_NAME}


def typed(root: Path, sizes=(100, 104, 110, 115)) -> list[str]:
    """One file saved at these line counts, each save naming the previous version (as filemon does)."""
    shas: list[str] = []
    for n in sizes:
        shas.append(snapshots.write_snapshot(root, version(n), previous=shas[-1] if shas else None)[0])
    return shas


def test_whole_then_deltas_against_the_first_version_never_a_delta_of_a_delta(tmp_path):
    shas = typed(tmp_path)
    assert [snapshots.stored_form(tmp_path, s) for s in shas] == ["whole", "delta", "delta", "delta"]
    for s in shas[1:]:
        blob = snapshots.snapshot_path(tmp_path, s).read_bytes()
        assert snapshots.delta_base(blob, s) == shas[0]  # the base of the previous one, not the previous one
    for s, n in zip(shas, (100, 104, 110, 115)):
        assert snapshots.read_snapshot(tmp_path, s) == version(n)
    stored = sum(snapshots.snapshot_path(tmp_path, s).stat().st_size for s in shas)
    assert stored < 0.25 * sum(len(version(n)) for n in (100, 104, 110, 115))


def test_a_delta_too_large_against_the_base_is_stored_whole_and_becomes_the_next_base(tmp_path):
    first = snapshots.write_snapshot(tmp_path, version(20))[0]
    rewritten = snapshots.write_snapshot(tmp_path, b"".join(LINES[150:300]), previous=first)[0]
    assert snapshots.stored_form(tmp_path, rewritten) == "whole"
    after = snapshots.write_snapshot(tmp_path, b"".join(LINES[150:304]), previous=rewritten)[0]
    assert snapshots.delta_base(snapshots.snapshot_path(tmp_path, after).read_bytes(), after) == rewritten


def test_a_mixed_store_reads_raw_and_compressed_contents_alike(tmp_path):
    raw = write_raw(tmp_path, version(50))
    looks_compressed = write_raw(tmp_path, b"\x28\xb5\x2f\xfd but a student's raw file\n")  # zstd's magic
    delta = snapshots.write_snapshot(tmp_path, version(54), previous=raw)[0]  # a raw content as a base
    assert snapshots.stored_form(tmp_path, raw) == "raw" and snapshots.stored_form(tmp_path, delta) == "delta"
    assert snapshots.read_snapshot(tmp_path, raw) == version(50)
    assert snapshots.read_snapshot(tmp_path, looks_compressed) == b"\x28\xb5\x2f\xfd but a student's raw file\n"
    assert snapshots.read_snapshot(tmp_path, delta) == version(54)


def test_a_damaged_content_raises_never_returns_wrong_bytes(tmp_path):
    sha = snapshots.write_snapshot(tmp_path, version(40))[0]
    path = snapshots.snapshot_path(tmp_path, sha)
    blob = bytearray(path.read_bytes())
    blob[-5] ^= 0xFF
    path.write_bytes(bytes(blob))
    with pytest.raises(snapshots.CorruptSnapshot) as caught:
        snapshots.read_snapshot(tmp_path, sha)
    assert isinstance(caught.value, OSError) and sha in str(caught.value)
    other = snapshots.sha256_of(b"something else")
    write_raw(tmp_path, b"something else")
    os.rename(snapshots.snapshot_path(tmp_path, other), snapshots.snapshot_path(tmp_path, sha))  # wrong name
    with pytest.raises(snapshots.CorruptSnapshot):
        snapshots.read_snapshot(tmp_path, sha)


def test_a_delta_whose_base_is_gone_is_reported_damaged(tmp_path):
    base, delta = typed(tmp_path, (60, 64))
    snapshots.snapshot_path(tmp_path, base).unlink()  # not the collector: something removed it behind our back
    with pytest.raises(snapshots.CorruptSnapshot, match="base"):
        snapshots.read_snapshot(tmp_path, delta)


def test_removing_a_base_rewrites_its_deltas_whole_first(tmp_path):
    """Retention purged the first version (the base); the later ones stay readable, and nothing of it stays."""
    shas = typed(tmp_path)
    kept_mtime = age(tmp_path, shas[2], 3 * DAY)
    age(tmp_path, shas[0])
    assert snapshots.remove_unreferenced(tmp_path, shas[0], grace_seconds=DAY) == "removed"
    assert snapshots.read_snapshot(tmp_path, shas[0]) is None
    for s, n in zip(shas[1:], (104, 110, 115)):
        assert snapshots.stored_form(tmp_path, s) == "whole" and snapshots.read_snapshot(tmp_path, s) == version(n)
    assert snapshots.snapshot_path(tmp_path, shas[2]).stat().st_mtime == kept_mtime  # grace period kept
    assert files(tmp_path) == {f"{s[:2]}/{s}" for s in shas[1:]}  # no index, no aside copy


def test_erasing_a_student_removes_bases_and_deltas_but_not_a_content_a_classmate_shares(tmp_path):
    shas = typed(tmp_path)  # student A's versions; student B saved exactly A's third version (same sha)
    for s in shas:
        age(tmp_path, s)
    for s in (shas[0], shas[1], shas[3]):  # what the backend offers: B still refers to shas[2]
        assert snapshots.remove_unreferenced(tmp_path, s, grace_seconds=DAY) == "removed"
    assert files(tmp_path) == {f"{shas[2][:2]}/{shas[2]}"}
    assert snapshots.read_snapshot(tmp_path, shas[2]) == version(110)


def test_removing_a_delta_leaves_its_base_and_the_other_deltas(tmp_path):
    shas = typed(tmp_path)
    age(tmp_path, shas[1])
    assert snapshots.remove_unreferenced(tmp_path, shas[1], grace_seconds=DAY) == "removed"
    assert snapshots.stored_form(tmp_path, shas[2]) == "delta"  # nothing rewritten needlessly
    assert snapshots.read_snapshot(tmp_path, shas[3]) == version(115)
    index = snapshots.snapshot_path(tmp_path, shas[0]).with_name(shas[0] + snapshots.DELTAS_SUFFIX)
    assert sorted(os.listdir(index)) == sorted([shas[2], shas[3]])


def test_a_recent_base_is_kept_with_its_deltas_untouched(tmp_path):
    shas = typed(tmp_path, (80, 85))
    assert snapshots.remove_unreferenced(tmp_path, shas[0], grace_seconds=DAY) == "recent"
    assert snapshots.stored_form(tmp_path, shas[1]) == "delta"
    assert snapshots.read_snapshot(tmp_path, shas[1]) == version(85)


def test_a_collector_killed_while_rewriting_deltas_leaves_them_readable_and_the_next_run_finishes(tmp_path):
    """Fault injection in a real subprocess: the collector dies (SIGKILL, as os._exit) after rewriting the first
    delta of a base. The base stays aside, readers go on reading through it; the next removal finishes."""
    shas = typed(tmp_path, (90, 95, 101, 108))
    age(tmp_path, shas[0])
    script = f"""
import os, sys
from watcher_core import snapshots
real = snapshots._write_atomically
calls = []
def dying(*args, **kwargs):
    if calls:
        os._exit(9)
    calls.append(1)
    real(*args, **kwargs)
snapshots._write_atomically = dying
snapshots.remove_unreferenced({str(tmp_path)!r}, {shas[0]!r}, grace_seconds={DAY})
"""
    died = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert died.returncode == 9, died.stderr
    assert snapshots.read_snapshot(tmp_path, shas[0]) is None  # aside: gone for readers of the base itself
    assert sorted(snapshots.stored_form(tmp_path, s) for s in shas[1:]) == ["delta", "delta", "whole"]
    for s, n in zip(shas[1:], (95, 101, 108)):
        assert snapshots.read_snapshot(tmp_path, s) == version(n)  # the deltas still read, through the aside copy
    assert snapshots.remove_unreferenced(tmp_path, shas[0], grace_seconds=DAY) == "removed"
    assert files(tmp_path) == {f"{s[:2]}/{s}" for s in shas[1:]}
    assert all(snapshots.read_snapshot(tmp_path, s) == version(n) for s, n in zip(shas[1:], (95, 101, 108)))


def test_a_write_that_fails_half_way_leaves_nothing_under_a_valid_name(tmp_path, monkeypatch):
    base = snapshots.write_snapshot(tmp_path, version(70))[0]

    def disk_full(fd, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(snapshots.os, "replace", lambda *a: disk_full(None, None))
    with pytest.raises(OSError):
        snapshots.write_snapshot(tmp_path, version(75), previous=base)
    monkeypatch.undo()
    new = snapshots.sha256_of(version(75))
    assert snapshots.read_snapshot(tmp_path, new) is None
    assert not [p for p in tmp_path.rglob(".tmp-*")]
    # The index may name a delta that was never written: harmless, and the next save writes it.
    assert snapshots.write_snapshot(tmp_path, version(75), previous=base) == (new, True)
    assert snapshots.read_snapshot(tmp_path, new) == version(75)
    age(tmp_path, base)
    assert snapshots.remove_unreferenced(tmp_path, base, grace_seconds=DAY) == "removed"
    assert snapshots.read_snapshot(tmp_path, new) == version(75)


def test_while_a_removal_holds_the_store_lock_a_save_is_stored_whole_without_waiting(tmp_path):
    base = snapshots.write_snapshot(tmp_path, version(70))[0]
    with snapshots.store_lock(tmp_path, exclusive=True) as held:
        assert held
        started = time.monotonic()
        stored = snapshots.store_snapshot(tmp_path, version(72), previous=base)
        assert time.monotonic() - started < 1.0
    assert stored.form == "whole" and snapshots.read_snapshot(tmp_path, stored.sha256) == version(72)
    assert snapshots.store_snapshot(tmp_path, version(74), previous=base).form == "delta"


def test_a_removal_waits_for_the_lock_then_gives_up_with_an_error(tmp_path):
    sha = snapshots.write_snapshot(tmp_path, b"erased\n")[0]
    age(tmp_path, sha)
    with snapshots.store_lock(tmp_path, exclusive=False):
        with pytest.raises(snapshots.StoreBusy):
            snapshots.remove_unreferenced(tmp_path, sha, grace_seconds=DAY, lock_timeout=0.2)
    assert snapshots.read_snapshot(tmp_path, sha) == b"erased\n"
    assert snapshots.remove_unreferenced(tmp_path, sha, grace_seconds=DAY) == "removed"


# ------------------------------------------------------------------------------------------ migration


def raw_store(root: Path, count: int = 40) -> dict[str, tuple[bytes, float]]:
    contents = {}
    for i in range(count):
        data = version(30 + i * 5)
        sha = write_raw(root, data)
        contents[sha] = (data, age(root, sha, DAY + i))
    return contents


def test_migration_compresses_a_raw_store_in_place_keeping_names_and_mtimes_and_is_idempotent(tmp_path):
    contents = raw_store(tmp_path)
    raw_bytes = sum(len(d) for d, _ in contents.values())
    report = snapshots.migrate(tmp_path)
    assert (report.scanned, report.compressed, report.already, report.damaged) == (40, 40, 0, [])
    assert report.raw_bytes == raw_bytes and report.stored_bytes < 0.5 * raw_bytes
    for sha, (data, mtime) in contents.items():
        assert snapshots.stored_form(tmp_path, sha) == "whole"
        assert snapshots.read_snapshot(tmp_path, sha) == data
        assert snapshots.snapshot_path(tmp_path, sha).stat().st_mtime == mtime  # the grace period is the same
    again = snapshots.migrate(tmp_path)
    assert (again.scanned, again.compressed, again.already) == (40, 0, 40)


def test_migration_interrupted_goes_on_where_it_stopped(tmp_path):
    contents = raw_store(tmp_path)
    seen: list[Path] = []

    def stop_after_three_directories(shard, report):
        seen.append(shard)
        if len(seen) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        snapshots.migrate(tmp_path, progress=stop_after_three_directories)
    forms = {snapshots.stored_form(tmp_path, sha) for sha in contents}
    assert forms == {"raw", "whole"}  # half-way: a mixed store, every content readable
    assert all(snapshots.read_snapshot(tmp_path, sha) == data for sha, (data, _) in contents.items())
    done_before = sum(snapshots.stored_form(tmp_path, sha) == "whole" for sha in contents)
    report = snapshots.migrate(tmp_path)
    assert report.already == done_before and report.compressed == len(contents) - done_before
    assert {snapshots.stored_form(tmp_path, sha) for sha in contents} == {"whole"}


def test_migration_leaves_deltas_and_damaged_files_alone_and_names_the_damaged(tmp_path):
    shas = typed(tmp_path, (60, 63))
    damaged = snapshots.sha256_of(b"what it was")
    path = snapshots.snapshot_path(tmp_path, damaged)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not what it was")
    report = snapshots.migrate(tmp_path)
    assert report.damaged == [damaged] and report.already == 2 and report.compressed == 0
    assert snapshots.stored_form(tmp_path, shas[1]) == "delta"


def test_watcher_snapshots_migrate_reports_progress_and_totals_on_stderr(tmp_path):
    raw_store(tmp_path, 10)
    run = subprocess.run(
        [sys.executable, "-m", "watcher_core.cli", "snapshots", "migrate", "--root", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert "directories" in run.stderr and "done: 10 contents, 10 compressed now" in run.stderr
    again = subprocess.run(
        [sys.executable, "-m", "watcher_core.cli", "snapshots", "migrate", "--root", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 0 and "0 compressed now, 10 compressed already" in again.stderr
    missing = subprocess.run(
        [sys.executable, "-m", "watcher_core.cli", "snapshots", "migrate", "--root", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "WATCHER_SNAPSHOT_DIR": ""},
    )
    assert missing.returncode == 2 and "--root" in missing.stderr and "Traceback" not in missing.stderr


def storm_like(n: int, version: int) -> bytes:
    """bench/filemon_storm.py's contents: a heading and one line repeated, ~55 bytes compressed."""
    return (f"// 2024{n:06d} f{n}.c version {version}\n" + "int x = 0;\n" * 60).encode()


@pytest.mark.parametrize(
    "data",
    [b"", b"x", b"int main(void) { return 0; }\n", storm_like(1, 0), version(3), version(12), version(40)],
)
def test_no_delta_is_ever_smaller_than_the_bound_that_skips_trying_one(data):
    # The smallest delta of a content is against itself as base. Where delta_may_pay says no, even that one
    # is over the quarter of the whole form, so skipping the attempt never stores a content larger.
    sha = snapshots.sha256_of(data)
    smallest = len(snapshots.compress_delta(data, data, sha))
    assert smallest >= snapshots._MIN_DELTA_SIZE
    whole = len(snapshots.compress_whole(data))
    if not snapshots.delta_may_pay(whole):
        assert smallest > snapshots.DELTA_MAX_FRACTION * whole


def test_a_content_too_small_for_a_delta_to_pay_is_stored_whole_without_reading_its_previous_version(tmp_path):
    first = snapshots.store_snapshot(tmp_path, storm_like(7, 0))
    assert first.form == "whole" and not snapshots.delta_may_pay(first.stored_bytes)
    # The previous version damaged: a delta attempt would have read it (and found it damaged); none is made.
    snapshots.snapshot_path(tmp_path, first.sha256).write_bytes(b"damaged")
    with snapshots.store_lock(tmp_path, exclusive=True):  # a removal running: no save may wait for it
        second = snapshots.store_snapshot(tmp_path, storm_like(7, 1), previous=first.sha256)
    assert second.form == "whole"
    assert snapshots.read_snapshot(tmp_path, second.sha256) == storm_like(7, 1)
    assert not snapshots._deltas_dir(tmp_path, first.sha256).exists()


def test_a_typed_save_still_becomes_a_delta_of_its_previous_versions_base(tmp_path):
    assert snapshots.delta_may_pay(len(snapshots.compress_whole(version(100))))
    first = snapshots.store_snapshot(tmp_path, version(100))
    second = snapshots.store_snapshot(tmp_path, version(104), previous=first.sha256)
    third = snapshots.store_snapshot(tmp_path, version(110), previous=second.sha256)
    assert (second.form, third.form) == ("delta", "delta")
    blob = snapshots.snapshot_path(tmp_path, third.sha256).read_bytes()
    assert snapshots.delta_base(blob, third.sha256) == first.sha256
    assert snapshots.read_snapshot(tmp_path, third.sha256) == version(110)
