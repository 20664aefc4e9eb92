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
import re
import shutil
import sys
import textwrap
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from watcher_core import __version__, identity, settings_spec
from watcher_core.settings_spec import Setting

from .. import settings

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def parse_time(raw: str) -> datetime:
    text = raw.strip()
    try:
        if len(text) == 10:
            value = datetime.strptime(text, "%Y-%m-%d")
        else:
            value = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
    except ValueError:
        raise ValueError("is not a time; use ISO 8601 (2025-03-01T09:00:00+09:00) or a date (2025-03-01)") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _matching(rule, what: str):
    def parse(raw: str) -> str:
        if not rule.fullmatch(raw):
            raise ValueError(f"must be {what}")
        return raw

    return parse


TERM_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._-]{0,31}")


def _assignment(raw: str) -> str:
    if not 0 < len(raw) <= 64:
        raise ValueError("must be 1-64 characters")
    return raw


OPTIONS = (
    settings_spec.pick(
        settings.SETTINGS,
        "database_url",
        doc="the backend's database (`sqlite:///PATH`, which must exist, or `postgresql://…`)",
        default_doc=None,
    ),
    settings_spec.pick(settings.SETTINGS, "snapshot_dir", doc="the backend's snapshot store (must exist)"),
    Setting(
        "out",
        flag="--out",
        required=True,
        parse=settings_spec.path,
        metavar="DIR",
        doc="the output directory; created if missing; must be empty unless `--force`",
    ),
    Setting(
        "force",
        flag="--force",
        flag_value=True,
        default=False,
        doc="write into a non-empty `--out` (the dataset files and `CodeStates/` are replaced)",
    ),
    Setting(
        "course",
        flag="--course",
        parse=_matching(identity.COURSE_RE, "letters, digits, '-' or '_'"),
        metavar="C",
        default_doc="all",
        doc="only this course",
    ),
    Setting(
        "section",
        flag="--section",
        parse=_matching(identity.SECTION_RE, "1-16 letters or digits"),
        metavar="S",
        default_doc="all",
        doc="only this section (needs `--course`)",
    ),
    Setting(
        "assignment",
        flag="--assignment",
        parse=_assignment,
        metavar="A",
        default_doc="all",
        doc="only this assignment (needs `--course`)",
    ),
    Setting(
        "student",
        flag="--student",
        parse=_matching(identity.STUDENT_ID_RE, "1-32 letters or digits"),
        metavar="ID",
        default_doc="all",
        doc="only this student id (a string: `000123` keeps its zeros)",
    ),
    Setting(
        "since",
        flag="--since",
        parse=parse_time,
        metavar="TIME",
        doc="events at or after TIME: ISO 8601 (`2025-03-01T09:00:00+09:00`) or a date (`2025-03-01`); no offset = UTC",
    ),
    Setting("until", flag="--until", parse=parse_time, metavar="TIME", doc="events before TIME (the same forms)"),
    Setting(
        "term",
        flag="--term",
        parse=_matching(TERM_RE, "1-32 letters, digits, spaces, '.', '_' or '-' (e.g. 'Spring 2025' or 2025-1)"),
        metavar="TERM",
        default_doc="none",
        doc="the term of the exported course (`TermID`, also in `CourseSectionID` as `<course>-<section>@TERM`: "
        "ProgSnap2 sections must not share ids across terms)",
    ),
    settings_spec.pick(
        settings.SETTINGS,
        "idle_gap_seconds",
        flag="--idle-gap-seconds",
        metavar="S",
        doc="a gap longer than this between a student's events on an assignment starts a new `SessionID`; "
        "the backend's time-on-task setting, so sessions are the runs of counted time",
    ),
    Setting(
        "key",
        flag="--pseudonymize-key",
        env="WATCHER_EXPORT_PSEUDONYMIZE_KEY",
        redact=True,
        parse=settings_spec.min_length(16, "it is what protects the ids"),
        metavar="KEY",
        default_doc="off",
        doc="`SubjectID` = HMAC-SHA256(KEY, student id) pseudonym, and EventIDs keyed the same way; keep it "
        "secret, reuse it to link exports. "
        "Prefer the variable: a flag is visible in `ps`",
    ),
    Setting(
        "with_argv",
        flag="--with-argv",
        flag_value=True,
        default=False,
        doc="add the command lines of compiles and runs (`X-Argv`); off because argv may contain secrets",
    ),
    Setting("quiet", flag="--quiet", flag_value=True, default=False, doc="no progress lines on stderr"),
)


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
    settings_spec.add_arguments(p, OPTIONS)
    return parser


# ------------------------------------------------------------------------------------------ options


