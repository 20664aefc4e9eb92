"""The snapshot store on realistic editing traces: bytes stored per save, raw against compressed, and the write
and read latency of a save, side by side.

Traces (the files are in bench/corpus/, written for this benchmark):

* **C typed**: library.c (307 lines) typed from the first character to the last at ~4 characters a second,
  saved every 2-8 s (seeded), so each save is the file up to where the student is, often mid-line;
* **Python typed**: wordstats.py (165 lines), the same way;
* **starter x200**: the first 60 lines of library.c saved unchanged by 200 students (one content).

Each save goes to two stores on the same file system, alternating which goes first: the store as it was
before compression (raw file, temp + fsync + rename; read back with one read) and the store now
(``watcher_core.snapshots.store_snapshot`` with the previous version, as filemon calls it; read back with
``read_snapshot``, which decompresses and checks the sha256). Medians and p99 of the same saves.

    .venv/bin/python bench/filemon_snapshot_store.py [--seed 1]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from filemon_common import machine, write_section

from watcher_core import snapshots

CORPUS = Path(__file__).resolve().parent / "corpus"
PREFIX = "filemon-snapshot-store-"


def typed(text: bytes, rng: random.Random, chars_per_second: float = 4.0) -> list[bytes]:
    """The saves of a student typing ``text`` in order and saving every 2-8 seconds."""
    saves, pos = [], 0
    while pos < len(text):
        pos = min(len(text), pos + max(1, round(rng.uniform(2, 8) * chars_per_second)))
        saves.append(text[:pos])
    return saves


def write_raw(root: Path, data: bytes) -> int:
    """The store before compression: the content itself, written atomically; nothing if stored already."""
    sha = snapshots.sha256_of(data)
    final = root / sha[:2] / sha
    if final.exists():
        os.utime(final)
        return 0
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=final.parent)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, final)
    return len(data)


def disk_usage(root: Path) -> tuple[int, int]:
    """(bytes the file system allocated to files, number of files): what `du` would add up."""
    blocks = files = 0
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            st = os.lstat(os.path.join(dirpath, name))
            blocks += st.st_blocks * 512
            files += 1
    return blocks, files


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1) + 0.5))]


def run_trace(name: str, saves: list[bytes], tmp: Path, rng: random.Random) -> dict:
    raw_root, new_root = tmp / name / "raw", tmp / name / "compressed"
    raw_root.mkdir(parents=True)
    new_root.mkdir(parents=True)
    w_raw, w_new, r_raw, r_new = [], [], [], []
    c_raw, c_new = [], []  # CPU of each write (this process: user + system, fsync's and file creation's included)
    raw_stored = new_stored = 0
    forms: dict[str, int] = {}
    previous: str | None = None
    shas = []
    for i, data in enumerate(saves):
        order = (0, 1) if i % 2 == 0 else (1, 0)
        for which in order:
            t0, cpu0 = time.perf_counter(), time.process_time()
            if which == 0:
                raw_stored += write_raw(raw_root, data)
                w_raw.append(time.perf_counter() - t0)
                c_raw.append(time.process_time() - cpu0)
            else:
                stored = snapshots.store_snapshot(new_root, data, previous=previous)
                w_new.append(time.perf_counter() - t0)
                c_new.append(time.process_time() - cpu0)
                new_stored += stored.stored_bytes
                if stored.form:
                    forms[stored.form] = forms.get(stored.form, 0) + 1
                previous = stored.sha256
        shas.append(previous)
    for i in rng.sample(range(len(saves)), len(saves)):  # every save read back once, in random order
        sha = shas[i]
        assert sha is not None
        for which in (0, 1) if i % 2 == 0 else (1, 0):
            t0 = time.perf_counter()
            if which == 0:
                data = (raw_root / sha[:2] / sha).read_bytes()
                r_raw.append(time.perf_counter() - t0)
            else:
                data = snapshots.read_snapshot(new_root, sha)
                r_new.append(time.perf_counter() - t0)
            assert data == saves[i], f"{name}: save {i} read back wrong"
    raw_disk, raw_files = disk_usage(raw_root)
    new_disk, new_files = disk_usage(new_root)
    return {
        "name": name,
        "saves": len(saves),
        "raw_bytes": sum(len(s) for s in saves),
        "raw_stored": raw_stored,
        "new_stored": new_stored,
        "forms": forms,
        "raw_disk": raw_disk,
        "new_disk": new_disk,
        "raw_files": raw_files,
        "new_files": new_files,
        "w_raw": w_raw,
        "w_new": w_new,
        "c_raw": c_raw,
        "c_new": c_new,
        "r_raw": r_raw,
        "r_new": r_new,
    }


def ms(values: list[float], q: float) -> str:
    return f"{pct(values, q) * 1000:.3f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="bench/filemon_snapshot_store.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--students", type=int, default=200, help="students saving the same starter file")
    ap.add_argument("--no-write", action="store_true", help="do not update bench/results/filemon.md")
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    c_text = (CORPUS / "library.c").read_bytes()
    py_text = (CORPUS / "wordstats.py").read_bytes()
    starter = b"".join(c_text.splitlines(keepends=True)[:60])
    traces = [
        ("C typed", typed(c_text, rng)),
        ("Python typed", typed(py_text, rng)),
        (f"starter x{args.students}", [starter] * args.students),
    ]
    tmp = Path(tempfile.mkdtemp(prefix=PREFIX))
    print(f"snapshot store: {len(traces)} traces in {tmp}; machine {machine()}")
    results = [run_trace(name, saves, tmp, rng) for name, saves in traces]

    rows = [
        "| trace | saves | raw bytes (every save) | stored before (raw, deduplicated) | stored now | "
        "**now / raw** | whole / delta | disk before -> now (allocated blocks, files) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        rows.append(
            f"| {r['name']} | {r['saves']} | {r['raw_bytes']:,} | {r['raw_stored']:,} | {r['new_stored']:,} | "
            f"**{r['new_stored'] / r['raw_bytes']:.1%}** | {r['forms'].get('whole', 0)} / {r['forms'].get('delta', 0)} "
            f"| {r['raw_disk'] / 1024:,.0f} KiB -> {r['new_disk'] / 1024:,.0f} KiB ({r['raw_files']} -> "
            f"{r['new_files']} files) |"
        )
    lat = [
        "| trace | write p50 raw / compressed | write p99 raw / compressed | read p50 raw / compressed | "
        "read p99 raw / compressed | write CPU per save, mean raw / compressed |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        lat.append(
            f"| {r['name']} | {ms(r['w_raw'], 0.5)} / {ms(r['w_new'], 0.5)} ms | {ms(r['w_raw'], 0.99)} / "
            f"{ms(r['w_new'], 0.99)} ms | {ms(r['r_raw'], 0.5)} / {ms(r['r_new'], 0.5)} ms | "
            f"{ms(r['r_raw'], 0.99)} / {ms(r['r_new'], 0.99)} ms | "
            f"{statistics.mean(r['c_raw']) * 1000:.3f} / {statistics.mean(r['c_new']) * 1000:.3f} ms |"
        )
    typed_traces = [r for r in results if "typed" in r["name"]]
    c = typed_traces[0]
    per_save = statistics.median(
        [len(s) for s in traces[0][1]]
    )  # the median save of the C trace, for the sentence below
    body = "\n".join(
        [
            "Traces: bench/corpus/library.c (307 lines) and wordstats.py (165 lines) typed in order at ~4 "
            "characters/s with a save every 2-8 s (so most saves end mid-line); the first 60 lines of library.c "
            f"saved unchanged by {args.students} students. Each save written to a store as it was before "
            "compression (raw) and to the store now (zstd level "
            f"{snapshots.LEVEL}, deltas against the file's base when under {snapshots.DELTA_MAX_FRACTION:.0%} of "
            "the whole form), alternating which goes first; every save then read back from both.",
            f"Machine: {machine()}; the stores on {tmp.parent} (temp dir).",
            f"Command: `.venv/bin/python bench/filemon_snapshot_store.py --seed {args.seed} --students {args.students}`",
            "",
            *rows,
            "",
            f"Target: stored now <= 25 % of raw bytes on the typed C file: **{c['new_stored'] / c['raw_bytes']:.1%}** "
            f"({c['new_stored'] / c['saves']:,.0f} bytes per save for a median save of {per_save:,.0f} bytes). "
            "Allocated blocks are what `du` shows: every file takes at least one block (4 KiB here), so on disk the "
            "saving is bounded by the number of files, not by the bytes.",
            "",
            "Latency per save (each write includes its fsync; reads are warm, from the page cache). Write CPU "
            "is this process's user + system time around each write: a delta creates two files (its entry in "
            "the base's index, then itself), a raw or whole save one, and creating a file is most of a write's "
            "CPU on some file systems:",
            "",
            *lat,
        ]
    )
    print(body)
    if not args.no_write:
        write_section(
            "snapshot_store", "Snapshot store: compressed against raw (bench/filemon_snapshot_store.py)", body
        )
    return 0


def run(argv=None) -> int:
    try:
        return main(argv)
    finally:
        for leftover in Path(tempfile.gettempdir()).glob(f"{PREFIX}*"):
            shutil.rmtree(leftover, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(run())
