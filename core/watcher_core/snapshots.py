"""The snapshot store: file contents addressed by sha256, shared by filemon (writer) and the backend (reader).

Layout::

    <root>/<first two hex digits>/<sha256>          a content (its name: the sha256 of the raw content)
    <root>/<first two hex digits>/<sha256>.deltas/  empty files named after the contents stored as deltas
                                                    against this one (the collector's index, see below)
    <root>/.lock                                    the store lock (flock), see below

Two levels keep directories small on a volume that holds millions of snapshots. Writes are atomic (temp file
in the same directory, fsync, rename), so a reader never sees half a file and a crash never leaves a wrong one
under a valid name. A content that is already stored is not written again: saving the same file 100 times
costs one copy; its mtime is set to the time of the last save instead.

A stored content is in one of three forms, told apart by what the bytes are (docs/filemon.md has the design
and the figures):

* **raw**: the content itself (stores written before compression; ``migrate`` compresses them in place).
  Its sha256 is its name.
* **whole**: one zstd frame of the content.
* **delta**: a zstd skippable frame holding the sha256 of a *base* (a raw or whole content), then a zstd frame
  of the content compressed with the base as its dictionary (``zstd -d --patch-from=<base>`` reads it too).
  A delta's base is never a delta, so a read decompresses at most twice. filemon stores a save as a delta
  against the base of the file's previous version when that is less than ``DELTA_MAX_FRACTION`` of the
  whole form; the base changes (a new whole content) as the file drifts away from it.

Every read checks the sha256 of what it decoded against the name: a damaged content raises
``CorruptSnapshot``, never returns wrong bytes.

Contents nobody refers to any more (their events were erased) are removed by ``remove_unreferenced``, which
never removes a content saved within the grace period, even one saved during the removal. Before a base goes,
every delta that needs it is rewritten whole (found through ``<base>.deltas/``), so the erased content's bytes
leave the disk and no remaining content loses its base. The store lock makes that safe without stopping
saves: a delta is written holding the lock shared (not waiting: when the lock is taken, the save is stored
whole), a removal holds it exclusively, and ``migrate`` holds it shared (it never works on deltas, but must
not write a content back that a removal just took away).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import re
import struct
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import zstandard

_SHA_RE = re.compile(r"[0-9a-f]{64}")

LEVEL = 3  # zstd's default: level 19 saves ~2 % of the raw size on source code and costs ~10x the time
DELTA_MAX_FRACTION = 0.25  # a delta larger than this share of the whole form: store it whole, a new base
MAX_CONTENT_SIZE = 1 << 30  # a frame that claims more is damaged (filemon's limit is 1 MiB by default)
LOCK_NAME = ".lock"
GC_PREFIX = ".gc-"  # a content being removed; never a valid snapshot name, so readers do not see it
DELTAS_SUFFIX = ".deltas"

_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_DELTA_MAGIC = 0x184D2A5A  # one of zstd's skippable frame magic numbers: zstd tools skip the header
_DELTA_HEADER = struct.Struct("<II32s")  # magic, length of what follows (32), the base's sha256
# The smallest delta there can be: its header, then a zstd frame of at least a magic number (4 bytes), a frame
# header (2) and a block header (3). A content whose whole form is under 4x this is stored whole without
# trying a delta: none could be under DELTA_MAX_FRACTION of it.
_MIN_DELTA_SIZE = _DELTA_HEADER.size + 4 + 2 + 3


class CorruptSnapshot(OSError):
    """A stored content that does not decode to the content its name says (damaged, or a delta whose base
    is gone). An OSError (EIO): callers that handle an unreadable store handle this too."""

    def __init__(self, sha256: str, why: str) -> None:
        super().__init__(errno.EIO, f"snapshot {sha256} is damaged: {why}")
        self.sha256 = sha256


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def snapshot_path(root: str | os.PathLike, sha256: str) -> Path:
    if not _SHA_RE.fullmatch(sha256):
        raise ValueError(f"not a sha256 hex digest: {sha256!r}")
    return Path(root) / sha256[:2] / sha256


def _deltas_dir(root: str | os.PathLike, base: str) -> Path:
    return snapshot_path(root, base).with_name(base + DELTAS_SUFFIX)


# ------------------------------------------------------------------------------------------ the forms


def compress_whole(data: bytes) -> bytes:
    return zstandard.ZstdCompressor(level=LEVEL, write_checksum=False, write_dict_id=False).compress(data)


def compress_delta(data: bytes, base: bytes, base_sha256: str) -> bytes:
    prefix = zstandard.ZstdCompressionDict(base, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
    frame = zstandard.ZstdCompressor(level=LEVEL, dict_data=prefix, write_checksum=False, write_dict_id=False).compress(
        data
    )
    return _DELTA_HEADER.pack(_DELTA_MAGIC, 32, bytes.fromhex(base_sha256)) + frame


def delta_may_pay(whole_size: int) -> bool:
    """Whether a delta could be small enough to be stored instead of a whole form of ``whole_size`` bytes.
    A tiny or very repetitive content (a 700-byte file of one line repeated compresses to ~55 bytes) is
    stored whole anyway, and trying its delta (the store lock, reading the base, a dictionary compression)
    made every save of such a file cost more: in the storm benchmark, all of them."""
    return _MIN_DELTA_SIZE <= DELTA_MAX_FRACTION * whole_size


def _header_base(blob: bytes) -> str | None:
    if len(blob) >= _DELTA_HEADER.size:
        magic, length, base = _DELTA_HEADER.unpack_from(blob)
        if magic == _DELTA_MAGIC and length == 32:
            return base.hex()
    return None


def form_of(blob: bytes, sha256: str) -> str:
    """``"raw"`` (a content stored as itself: its sha256 is its name), ``"delta"``, ``"whole"``, or
    ``"damaged"`` (none of these) for the bytes of a stored file."""
    if sha256_of(blob) == sha256:
        return "raw"
    if _header_base(blob) is not None:
        return "delta"
    if blob.startswith(_ZSTD_MAGIC):
        return "whole"
    return "damaged"


def delta_base(blob: bytes, sha256: str) -> str | None:
    """The sha256 of the base of a stored delta, None for any other form."""
    return _header_base(blob) if form_of(blob, sha256) == "delta" else None


def _decompress(frame: bytes, sha256: str, base: bytes | None = None) -> bytes:
    try:
        size = zstandard.frame_content_size(frame)
        if not 0 <= size <= MAX_CONTENT_SIZE:
            raise CorruptSnapshot(sha256, "its zstd frame does not say its size")
        prefix = None if base is None else zstandard.ZstdCompressionDict(base, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
        data = zstandard.ZstdDecompressor(dict_data=prefix).decompress(frame)
    except zstandard.ZstdError as exc:
        raise CorruptSnapshot(sha256, f"zstd: {exc}") from None
    if sha256_of(data) != sha256:
        raise CorruptSnapshot(sha256, "it does not decompress to a content with this sha256")
    return data


def _read_file(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _base_content(root: str | os.PathLike, base: str, of: str, *, aside: bool = True) -> bytes | None:
    """The content of a delta's base: under its name, or (``aside``) under the collector's name while it is
    being removed (the collector rewrites the deltas that need it before that copy goes). None when absent."""
    path = snapshot_path(root, base)
    blob = _read_file(path)
    if blob is None and aside:
        blob = _read_file(path.with_name(GC_PREFIX + base))
    if blob is None:
        return None
    form = form_of(blob, base)
    if form == "delta":
        raise CorruptSnapshot(of, f"its base {base} is itself a delta")
    return _undelta(blob, base, form)


def _undelta(blob: bytes, sha256: str, form: str) -> bytes:
    """The content of a raw or whole stored file."""
    if form == "raw":
        return blob
    if form == "whole":
        return _decompress(blob, sha256)
    raise CorruptSnapshot(sha256, "it is neither the content, nor a zstd frame, nor a delta")


def decode(root: str | os.PathLike, blob: bytes, sha256: str) -> bytes | None:
    """The content that the stored bytes ``blob`` of ``sha256`` hold, checked against the name. None: a delta
    whose base is not in the store (a collector may have rewritten it whole meanwhile: read it again)."""
    form = form_of(blob, sha256)
    if form != "delta":
        return _undelta(blob, sha256, form)
    base = _header_base(blob)
    assert base is not None
    base_data = _base_content(root, base, sha256)
    if base_data is None:
        return None
    return _decompress(blob[_DELTA_HEADER.size :], sha256, base_data)


def read_snapshot(root: str | os.PathLike, sha256: str) -> bytes | None:
    """The stored content, or None if this store does not have it. Raises ``CorruptSnapshot`` for a content
    that does not decode to its sha256."""
    path = snapshot_path(root, sha256)
    for _ in range(3):
        blob = _read_file(path)
        if blob is None:
            return None
        data = decode(root, blob, sha256)
        if data is not None:
            return data
        # The base went between our two reads; a collector rewrote this content whole first: read it again.
    raise CorruptSnapshot(sha256, "its base is not in the store")


def stored_form(root: str | os.PathLike, sha256: str) -> str | None:
    """``"raw"``, ``"whole"``, ``"delta"``, or None when not stored (for the migration, tests, benchmarks)."""
    blob = _read_file(snapshot_path(root, sha256))
    return None if blob is None else form_of(blob, sha256)


# ------------------------------------------------------------------------------------------ the store lock


@contextlib.contextmanager
def store_lock(root: str | os.PathLike, *, exclusive: bool, timeout: float | None = None) -> Iterator[bool]:
    """Hold ``<root>/.lock`` (flock: across processes, and across nodes on NFS, which maps it to its own
    locks). Yields True once held; with ``timeout=0`` it does not wait and yields False when the lock is taken.
    A ``timeout`` that runs out raises ``StoreBusy``."""
    fd = os.open(Path(root) / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
        deadline = None if timeout is None else time.monotonic() + timeout
        held = False
        while not held:
            try:
                fcntl.flock(fd, mode | (0 if deadline is None else fcntl.LOCK_NB))
                held = True
            except BlockingIOError:
                if deadline is not None and time.monotonic() >= deadline:
                    if timeout == 0:
                        break
                    raise StoreBusy(root, timeout) from None
                time.sleep(0.01)
        yield held
    finally:
        os.close(fd)  # releases the lock


class StoreBusy(OSError):
    def __init__(self, root: str | os.PathLike, timeout: float | None) -> None:
        super().__init__(errno.EAGAIN, f"the store lock {Path(root) / LOCK_NAME} stayed taken for {timeout:g} s")


# ------------------------------------------------------------------------------------------ writing


@dataclass(frozen=True)
class Stored:
    """What ``store_snapshot`` did: ``written`` is False when the content was there already (then
    ``stored_bytes`` is 0 and ``form`` None)."""

    sha256: str
    written: bool
    stored_bytes: int = 0
    form: str | None = None


def _write_atomically(final: Path, blob: bytes, mtime_ns: int | None = None) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=final.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(blob)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        if mtime_ns is not None:
            os.utime(tmp, ns=(mtime_ns, mtime_ns))
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def store_snapshot(
    root: str | os.PathLike, data: bytes, sha256: str | None = None, *, previous: str | None = None
) -> Stored:
    """Store ``data`` (compressed). ``previous``: the sha256 of an earlier version of the same file, whose
    base this content may be stored as a delta against."""
    digest = sha256 or sha256_of(data)
    final = snapshot_path(root, digest)
    try:
        # Stored already: mark it as saved just now, so the collector leaves it alone (remove_unreferenced).
        # If the collector took it away a moment ago, this fails and the content is written again.
        os.utime(final)
        return Stored(digest, False)
    except FileNotFoundError:
        pass
    final.parent.mkdir(parents=True, exist_ok=True)
    whole = compress_whole(data)
    if previous is not None and previous != digest and delta_may_pay(len(whole)):
        with contextlib.suppress(OSError), store_lock(root, exclusive=False, timeout=0) as held:
            if held and (stored := _write_delta(root, data, digest, whole, previous)) is not None:
                return stored
    _write_atomically(final, whole)
    return Stored(digest, True, len(whole), "whole")


def _write_delta(root: str | os.PathLike, data: bytes, digest: str, whole: bytes, previous: str) -> Stored | None:
    """Under the shared store lock (no removal runs): the delta against the base of ``previous`` if it is
    small enough, with its entry in the base's index written first; None to store the content whole."""
    blob = _read_file(snapshot_path(root, previous))
    if blob is None:
        return None
    form = form_of(blob, previous)
    base = (_header_base(blob) if form == "delta" else None) or previous
    try:
        # the previous version is itself the base (raw or whole): its bytes are read already
        base_data = _base_content(root, base, digest, aside=False) if form == "delta" else _undelta(blob, base, form)
    except CorruptSnapshot:
        return None
    if base_data is None:
        return None
    delta = compress_delta(data, base_data, base)
    if len(delta) > DELTA_MAX_FRACTION * len(whole):
        return None
    index = _deltas_dir(root, base)
    index.mkdir(exist_ok=True)
    (index / digest).touch()  # before the delta: a crash leaves an entry for nothing, never a delta unknown
    _write_atomically(snapshot_path(root, digest), delta)
    return Stored(digest, True, len(delta), "delta")


