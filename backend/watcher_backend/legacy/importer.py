"""``watcher import legacy``: bring the old Watcher's data over (docs/migration.md).

Reads the old backend's SQLite database (tables ``snapshot``, ``buildlog``, ``runlog``; read-only) and, when
given, the old filemon's snapshot folder (``{class_div}/{hw}/{id}/{filename}/{YYYYMMDD_HHMMSS}{ext}``), and
writes ordinary events into this backend's database and the contents into its content-addressed snapshot
store, so every old save keeps its content.

* Events are built by the same functions as the live old API (legacy.adapter), so their ``event_id`` is the one
  a live POST of the same facts got: running the import twice, or importing what was also posted live during
  a side-by-side run, stores nothing twice.
* Ids: the old database kept student ids as integers (``000123`` became ``123``); the folder names keep the
  zeros. A database id takes the folder id of the same class and assignment that is equal as a number
  (else of the same class); with no such folder, or several, it stays as the database has it (and is reported).
* Times: the database holds naive Korea time; the folder's file names are the old filemon's UTC clock, taken a
  moment after the time the database got. A row takes the unused file of its student and file whose time is
  0-2 s after its own and whose length is the row's size. Files no row took are saves the old backend never
  stored (a failed POST was never retried): they are imported too, at their file's time.
* Bad rows (an unreadable class, path or time) are counted with the reason and skipped, never fatal.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import textwrap
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TypeVar

from pydantic import ValidationError

from watcher_core import identity, settings_spec, snapshots, wire
from watcher_core.settings_spec import Setting

from .. import settings
from . import adapter, timezones
from .adapter import Scope
from .schemas import BuildLogCreate, RunLogCreate

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
PROG = "watcher import legacy"
OPTIONS = (
    Setting(
        "database",
        flag="--database",
        required=True,
        parse=settings_spec.path,
        metavar="FILE",
        doc="the old backend's SQLite database (tables `snapshot`, `buildlog`, `runlog`), read only",
    ),
    Setting(
        "snapshots",
        flag="--snapshots",
        parse=settings_spec.path,
        metavar="DIR",
        default_doc="none (saves without contents)",
        doc="the old filemon's snapshot folder, `{class_div}/{hw}/{id}/{filename}/{YYYYMMDD_HHMMSS}{ext}`",
    ),
    settings_spec.pick(
        settings.SETTINGS, "database_url", default_doc=None, doc="this backend's database; created and migrated if new"
    ),
    settings_spec.pick(
        settings.SETTINGS, "snapshot_dir", doc="this backend's snapshot store (filemon's volume); created if missing"
    ),
    Setting("quiet", flag="--quiet", flag_value=True, default=False, doc="no progress lines on stderr"),
)
NODE, SOURCE = "legacy-import", "import"
E = TypeVar("E")  # _valid returns the model it was given
BATCH = 1000
# The old filemon took the file name's time after reading the file, the database's before.
MATCH_WINDOW = timedelta(seconds=2)
TABLES = {  # old table -> the columns read (reference: original-watcher.md 1.2)
    "snapshot": ("class_div", "hw_name", "student_id", "filename", "timestamp", "file_size"),
    "buildlog": (
        "class_div",
        "hw_name",
        "student_id",
        "cwd",
        "binary_path",
        "cmdline",
        "exit_code",
        "target_path",
        "timestamp",
    ),
    "runlog": (
        "class_div",
        "hw_name",
        "student_id",
        "cmdline",
        "exit_code",
        "cwd",
        "target_path",
        "process_type",
        "timestamp",
    ),
}


class BadRow(ValueError):
    """A row (or folder entry) that cannot be imported; the message is the reason, without the value."""


@dataclass
class Report:
    """What the import did, for the summary."""

    rows: Counter = field(default_factory=Counter)  # table -> rows read
    accepted: Counter = field(default_factory=Counter)  # event type -> newly stored
    duplicates: int = 0  # already stored (an earlier import, or posted live)
    with_content: int = 0
    without_content: int = 0
    disk_only: int = 0  # folder files no database row had
    skipped: Counter = field(default_factory=Counter)  # (where, reason) -> count
    examples: dict = field(default_factory=dict)  # (where, reason) -> first example
    ids_padded: dict = field(default_factory=dict)  # (class_div, db id) -> folder id
    ids_ambiguous: dict = field(default_factory=dict)  # (class_div, db id) -> folder ids
    missing_tables: list = field(default_factory=list)

    def skip(self, where: str, reason: str, example: str) -> None:
        self.skipped[(where, reason)] += 1
        self.examples.setdefault((where, reason), example)


# ------------------------------------------------------------------------------------------ the old folder


@dataclass
class FolderFile:
    time: datetime  # aware UTC, from the file name
    path: Path
    used: bool = False


class Folder:
    """The old filemon's snapshot folder, indexed by (class_div, hw, folder id, filename)."""

    def __init__(self, root: Path | None, store: Path, report: Report):
        self.store = store  # where contents go: this backend's snapshot store
        self.files: dict[tuple[str, str, str, str], list[FolderFile]] = {}
        self.ids: dict[tuple[str, str], set[str]] = {}  # (class_div, hw) -> folder ids
        self._ids_seen: dict[tuple[str, str, str], str] = {}
        self.stored: dict[tuple[str, str, str, str], str] = {}  # the sha256 of the last content stored per file
        if root is not None:
            self._scan(root, report)

    def _scan(self, root: Path, report: Report) -> None:
        for class_dir, hw_dir, id_dir, name_dir in _dirs(root, 4):
            for entry in sorted(os.scandir(name_dir), key=lambda e: e.name):
                key = (class_dir.name, hw_dir.name, id_dir.name, name_dir.name)
                stem = entry.name[:15]
                try:
                    if not entry.is_file():
                        raise BadRow("not a file")
                    when = timezones.parse_snapshot_timestamp(stem, timezones.UTC)
                except (BadRow, timezones.LegacyTimeError):
                    report.skip("folder", "file name is not YYYYMMDD_HHMMSS{ext}", str(Path(*key, entry.name)))
                    continue
                self.files.setdefault(key, []).append(FolderFile(when, Path(entry.path)))
                self.ids.setdefault(key[:2], set()).add(key[2])
        for files in self.files.values():
            files.sort(key=lambda f: f.time)

    def student_id(self, class_div: str, hw: str, db_id: str, report: Report) -> str:
        """The folder id a database id stands for (``123`` -> ``000123``), or the database id."""
        key = (class_div, hw, db_id)
        if key not in self._ids_seen:
            self._ids_seen[key] = self._student_id(class_div, hw, db_id, report)
        return self._ids_seen[key]

    def _student_id(self, class_div: str, hw: str, db_id: str, report: Report) -> str:
        if not db_id.isdigit():
            return db_id
        for ids in (
            self.ids.get((class_div, hw), set()),
            {i for (c, _), found in self.ids.items() if c == class_div for i in found},
        ):
            if db_id in ids:
                return db_id
            same = sorted(i for i in ids if i.isdigit() and int(i) == int(db_id))
            if len(same) == 1:
                report.ids_padded[(class_div, db_id)] = same[0]
                return same[0]
            if len(same) > 1:
                report.ids_ambiguous[(class_div, db_id)] = same
                return db_id
        return db_id

    def take(self, key: tuple[str, str, str, str], when: datetime, size: int) -> bytes | None:
        """The content of the unused file that belongs to a database row saved at ``when`` with ``size``."""
        for f in self.files.get(key, ()):
            if f.used or not (when <= f.time <= when + MATCH_WINDOW):
                continue
            data = f.path.read_bytes()
            if len(data) == size:
                f.used = True
                return data
        return None

    def unused(self) -> Iterator[tuple[tuple[str, str, str, str], FolderFile]]:
        for key, files in sorted(self.files.items()):
            for f in files:
                if not f.used:
                    yield key, f


