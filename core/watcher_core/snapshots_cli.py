"""``watcher snapshots``: work on the snapshot store itself.

    watcher snapshots migrate --root /watcher/snapshots     # in a filemon pod: kubectl exec ds/watcher-filemon -- ...

``migrate`` compresses, in place, every content that a filemon older than compression stored raw. Each
content keeps its name (the sha256 of the raw content) and its mtime (its grace period); the backend reads
raw and compressed contents alike, during and after the migration. It may run while filemon saves and
collects, and may be stopped at any point and run again: it goes on where it stopped (compressed contents
are skipped), so a second run changes nothing. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from watcher_core import settings_spec
from watcher_core.settings_spec import Setting, Subcommand

PROG = "watcher snapshots"


MIGRATE = Subcommand(
    "snapshots migrate",
    "compress in place every content stored raw (by a filemon older than compression); names and mtimes stay, "
    "readers see no difference. Safe while filemon saves and collects; resumable (stop it any time, run it "
    "again); progress on stderr",
    (
        Setting(
            "root",
            flag="--root",
            env="WATCHER_SNAPSHOT_DIR",
            parse=settings_spec.path,
            required=True,
            metavar="DIR",
            doc="the snapshot store (filemon's `--snapshot-dir`)",
        ),
    ),
)
TABLE = (MIGRATE,)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True, metavar="{migrate}")
    settings_spec.add_subcommand(
        sub,
        MIGRATE,
        description="Compress the raw contents of a snapshot store in place. Resumable; safe while filemon runs.",
    )
    return p


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    from watcher_core import snapshots  # zstandard: only when the command runs, so --help works everywhere

    try:
        root = settings_spec.resolve(MIGRATE.settings, args).root
    except settings_spec.SettingsError as exc:
        sys.stderr.write(f"{PROG} migrate: {exc}\n")
        return 2
    if not root.is_dir():
        sys.stderr.write(f"{PROG} migrate: --root: {root} is not a directory\n")
        return 2
    total = len(snapshots.shards(root))
    done = 0
    last = 0.0

    def progress(shard: Path, report: snapshots.MigrationReport) -> None:
        nonlocal done, last
        done += 1
        if time.monotonic() - last >= 1.0 or done == total:
            last = time.monotonic()
            sys.stderr.write(
                f"{PROG} migrate: {done}/{total} directories, {report.compressed:,} contents compressed "
                f"({_mb(report.raw_bytes)} -> {_mb(report.stored_bytes)}), {report.already:,} compressed "
                "already\n"
            )

    sys.stderr.write(f"{PROG} migrate: compressing the raw contents of {root} ({total} directories)\n")
    try:
        report = snapshots.migrate(root, progress=progress)
    except OSError as exc:
        sys.stderr.write(f"{PROG} migrate: {exc}; run it again to go on where it stopped\n")
        return 1
    ratio = f" ({report.stored_bytes / report.raw_bytes:.0%} of their raw size)" if report.raw_bytes else ""
    sys.stderr.write(
        f"{PROG} migrate: done: {report.scanned:,} contents, {report.compressed:,} compressed now{ratio}, "
        f"{report.already:,} compressed already, {report.vanished:,} removed meanwhile\n"
    )
    if report.damaged:
        sys.stderr.write(
            f"{PROG} migrate: {len(report.damaged)} contents are damaged (neither their raw content nor "
            f"decodable) and were left as they are: {', '.join(report.damaged[:20])}"
            + (" ..." if len(report.damaged) > 20 else "")
            + "\n"
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