def write_snapshot(
    root: str | os.PathLike, data: bytes, sha256: str | None = None, *, previous: str | None = None
) -> tuple[str, bool]:
    """Store ``data``; returns (sha256, written) where written is False if it was already there."""
    stored = store_snapshot(root, data, sha256, previous=previous)
    return stored.sha256, stored.written


# ------------------------------------------------------------------------------------------ removal


def remove_unreferenced(
    root: str | os.PathLike,
    sha256: str,
    grace_seconds: float,
    now: float | None = None,
    *,
    lock_timeout: float = 30.0,
) -> str:
    """Remove a content whose events were all erased, unless it was saved within ``grace_seconds``.

    Returns ``"removed"``, ``"missing"`` (not in this store) or ``"recent"`` (kept: saved lately, so an
    event that refers to it may still be on its way to the backend).

    Race-free against a concurrent ``write_snapshot`` of the same content: the file is first renamed out of
    the way, then its mtime is read. A writer that touched it before the rename left a recent mtime, so the
    file is put back; a writer that came after the rename found nothing and wrote it again.

    The deltas whose base it is are rewritten whole before it goes (their own mtime kept), so none loses
    its base and none of its bytes stay. Holds the store lock exclusively: no delta is written against it
    meanwhile, and no other removal rewrites the same deltas. Raises ``StoreBusy`` when the lock stays taken
    for ``lock_timeout`` seconds.
    """
    final = snapshot_path(root, sha256)
    if not Path(root).is_dir():
        return "missing"
    with store_lock(root, exclusive=True, timeout=lock_timeout):
        return _remove_locked(root, final, sha256, grace_seconds, now)