def _dirs(root: Path, depth: int) -> Iterator[tuple[Path, ...]]:
    """Every chain of ``depth`` nested directories below root (class_div/hw/id/filename)."""
    if depth == 0:
        yield ()
        return
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if entry.is_dir(follow_symlinks=False):
            for rest in _dirs(Path(entry.path), depth - 1):
                yield (Path(entry.path), *rest)


# ------------------------------------------------------------------------------------------ rows -> events


def _scope(class_div: str, hw: str, student_id: str) -> Scope:
    try:
        course, section = identity.parse_class_div(class_div)
    except identity.IdentityError:
        raise BadRow("class_div is not {course}-{section}") from None
    if not adapter.ASSIGNMENT_RE.fullmatch(hw or ""):
        raise BadRow("hw_name is not an assignment folder name")
    if not identity.STUDENT_ID_RE.fullmatch(student_id):
        raise BadRow("student_id is not 1-32 letters or digits")
    return Scope(course, section, hw, student_id)


def _kst(value: object) -> datetime:
    """A naive Korea-time DATETIME of the old database -> aware UTC."""
    try:
        naive = datetime.fromisoformat(str(value))
    except ValueError:
        raise BadRow("timestamp is not a date and time") from None
    try:
        return timezones.body_datetime_to_utc(naive, timezones.KST)
    except timezones.LegacyTimeError:
        raise BadRow("timestamp is out of range") from None


