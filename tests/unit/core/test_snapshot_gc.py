"""Removing erased contents from the snapshot store: never a content saved within the grace period, even one
saved while the removal runs; idempotent across nodes; a collector that died half-way is finished later."""

from __future__ import annotations

import os
import time

from watcher_core import snapshots

DAY = 86400.0


def _stored(root, data: bytes, age: float) -> str:
    sha, _ = snapshots.write_snapshot(root, data)
    past = time.time() - age
    os.utime(snapshots.snapshot_path(root, sha), (past, past))
    return sha


def test_an_old_unreferenced_content_is_removed_once(tmp_path):
    sha = _stored(tmp_path, b"erased\n", age=2 * DAY)
    assert snapshots.remove_unreferenced(tmp_path, sha, grace_seconds=DAY) == "removed"
    assert snapshots.read_snapshot(tmp_path, sha) is None
    assert not list(tmp_path.rglob(snapshots.GC_PREFIX + "*"))
    assert snapshots.remove_unreferenced(tmp_path, sha, grace_seconds=DAY) == "missing"


def test_a_content_saved_within_the_grace_period_is_kept(tmp_path):
    sha = _stored(tmp_path, b"starter code\n", age=60)
    assert snapshots.remove_unreferenced(tmp_path, sha, grace_seconds=DAY) == "recent"
    assert snapshots.read_snapshot(tmp_path, sha) == b"starter code\n"


def test_saving_again_marks_an_old_content_as_recent(tmp_path):
    sha = _stored(tmp_path, b"int main(){}\n", age=2 * DAY)
    assert snapshots.write_snapshot(tmp_path, b"int main(){}\n") == (sha, False)  # not rewritten...
    assert snapshots.remove_unreferenced(tmp_path, sha, grace_seconds=DAY) == "recent"  # ...but touched
    assert snapshots.read_snapshot(tmp_path, sha) == b"int main(){}\n"


def test_a_save_after_the_collector_took_the_file_writes_it_again(tmp_path):
    """The interleaving the rename exists for: the collector moved the old file aside, then a save of the
    same content arrives before the unlink. The save must not believe the content is stored."""
    sha = _stored(tmp_path, b"same\n", age=2 * DAY)
    final = snapshots.snapshot_path(tmp_path, sha)
    os.rename(final, final.with_name(snapshots.GC_PREFIX + sha))  # collector, step 1
    assert snapshots.write_snapshot(tmp_path, b"same\n") == (sha, True)  # the save writes it again
    final.with_name(snapshots.GC_PREFIX + sha).unlink()  # collector, step 2 (old copy: past the grace period)
    assert snapshots.read_snapshot(tmp_path, sha) == b"same\n"


def test_a_collector_that_died_after_the_rename_is_finished_by_the_next_one(tmp_path):
    sha = _stored(tmp_path, b"half-done\n", age=2 * DAY)
    final = snapshots.snapshot_path(tmp_path, sha)
    os.rename(final, final.with_name(snapshots.GC_PREFIX + sha))
    assert snapshots.remove_unreferenced(tmp_path, sha, grace_seconds=DAY) == "removed"
    assert not final.parent.exists() or not any(final.parent.iterdir())


def test_a_recent_content_left_aside_by_a_dead_collector_is_put_back(tmp_path):
    sha = _stored(tmp_path, b"fresh\n", age=5)
    final = snapshots.snapshot_path(tmp_path, sha)
    os.rename(final, final.with_name(snapshots.GC_PREFIX + sha))
    assert snapshots.remove_unreferenced(tmp_path, sha, grace_seconds=DAY) == "recent"
    assert snapshots.read_snapshot(tmp_path, sha) == b"fresh\n"


def test_other_contents_are_untouched(tmp_path):
    keep = _stored(tmp_path, b"keep\n", age=2 * DAY)
    gone = _stored(tmp_path, b"gone\n", age=2 * DAY)
    assert snapshots.remove_unreferenced(tmp_path, gone, grace_seconds=DAY) == "removed"
    assert snapshots.read_snapshot(tmp_path, keep) == b"keep\n"


def _other_collector_puts_it_back(final, doomed):
    """The other collector's last step, for a content it found recent: move it back under its name."""
    os.replace(doomed, final)


def test_a_content_another_collector_puts_back_is_recent_not_missing(tmp_path, monkeypatch):
    """Two nodes on one recent content. A renamed it aside; our rename finds nothing; A puts it back before
    we look for the aside copy. 'missing' would make the backend forget a content that is still on disk."""
    sha = _stored(tmp_path, b"fresh on two nodes\n", age=5)
    final = snapshots.snapshot_path(tmp_path, sha)
    doomed = final.with_name(snapshots.GC_PREFIX + sha)
    os.rename(final, doomed)  # collector A, step 1
    real_rename = os.rename

    def rename(src, dst):
        try:
            real_rename(src, dst)
        finally:
            _other_collector_puts_it_back(final, doomed)  # A, step 2: it is recent

    monkeypatch.setattr(snapshots.os, "rename", rename)
    assert snapshots.remove_unreferenced(tmp_path, sha, grace_seconds=DAY) == "recent"
    assert snapshots.read_snapshot(tmp_path, sha) == b"fresh on two nodes\n"


def test_a_content_put_back_while_we_look_at_the_aside_copy_is_recent_not_missing(tmp_path, monkeypatch):
    sha = _stored(tmp_path, b"fresh, later interleaving\n", age=5)
    final = snapshots.snapshot_path(tmp_path, sha)
    doomed = final.with_name(snapshots.GC_PREFIX + sha)
    os.rename(final, doomed)  # collector A, step 1
    real_exists = type(doomed).exists

    def exists(path, *args, **kwargs):
        found = real_exists(path, *args, **kwargs)
        if path == doomed and found:
            _other_collector_puts_it_back(final, doomed)  # A, step 2, right after we saw the aside copy
        return found

    monkeypatch.setattr(type(doomed), "exists", exists)
    assert snapshots.remove_unreferenced(tmp_path, sha, grace_seconds=DAY) == "recent"
    assert snapshots.read_snapshot(tmp_path, sha) == b"fresh, later interleaving\n"