def check_options(args: argparse.Namespace, env: Mapping[str, str]) -> settings_spec.Resolved:
    """The options, resolved and checked together; SettingsError or UsageError names the first bad one."""
    opts = settings_spec.resolve(OPTIONS, args, env)
    if opts.section and not opts.course:
        raise UsageError("--section: needs --course (a section number means nothing without its course)")
    if opts.assignment and not opts.course:
        raise UsageError("--assignment: needs --course (hw1 exists in every course)")
    if opts.since and opts.until and opts.until <= opts.since:
        raise UsageError("--until: must be after --since")
    url = opts.database_url
    if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
        db_file = Path(url[len("sqlite:///") :])
        if not db_file.is_file():
            raise UsageError(f"--database-url: SQLite database {db_file} does not exist")
    if not opts.snapshot_dir.is_dir():
        raise UsageError(f"--snapshot-dir: {opts.snapshot_dir} is not a directory")
    out = opts.out
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out: {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not opts.force:
        raise UsageError(f"--out: {out} is not empty (choose a new directory, or pass --force to write into it)")
    return opts


def pseudonymizer(key: str | None):
    if key is None:
        return lambda sid: sid
    secret = key.encode()
    return lambda sid: "S" + hmac.new(secret, sid.encode(), hashlib.sha256).hexdigest()[:20]


def event_pseudonymizer(key: str | None):
    """EventIDs under the same key: a stored EventID is a plain hash of facts that can include the student id
    (the old API's) or paths, so it could be matched by guessing; keyed, it cannot. Domain-separated from
    the SubjectIDs, stable across exports with the same key."""
    if key is None:
        return lambda eid: eid
    secret = key.encode()
    return lambda eid: "E" + hmac.new(secret, b"event\x00" + eid.encode(), hashlib.sha256).hexdigest()[:32]


def provenance(opts: settings_spec.Resolved, now: datetime | None = None) -> dict[str, str]:
    """How the dataset was made, for DatasetMetadata (``X-`` properties) and the README: the tool, the
    filters and window, and what was done to the ids. Never the key itself."""

    def when(value: datetime | None) -> str:
        return value.isoformat(timespec="seconds") if value is not None else ""

    return {
        "ExportedBy": f"JCode Watcher {__version__} (watcher export progsnap2)",
        "ExportedAt": when(now or datetime.now(UTC)),
        "FilterCourse": opts.course or "",
        "FilterSection": opts.section or "",
        "FilterAssignment": opts.assignment or "",
        # The student filter as it appears in SubjectID: the pseudonym when ids are pseudonymised.
        "FilterStudent": pseudonymizer(opts["key"])(opts.student) if opts.student else "",
        "Since": when(opts["since"]),
        "Until": when(opts["until"]),
        "Term": opts.term or "",
        "IdleGapSeconds": str(opts.idle_gap_seconds),
        "SubjectIDs": "pseudonymised: S + the first 20 hex digits of HMAC-SHA256(key, student id)"
        if opts["key"]
        else "the institution's student ids (not pseudonymised)",
        "EventIDs": "pseudonymised with the same key (HMAC-SHA256)" if opts["key"] else "as stored by Watcher",
        "CommandLines": "included (X-Argv)" if opts.with_argv else "left out",
    }


# ------------------------------------------------------------------------------------------ reading


def iter_events(
    engine, *, course=None, section=None, assignment=None, student=None, since=None, until=None, batch: int = 1000
) -> Iterator[dict[str, Any]]:
    """Stored events, by student then time, as ``store.event_dict`` dicts; streamed in batches. With
    ``since``, also the file events before it (saves, deletes, files over the limit)."""
    from sqlalchemy import or_, select

    from .. import store
    from . import progsnap2

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
        # File events before the window come too (the writer only folds them into the folders), so the
        # window's CodeStates hold the files saved before it.
        q = q.where(or_(table.c.timestamp >= since, table.c.type.in_(progsnap2.FILE_EVENT_TYPES)))
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
        opts = check_options(args, os.environ)
    except (UsageError, settings_spec.SettingsError) as exc:
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
        if opts.force and stale.is_dir():  # folders of an earlier export would look like part of this one
            shutil.rmtree(stale)
        if not inspect(engine).has_table("event"):
            sys.stderr.write(
                f"{prog}: --database-url: no 'event' table; is this a Watcher database? (start the backend once to create it)\n"
            )
            return EXIT_FAILED

        def progress(stats: progsnap2.ExportStats) -> None:
            if not opts.quiet:
                sys.stderr.write(f"{prog}: {stats.events} events, {stats.rows} rows, {stats.code_states} code states\n")
                sys.stderr.flush()

        events = iter_events(
            engine,
            course=opts.course,
            section=opts.section,
            assignment=opts.assignment,
            student=opts.student,
            since=opts["since"],
            until=opts["until"],
        )
        stats = progsnap2.write_dataset(
            events,
            opts["out"],
            opts["snapshot_dir"],
            subject_id=pseudonymizer(opts["key"]),
            event_id=event_pseudonymizer(opts["key"]),
            with_argv=opts.with_argv,
            term=opts.term,
            idle_gap_seconds=opts.idle_gap_seconds,
            since=opts["since"],
            provenance=provenance(opts),
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