def _valid(make: Callable[[], E]) -> E:
    try:
        return make()
    except ValidationError as exc:
        raise BadRow(wire.describe_error(exc).split(";")[0].split(":")[0] + " is invalid") from None


def _imported(event: wire.Event) -> wire.Event:
    # the event_id stays the live API's (so nothing doubles); where it came from is said by node and source
    return event.model_copy(update={"node": NODE, "source": SOURCE})


def snapshot_events(row: dict, folder: Folder, report: Report) -> wire.Event:
    class_div, hw = str(row["class_div"]), str(row["hw_name"])
    sid = folder.student_id(class_div, hw, str(row["student_id"]), report)
    scope = _scope(class_div, hw, sid)
    try:
        path = identity.path_from_legacy_filename(str(row["filename"]))
    except identity.IdentityError:
        raise BadRow("filename is not a path in the assignment") from None
    try:
        when = timezones.parse_snapshot_timestamp(str(row["timestamp"]), timezones.KST)
    except timezones.LegacyTimeError:
        raise BadRow("timestamp is not YYYYMMDD_HHMMSS") from None
    size = row["file_size"]
    if not isinstance(size, int) or size < 0:
        raise BadRow("file_size is not a size")
    event = _valid(lambda: adapter.snapshot_event(scope, path, when, size))
    key = (class_div, hw, sid, str(row["filename"]))
    return _with_content(event, folder.take(key, when, size), key, folder, report)


def _with_content(
    event: wire.FileSave, data: bytes | None, key: tuple[str, str, str, str], folder: Folder, report: Report
) -> wire.Event:
    if data is None:
        report.without_content += 1
        return _imported(event)
    report.with_content += 1
    # Another version of the same file: the store keeps this one as a delta when that is small.
    sha, _ = snapshots.write_snapshot(folder.store, data, previous=folder.stored.get(key))
    folder.stored[key] = sha
    return _imported(event).model_copy(update={"sha256": sha, "size": len(data)})


def log_event(table: str, row: dict, folder: Folder, report: Report) -> wire.Event:
    class_div, hw = str(row["class_div"]), str(row["hw_name"])
    scope = _scope(class_div, hw, folder.student_id(class_div, hw, str(row["student_id"]), report))
    when = _kst(row["timestamp"])
    fields = {k: row[k] for k in TABLES[table] if k not in ("class_div", "hw_name", "student_id")}
    fields["timestamp"] = when
    try:
        if table == "buildlog":
            build = BuildLogCreate.model_validate(fields)
        else:
            run = RunLogCreate.model_validate(fields)
    except ValidationError as exc:
        raise BadRow(wire.describe_error(exc).split(":")[0] + " is invalid") from None
    if table == "buildlog":
        return _imported(_valid(lambda: adapter.build_event(scope, build, when)))
    return _imported(_valid(lambda: adapter.run_event(scope, run, when)))


