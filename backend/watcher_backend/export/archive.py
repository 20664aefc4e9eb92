"""A dataset folder as a zip written while it is sent (the dashboard's export button).

``zip_stream`` yields the archive in chunks as it compresses each file, so the answer starts at once and
never sits whole in memory. zipfile writes to a stream it cannot seek by putting each entry's sizes after
its data (data descriptors), which every unzip reads.
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path

CHUNK = 256 * 1024


class _Sink(io.RawIOBase):
    """A write-only stream that keeps what was written until ``take``."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:  # type: ignore[override]
        self._chunks.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        out = b"".join(self._chunks)
        self._chunks.clear()
        return out


def zip_stream(folder: str | os.PathLike, prefix: str) -> Iterator[bytes]:
    """Every file under ``folder`` as ``prefix/<relative path>`` entries of one zip, in sorted order.
    Empty folders are kept as entries, so an empty CodeState survives."""
    root = Path(folder)
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(root.rglob("*")):
            name = f"{prefix}/{path.relative_to(root).as_posix()}"
            if path.is_dir():
                if not any(path.iterdir()):
                    archive.writestr(name + "/", b"")
                continue
            info = zipfile.ZipInfo.from_file(path, name)
            info.compress_type = zipfile.ZIP_DEFLATED
            with open(path, "rb") as src, archive.open(info, "w") as dest:
                while block := src.read(CHUNK):
                    dest.write(block)
                    if out := sink.take():
                        yield out
            if out := sink.take():
                yield out
    if out := sink.take():
        yield out
