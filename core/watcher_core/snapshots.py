"""The snapshot store: file contents addressed by sha256, shared by filemon (writer) and the backend (reader).

Layout: ``<root>/<first two hex digits>/<sha256>``. Two levels keep directories small on a volume that
holds millions of snapshots. Writes are atomic (temp file in the same directory, fsync, rename), so a
reader never sees half a file and a crash never leaves a wrong one under a valid name. A content that
is already stored is not written again: saving the same file 100 times costs one copy; its mtime is
set to the time of the last save instead.

Contents nobody refers to any more (their events were erased) are removed by ``remove_unreferenced``,
which never removes a content saved within the grace period, even one saved during the removal.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import time
from pathlib import Path

_SHA_RE = re.compile(r"[0-9a-f]{64}")


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def snapshot_path(root: str | os.PathLike, sha256: str) -> Path:
    if not _SHA_RE.fullmatch(sha256):
        raise ValueError(f"not a sha256 hex digest: {sha256!r}")
    return Path(root) / sha256[:2] / sha256


def write_snapshot(root: str | os.PathLike, data: bytes, sha256: str | None = None) -> tuple[str, bool]:
    """Store ``data``; returns (sha256, written) where written is False if it was already there."""
    digest = sha256 or sha256_of(data)
    final = snapshot_path(root, digest)
    try:
        # Stored already: mark it as saved just now, so the collector leaves it alone (remove_unreferenced).
        # If the collector took it away a moment ago, this fails and the content is written again.
        os.utime(final)
        return digest, False
    except FileNotFoundError:
        pass
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=final.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, final)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return digest, True


def read_snapshot(root: str | os.PathLike, sha256: str) -> bytes | None:
    """The stored content, or None if this store does not have it."""
    try:
        return snapshot_path(root, sha256).read_bytes()
    except FileNotFoundError:
        return None


GC_PREFIX = ".gc-"  # a content being removed; never a valid snapshot name, so readers do not see it


def remove_unreferenced(root: str | os.PathLike, sha256: str, grace_seconds: float, now: float | None = None) -> str:
    """Remove a content whose events were all erased, unless it was saved within ``grace_seconds``.

    Returns ``"removed"``, ``"missing"`` (not in this store) or ``"recent"`` (kept: saved lately, so an
    event that refers to it may still be on its way to the backend).

    Race-free against a concurrent ``write_snapshot`` of the same content: the file is first renamed out of
    the way, then its mtime is read. A writer that touched it before the rename left a recent mtime, so the
    file is put back; a writer that came after the rename found nothing and wrote it again.
    """
    final = snapshot_path(root, sha256)
    doomed = final.with_name(GC_PREFIX + sha256)
    try:
        os.rename(final, doomed)
    except FileNotFoundError:
        if not doomed.exists():  # else: left by a collector that died between rename and unlink
            return _missing_or_put_back(final)
    try:
        if doomed.stat().st_mtime > (time.time() if now is None else now) - grace_seconds:
            os.replace(doomed, final)
            return "recent"
        doomed.unlink()
    except FileNotFoundError:  # another node's collector finished it first, or put it back
        return _missing_or_put_back(final)
    return "removed"


def _missing_or_put_back(final: Path) -> str:
    """Another collector took the content from under us. If it is under its name again, that collector
    found it recent and put it back (or a save wrote it again): it stays, so it is "recent", not "missing"
    (which would make the backend forget a content that is still on disk)."""
    return "recent" if final.exists() else "missing"