def _remove_locked(root: str | os.PathLike, final: Path, sha256: str, grace_seconds: float, now: float | None) -> str:
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
        blob = doomed.read_bytes()
        _rewrite_deltas_of(root, sha256, blob)
        base = delta_base(blob, sha256)
        if base is not None:
            _forget_delta(root, base, sha256)
        doomed.unlink()
    except FileNotFoundError:  # another node's collector finished it first, or put it back
        return _missing_or_put_back(final)
    return "removed"


def _rewrite_deltas_of(root: str | os.PathLike, base: str, base_blob: bytes) -> None:
    """Every delta stored against ``base`` (its stored bytes: ``base_blob``) is written whole, then the index
    goes. A delta that does not decode against it is left as it is: it is damaged already."""
    index = _deltas_dir(root, base)
    try:
        entries = sorted(os.listdir(index))
    except FileNotFoundError:
        return
    base_data: bytes | None = None

    def whole_if_delta_of_base(blob: bytes, name: str) -> bytes | None:
        nonlocal base_data
        if delta_base(blob, name) != base:
            return None  # gone whole already, or stored again without this base
        if base_data is None:
            base_data = decode(root, base_blob, base)
            if base_data is None:
                raise CorruptSnapshot(base, "it is a delta whose base is gone")
        with contextlib.suppress(CorruptSnapshot):
            return compress_whole(_decompress(blob[_DELTA_HEADER.size :], name, base_data))
        return None

    for name in entries:
        if _SHA_RE.fullmatch(name):
            _rewrite(snapshot_path(root, name), name, whole_if_delta_of_base)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(index / name)
    with contextlib.suppress(OSError):  # not empty: a delta written after our listing (a dead collector's)
        os.rmdir(index)


