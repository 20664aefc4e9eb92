"""The snapshot store: file contents addressed by sha256, shared by filemon (writer) and the backend (reader).

Layout: ``<root>/<first two hex digits>/<sha256>``. Two levels keep directories small on a volume that
holds millions of snapshots. Writes are atomic (temp file in the same directory, fsync, rename), so a
reader never sees half a file and a crash never leaves a wrong one under a valid name. A content that
is already stored is not written again: saving the same file 100 times costs one copy.
"""
from __future__ import annotations

import hashlib
import os
import re
import tempfile
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
    if final.exists():
        return digest, False
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
