"""``watcher export``: write research datasets from the event store.

Reads the backend's database directly (read-only SELECTs) and its snapshot store, so it needs no running
server and no token; run it where the database and the snapshot volume are reachable (e.g. ``kubectl exec``
into the backend pod). See docs/export.md.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import os
import shutil
import sys
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from watcher_core import identity

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
DEFAULT_DATABASE_URL = "sqlite:///data/watcher.db"
DEFAULT_SNAPSHOT_DIR = "data/snapshots"
PSEUDONYM_ENV = "WATCHER_EXPORT_PSEUDONYMIZE_KEY"


class UsageError(Exception):
    """A bad option: the message starts with the option's name."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line naming the option, exit 2 (argparse's default prints usage too)
        self.exit(EXIT_USAGE, f"{self.prog}: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="watcher export",
        description="Export research datasets from the Watcher event store.",
        epilog="Run 'watcher export progsnap2 --help' for the ProgSnap2 options.",
    )
    sub = parser.add_subparsers(dest="format", metavar="FORMAT", parser_class=_Parser)
    p = sub.add_parser(
        "progsnap2",
        help="a ProgSnap2 dataset (MainTable.csv, DatasetMetadata.csv, CodeStates/)",
        description=textwrap.fill(
            "Write a ProgSnap2 dataset (CSSPLICE standard) of saves, deletes, compiles and runs: MainTable.csv, "
            "DatasetMetadata.csv, CodeStates/<CodeStateID>/ (Directory representation: the student's whole "
            "assignment folder after each event, copied from the snapshot store), LinkTables/LoggingErrors.csv "
            "and a README.md describing the mapping. Reads the database directly (no server or token needed). "
            "Progress goes to stderr every 1000 events.",
            width=78,
        ),
        epilog=(
            "Exit status: 0 done; 1 the export failed (database unreachable, disk full); 2 bad option.\n"
            "Example: watcher export progsnap2 --database-url postgresql://watcher@db/watcher "
            "--snapshot-dir /data/snapshots --out ./os-2025 --course os --since 2025-03-01"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--database-url",
        metavar="URL",
        help=f"the backend's database, sqlite:///PATH or postgresql://... "
        f"(env WATCHER_DATABASE_URL; default {DEFAULT_DATABASE_URL})",
    )
    p.add_argument(
        "--snapshot-dir",
        metavar="DIR",
        help=f"the backend's snapshot store, for file contents "
        f"(env WATCHER_SNAPSHOT_DIR; default {DEFAULT_SNAPSHOT_DIR})",
    )
    p.add_argument(
        "--out",
        metavar="DIR",
        required=True,
        help="where to write the dataset; created if missing, must be empty unless --force",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="write into a non-empty --out directory (replaces the dataset files and CodeStates/)",
    )
    p.add_argument("--course", metavar="C", help="only this course (e.g. os, data-structure)")
    p.add_argument("--section", metavar="S", help="only this section of --course (e.g. 1)")
    p.add_argument("--assignment", metavar="A", help="only this assignment of --course (e.g. hw1)")
    p.add_argument("--student", metavar="ID", help="only this student id (a string: 000123 keeps its zeros)")
    p.add_argument(
        "--since",
        metavar="TIME",
        help="only events at or after TIME: ISO 8601 (2025-03-01T09:00:00+09:00) or a date (2025-03-01); "
        "without an offset it is UTC",
    )
    p.add_argument("--until", metavar="TIME", help="only events before TIME (same forms as --since)")
    p.add_argument(
        "--pseudonymize-key",
        metavar="KEY",
        help=f"replace student ids by HMAC-SHA256(KEY, id) pseudonyms in SubjectID (env {PSEUDONYM_ENV}); "
        "keep the key secret and reuse it to link exports",
    )
    p.add_argument(
        "--with-argv",
        action="store_true",
        help="add the command lines of compiles and runs (X-Argv); they may contain secrets",
    )
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return parser


# ------------------------------------------------------------------------------------------ options


def parse_time(option: str, text: str) -> datetime:
    raw = text.strip()
    try:
        if len(raw) == 10:
            value = datetime.strptime(raw, "%Y-%m-%d")
        else:
            value = datetime.fromisoformat(raw[:-1] + "+00:00" if raw.endswith(("Z", "z")) else raw)
    except ValueError:
        raise UsageError(
            f"{option}: {text!r} is not a time; use ISO 8601 (2025-03-01T09:00:00+09:00) or a date (2025-03-01)"
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def check_options(args: argparse.Namespace, env: dict[str, str]) -> dict[str, Any]:
    """Validate and resolve the options; raises UsageError naming the first bad one."""
    if args.section and not args.course:
        raise UsageError("--section: needs --course (a section number means nothing without its course)")
    if args.assignment and not args.course:
        raise UsageError("--assignment: needs --course (hw1 exists in every course)")
    if args.course and not identity.COURSE_RE.fullmatch(args.course):
        raise UsageError(f"--course: {args.course!r} must be letters, digits, '-' or '_'")
    if args.section and not identity.SECTION_RE.fullmatch(args.section):
        raise UsageError(f"--section: {args.section!r} must be 1-16 letters or digits")
    if args.assignment and not (0 < len(args.assignment) <= 64):
        raise UsageError("--assignment: must be 1-64 characters")
    if args.student and not identity.STUDENT_ID_RE.fullmatch(args.student):
        raise UsageError(f"--student: {args.student!r} must be 1-32 letters or digits")
    since = parse_time("--since", args.since) if args.since else None
    until = parse_time("--until", args.until) if args.until else None
    if since and until and until <= since:
        raise UsageError("--until: must be after --since")

    database_url = args.database_url or env.get("WATCHER_DATABASE_URL") or DEFAULT_DATABASE_URL
    if not (database_url.startswith("sqlite") or database_url.startswith("postgres")):
        raise UsageError(
            f"--database-url: must start with sqlite:/// or postgresql:// (got {database_url.split(':', 1)[0]!r})"
        )
    if database_url.startswith("sqlite:///") and not database_url.startswith("sqlite:///:memory:"):
        db_file = Path(database_url[len("sqlite:///") :])
        if not db_file.is_file():
            raise UsageError(f"--database-url: SQLite database {db_file} does not exist")

    snapshot_dir = Path(args.snapshot_dir or env.get("WATCHER_SNAPSHOT_DIR") or DEFAULT_SNAPSHOT_DIR)
    if not snapshot_dir.is_dir():
        raise UsageError(f"--snapshot-dir: {snapshot_dir} is not a directory")

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out: {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not args.force:
        raise UsageError(f"--out: {out} is not empty (choose a new directory, or pass --force to write into it)")

    key = args.pseudonymize_key if args.pseudonymize_key is not None else env.get(PSEUDONYM_ENV)
    if key is not None and len(key) < 16:
        raise UsageError("--pseudonymize-key: must be at least 16 characters (it is what protects the ids)")
    return {
        "database_url": database_url,
        "snapshot_dir": snapshot_dir,
        "out": out,
        "since": since,
        "until": until,
        "key": key,
    }


def pseudonymizer(key: str | None):
    if key is None:
        return lambda sid: sid
    secret = key.encode()
    return lambda sid: "S" + hmac.new(secret, sid.encode(), hashlib.sha256).hexdigest()[:20]


# ------------------------------------------------------------------------------------------ reading


def iter_events(
    engine, *, course=None, section=None, assignment=None, student=None, since=None, until=None, batch: int = 1000
) -> Iterator[dict[str, Any]]:
    """Stored events, by student then time, as ``store.event_dict`` dicts; streamed in batches."""
    from sqlalchemy import select

    from .. import store

    table = store.EVENT
    q = select(table)
    for column, value in (
        ("course", course),
        ("section", section),
        ("assignment", assignment),
        ("student_id", student),
    ):
        if value is not None:
            q = q.where(table.c[column] == value)
    if since is not None:
        q = q.where(table.c.timestamp >= since)
    if until is not None:
        q = q.where(table.c.timestamp < until)
    q = q.order_by(table.c.student_id, table.c.timestamp, table.c.id)
    with engine.connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=batch).execute(q)
        for row in result:
            yield store.event_dict(row)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a bad option (2, already reported on one line)
        return int(exc.code or 0)
    if args.format is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    prog = "watcher export progsnap2"
    try:
        opts = check_options(args, dict(os.environ))
    except UsageError as exc:
        sys.stderr.write(f"{prog}: {exc}\n")
        return EXIT_USAGE

    from sqlalchemy import inspect
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    from ..db import make_engine
    from . import progsnap2

    try:
        engine = make_engine(opts["database_url"])
    except (ArgumentError, ValueError) as exc:
        sys.stderr.write(f"{prog}: --database-url: {exc}\n")
        return EXIT_USAGE
    except ModuleNotFoundError as exc:
        sys.stderr.write(f"{prog}: --database-url: the driver is not installed ({exc.name})\n")
        return EXIT_USAGE
    try:
        stale = opts["out"] / "CodeStates"
        if args.force and stale.is_dir():  # folders of an earlier export would look like part of this one
            shutil.rmtree(stale)
        if not inspect(engine).has_table("event"):
            sys.stderr.write(
                f"{prog}: --database-url: no 'event' table; is this a Watcher database? (start the backend once to create it)\n"
            )
            return EXIT_FAILED

        def progress(stats: progsnap2.ExportStats) -> None:
            if not args.quiet:
                sys.stderr.write(f"{prog}: {stats.events} events, {stats.rows} rows, {stats.code_states} code states\n")
                sys.stderr.flush()

        events = iter_events(
            engine,
            course=args.course,
            section=args.section,
            assignment=args.assignment,
            student=args.student,
            since=opts["since"],
            until=opts["until"],
        )
        stats = progsnap2.write_dataset(
            events,
            opts["out"],
            opts["snapshot_dir"],
            subject_id=pseudonymizer(opts["key"]),
            with_argv=args.with_argv,
            progress=progress,
        )
    except SQLAlchemyError as exc:
        sys.stderr.write(f"{prog}: --database-url: database error: {str(exc).splitlines()[0][:300]}\n")
        return EXIT_FAILED
    except OSError as exc:
        sys.stderr.write(f"{prog}: export failed: {exc}\n")
        return EXIT_FAILED
    finally:
        engine.dispose()
    sys.stderr.write(
        f"{prog}: wrote {stats.rows} rows from {stats.events} events, {stats.code_states} code states "
        f"({stats.files_copied} files) to {opts['out']}"
        + (
            f"; {stats.missing_snapshots} contents were missing from {opts['snapshot_dir']}"
            if stats.missing_snapshots
            else ""
        )
        + "\n"
    )
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