def _rewrite(path: Path, sha256: str, new_form: Callable[[bytes, str], bytes | None]) -> tuple[bytes, bytes] | None:
    """Replace a stored file by ``new_form(its bytes)`` (None: leave it) atomically, keeping its mtime, which
    is its grace period: also a save's touch that lands on the old file while we work. Returns (old, new), or
    None when nothing was written (the file is not there, or ``new_form`` said no)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None  # gone, or never written (a writer died between its index entry and its delta)
    with os.fdopen(fd, "rb") as fh:
        blob = fh.read()
        new = new_form(blob, sha256)
        if new is None:
            return None
        mtime_ns = os.fstat(fh.fileno()).st_mtime_ns
        _write_atomically(path, new, mtime_ns)
        touched = os.fstat(fh.fileno()).st_mtime_ns
        if touched > mtime_ns:
            os.utime(path, ns=(touched, touched))
    return blob, new


def _forget_delta(root: str | os.PathLike, base: str, sha256: str) -> None:
    index = _deltas_dir(root, base)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(index / sha256)
    with contextlib.suppress(OSError):  # not empty: other deltas still need the base
        os.rmdir(index)


def _missing_or_put_back(final: Path) -> str:
    """Another collector took the content from under us. If it is under its name again, that collector
    found it recent and put it back (or a save wrote it again): it stays, so it is "recent", not "missing"
    (which would make the backend forget a content that is still on disk)."""
    return "recent" if final.exists() else "missing"


# ------------------------------------------------------------------------------------------ migration


@dataclass
class MigrationReport:
    scanned: int = 0
    compressed: int = 0  # raw contents written whole
    already: int = 0  # stored compressed already (a run before, or filemon)
    vanished: int = 0  # removed (or being removed) while the migration ran
    raw_bytes: int = 0  # of the contents compressed: before ...
    stored_bytes: int = 0  # ... and after
    damaged: list[str] = field(default_factory=list)  # neither raw nor decodable: left as they are


def shards(root: str | os.PathLike) -> list[Path]:
    """The store's two-hex-digit directories, in order."""
    try:
        return sorted(p for p in Path(root).iterdir() if re.fullmatch(r"[0-9a-f]{2}", p.name) and p.is_dir())
    except FileNotFoundError:
        return []