def disk_only_event(key: tuple[str, str, str, str], f: FolderFile, folder: Folder, report: Report) -> wire.Event:
    class_div, hw, sid, filename = key
    scope = _scope(class_div, hw, sid)
    try:
        path = identity.path_from_legacy_filename(filename)
    except identity.IdentityError:
        raise BadRow("folder name is not a path in the assignment") from None
    data = f.path.read_bytes()
    report.disk_only += 1
    event = _valid(lambda: adapter.snapshot_event(scope, path, f.time, len(data)))
    return _with_content(event, data, key, folder, report)


# ------------------------------------------------------------------------------------------ driver


def old_rows(db: sqlite3.Connection, table: str) -> Iterator[dict]:
    columns = ", ".join(f'"{c}"' for c in TABLES[table])
    for row in db.execute(f'SELECT {columns} FROM "{table}" ORDER BY id'):  # table and column names come from TABLES
        yield dict(zip(TABLES[table], row))


def open_old(path: Path, report: Report) -> tuple[sqlite3.Connection, dict[str, int]]:
    """The old database read-only, and the row count of each old table it has (a missing one is reported)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    present = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    counts = {}
    for table, columns in TABLES.items():
        if table not in present:
            report.missing_tables.append(table)
            continue
        have = {r[1] for r in db.execute(f'PRAGMA table_info("{table}")')}
        lacking = [c for c in columns if c not in have]
        if lacking:
            raise BadRow(
                f"table {table} lacks the old columns {', '.join(lacking)}: is this the old Watcher's database?"
            )
        counts[table] = db.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]
    if not counts:
        raise BadRow(
            "none of the old tables (snapshot, buildlog, runlog) is in it: is this the old Watcher's database?"
        )
    return db, counts


def run_import(
    old_db: Path,
    folder_root: Path | None,
    session,
    store_dir: Path,
    progress: Callable[[int, int], None] = lambda done, total: None,
) -> Report:
    """Import everything; ``session`` is this backend's (migrated) database, ``store_dir`` its snapshot store."""
    from .. import store

    report = Report()
    db, counts = open_old(old_db, report)
    folder = Folder(folder_root, store_dir, report)
    total = sum(counts.values())
    done = 0
    batch: list[wire.Event] = []

    def flush() -> None:
        if batch:
            result = store.ingest(session, batch)
            report.accepted.update(result.accepted_by_type)
            report.duplicates += result.duplicates
            batch.clear()

    def add(where: str, make: Callable[[], wire.Event], example: str) -> None:
        try:
            batch.append(make())
        except BadRow as exc:
            report.skip(where, str(exc), example)
        if len(batch) >= BATCH:
            flush()

    try:
        for table in counts:
            for row in old_rows(db, table):
                report.rows[table] += 1
                example = f"{table} {row['class_div']}/{row['hw_name']}/{row['student_id']}"
                if table == "snapshot":
                    add(table, lambda: snapshot_events(row, folder, report), example)
                else:
                    add(table, lambda: log_event(table, row, folder, report), example)
                done += 1
                if done % 5000 == 0:
                    progress(done, total)
        for key, f in folder.unused():
            add("folder", lambda: disk_only_event(key, f, folder, report), "/".join((*key, f.path.name)))
        flush()
    finally:
        db.close()
    progress(done, total)
    return report


# ------------------------------------------------------------------------------------------ command line


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line naming the option, exit 2
        self.exit(EXIT_USAGE, f"{self.prog}: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="watcher import",
        description="Bring data from another system into Watcher.",
        epilog="Run 'watcher import legacy --help' for the old Watcher's data.",
    )
    sub = parser.add_subparsers(dest="source", metavar="SOURCE", parser_class=_Parser)
    p = sub.add_parser(
        "legacy",
        help="the old Watcher: its backend's SQLite database and its filemon's snapshot folder",
        description=textwrap.fill(
            "Import the old Watcher's snapshot, buildlog and runlog tables and, with --snapshots, the contents "
            "its filemon saved, into this backend's database and snapshot store. Safe to run again: nothing "
            "is stored twice. Student ids the old database kept as integers get their folder's leading zeros "
            "back. Bad rows are counted and skipped. See docs/migration.md.",
            width=78,
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "Exit status: 0 done (skipped rows are reported, not failures); 1 the import failed "
            "(unreadable database, disk full);\n2 bad option.\n"
            "Example: watcher import legacy --database old/watcher.db --snapshots old/snapshots "
            "--database-url sqlite:///data/watcher.db --snapshot-dir data/snapshots"
        ),
    )
    settings_spec.add_arguments(p, OPTIONS)
    return parser


