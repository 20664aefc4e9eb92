"""``watcher tokens``: named read and admin tokens, made, listed and revoked on the backend's database.

    watcher tokens create --name ta-os-1 --course os/1 --expires-in-days 120
    watcher tokens create --name prof-os --course os            # every section of os
    watcher tokens create --name ops --scope admin --expires-in-days 30
    watcher tokens list
    watcher tokens revoke --name ta-os-1

``create`` prints the secret (``wtk_...``) once on stdout, and what it grants on stderr: only its sha256
is stored. Run it where the database is (``kubectl exec`` into the backend), or use the admin API
(``/api/v1/admin/tokens``, docs/api.md), which does the same. The environment tokens keep working.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime, timedelta

from sqlalchemy import inspect
from sqlmodel import Session

from watcher_core import settings_spec
from watcher_core.settings_spec import Setting, Subcommand

from . import settings, tokens
from .db import make_engine, normalise_url
from .models import TOKEN_TABLE as TOKEN

DATABASE_URL = settings_spec.pick(settings.SETTINGS, "database_url", default_doc=None, doc="the database")
NAME = Setting(
    "name",
    flag="--name",
    required=True,
    metavar="NAME",
    doc="the token's name, e.g. `ta-os-1` (1-64 letters, digits, `_.@-`; never reused)",
)
SUBCOMMANDS = (
    Subcommand(
        "tokens create",
        "make a named token and print its secret once (only its sha256 is stored)",
        (
            NAME,
            Setting(
                "scope",
                flag="--scope",
                default="read",
                parse=settings_spec.one_of(tokens.SCOPES),
                doc="`read` (the courses given) or `admin` (every course, and the admin routes)",
            ),
            Setting(
                "courses",
                flag="--course",
                repeatable=True,
                default=(),
                parse=settings_spec.csv,
                metavar="COURSE[/SECTION]",
                doc="what a read token may read: `os` (every section) or `os/1` (one)",
            ),
            Setting(
                "every_course",
                flag="--every-course",
                flag_value=True,
                default=False,
                doc="a read token that reads every course (instead of `--course`)",
            ),
            Setting(
                "expires_in_days",
                flag="--expires-in-days",
                parse=settings_spec.whole_number(1, 3660),
                metavar="DAYS",
                default_doc="never",
                doc="the token stops working this many days from now",
            ),
        ),
    ),
    Subcommand(
        "tokens list",
        "every named token: scope, courses, created, expires, last used (to the minute), revoked, state",
        (
            Setting(
                "json", flag="--json", flag_value=True, default=False, doc="one JSON object per line instead of a table"
            ),
        ),
    ),
    Subcommand("tokens revoke", "revoke a named token at once (the next request with it is a 401 saying so)", (NAME,)),
)
TABLE = (*SUBCOMMANDS, DATABASE_URL)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="watcher tokens", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="what", required=True, metavar="{create,list,revoke}")
    for subcommand in SUBCOMMANDS:
        settings_spec.add_subcommand(sub, subcommand, DATABASE_URL)
    return p


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value else "-"


def table(rows: list[tokens.Token], now: datetime) -> str:
    """The listing, one token a line (times in UTC, to the minute)."""
    head = ("NAME", "SCOPE", "COURSES", "CREATED", "EXPIRES", "LAST USED", "STATE")
    lines = [head]
    for t in rows:
        courses = "every course" if t.grants is None else ",".join(str(g) for g in t.grants)
        when = _when(t.revoked_at) if t.revoked_at else ""
        state = t.state(now) + (f" {when}" if when else "")
        lines.append((t.name, t.scope, courses, _when(t.created_at), _when(t.expires_at), _when(t.last_used_at), state))
    widths = [max(len(row[i]) for row in lines) for i in range(len(head))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in lines)


def run(what: str, opts: settings_spec.Resolved, session: Session, now: datetime) -> int:
    if what == "create":
        expires = now + timedelta(days=opts.expires_in_days) if opts.expires_in_days else None
        made, secret = tokens.create(
            session,
            opts.name,
            opts.scope,
            opts.courses,
            every_course=opts.every_course,
            expires_at=expires,
            now=now,
        )
        courses = "every course" if made.grants is None else ", ".join(str(g) for g in made.grants)
        print(secret)
        print(
            f"token {made.name!r} ({made.scope}: {courses}; expires {_when(made.expires_at)} UTC). "
            "The secret above is shown this once.",
            file=sys.stderr,
        )
    elif what == "list":
        rows = tokens.list_tokens(session)
        if opts.json:
            for t in rows:
                print(json.dumps(t.as_dict(now), default=lambda v: v.isoformat().replace("+00:00", "Z")))
        else:
            print(table(rows, now))
    else:
        revoked = tokens.revoke(session, opts.name, now)
        if revoked is None:
            print(f"watcher tokens revoke: no token named {opts.name!r}", file=sys.stderr)
            return 1
        print(f"token {revoked.name!r} revoked at {_when(revoked.revoked_at)} UTC", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    subcommand = next(s for s in SUBCOMMANDS if s.name == f"tokens {args.what}")
    try:
        opts = settings_spec.resolve((*subcommand.settings, DATABASE_URL), args)
    except settings_spec.SettingsError as exc:
        print(f"watcher tokens {args.what}: {exc}", file=sys.stderr)
        return 2
    engine = make_engine(normalise_url(opts.database_url))
    try:
        if not inspect(engine).has_table(TOKEN.name):  # never migrate under a running backend of another version
            print(
                f"watcher tokens {args.what}: the database has no {TOKEN.name} table yet: start this version's "
                "backend on it, or run `watcher db upgrade`",
                file=sys.stderr,
            )
            return 1
        with Session(engine) as session:
            return run(args.what, opts, session, datetime.now(UTC))
    except tokens.TokenError as exc:
        print(f"watcher tokens {args.what}: {exc}", file=sys.stderr)
        return 2 if not isinstance(exc, tokens.Conflict) else 1
    except Exception as exc:  # the database is unreachable, the disk is full: one line, not a traceback
        first = str(exc).splitlines()[0] if str(exc) else ""
        print(f"watcher tokens {args.what}: {type(exc).__name__}: {first}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