def compress_in_place(root: str | os.PathLike, sha256: str, report: MigrationReport) -> None:
    """Rewrite one raw content whole, keeping its mtime (its grace period). Hold the store lock (shared)."""
    seen: list[str] = []

    def whole_if_raw(blob: bytes, name: str) -> bytes | None:
        seen.append(form_of(blob, name))
        return compress_whole(blob) if seen[0] == "raw" else None

    done = _rewrite(snapshot_path(root, sha256), sha256, whole_if_raw)
    if done is not None:
        report.compressed += 1
        report.raw_bytes += len(done[0])
        report.stored_bytes += len(done[1])
    elif not seen:
        report.vanished += 1
    elif seen[0] == "damaged":
        report.damaged.append(sha256)
    else:
        report.already += 1


def migrate(
    root: str | os.PathLike,
    *,
    progress: Callable[[Path, MigrationReport], None] | None = None,
    lock_timeout: float | None = None,
) -> MigrationReport:
    """Compress every raw content of the store in place, shard by shard. Resumable (compressed contents are
    skipped) and safe while filemon saves and collects (each shard under the store lock, shared)."""
    report = MigrationReport()
    for shard in shards(root):
        with store_lock(root, exclusive=False, timeout=lock_timeout):
            for entry in sorted(os.listdir(shard)):
                if _SHA_RE.fullmatch(entry):
                    report.scanned += 1
                    compress_in_place(root, entry, report)
        if progress is not None:
            progress(shard, report)
    return report