def summary(report: Report) -> list[str]:
    lines = [
        "read "
        + ", ".join(f"{report.rows[t]} {t}" for t in TABLES if t in report.rows)
        + " rows"
        + (f" (no {', '.join(report.missing_tables)} table)" if report.missing_tables else "")
    ]
    stored = sum(report.accepted.values())
    kinds = ", ".join(f"{report.accepted[t]} {t}" for t in wire.EVENT_TYPES if report.accepted.get(t))
    lines.append(f"stored {stored} new events ({kinds or 'none'}); {report.duplicates} were already stored")
    lines.append(
        f"saves with their content: {report.with_content}; without: {report.without_content}"
        + (
            f"; {report.disk_only} saves only in the folder (the old backend never got them) were added"
            if report.disk_only
            else ""
        )
    )
    if report.ids_padded:
        shown = ", ".join(f"{db}->{fid}" for (_, db), fid in sorted(report.ids_padded.items())[:5])
        lines.append(f"{len(report.ids_padded)} integer student ids took their folder's leading zeros ({shown})")
    for (class_div, db), ids in sorted(report.ids_ambiguous.items()):
        lines.append(f"student id {db} of {class_div} matches several folders ({', '.join(ids)}): kept as {db}")
    for (where, reason), n in sorted(report.skipped.items()):
        lines.append(f"skipped {n} {where} rows: {reason} (e.g. {report.examples[(where, reason)]})")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a bad option (2, already said on one line)
        return int(exc.code or 0)
    if args.source is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        opts = settings_spec.resolve(OPTIONS, args)
    except settings_spec.SettingsError as exc:
        sys.stderr.write(f"{PROG}: {exc}\n")
        return EXIT_USAGE
    old_db = opts.database
    if not old_db.is_file():
        sys.stderr.write(f"{PROG}: --database: {old_db} is not a file\n")
        return EXIT_USAGE
    folder = opts.snapshots
    if folder is not None and not folder.is_dir():
        sys.stderr.write(f"{PROG}: --snapshots: {folder} is not a directory\n")
        return EXIT_USAGE
    url = opts.database_url
    store_dir = opts.snapshot_dir

    from sqlalchemy.exc import ArgumentError, SQLAlchemyError
    from sqlmodel import Session

    from .. import migrate
    from ..db import make_engine

    try:
        engine = make_engine(url)
    except (ArgumentError, ValueError) as exc:
        sys.stderr.write(f"{PROG}: --database-url: {exc}\n")
        return EXIT_USAGE

    def progress(done: int, total: int) -> None:
        if not opts.quiet:
            sys.stderr.write(f"{PROG}: {done}/{total} rows ({100 * done // max(total, 1)}%)\n")
            sys.stderr.flush()

    try:
        store_dir.mkdir(parents=True, exist_ok=True)
        migrate.upgrade(engine)
        with Session(engine) as session:
            report = run_import(old_db, folder, session, store_dir, progress)
    except BadRow as exc:
        sys.stderr.write(f"{PROG}: --database: {exc}\n")
        return EXIT_FAILED
    except sqlite3.Error as exc:
        sys.stderr.write(f"{PROG}: --database: cannot read {old_db}: {exc}\n")
        return EXIT_FAILED
    except SQLAlchemyError as exc:
        sys.stderr.write(f"{PROG}: --database-url: database error: {str(exc).splitlines()[0][:300]}\n")
        return EXIT_FAILED
    except OSError as exc:
        sys.stderr.write(f"{PROG}: import failed: {exc}\n")
        return EXIT_FAILED
    finally:
        engine.dispose()
    for line in summary(report):
        sys.stderr.write(f"{PROG}: {line}\n")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
