"""``watcher outbox``: look at an agent's outbox and bring dead-lettered events back.

    watcher outbox status                               # queued, dead-lettered, and who has the most queued
    watcher outbox dead-letters list                    # in the agent's pod: kubectl exec ds/watcher-filemon -- ...
    watcher outbox dead-letters requeue --all           # after the backend was fixed or upgraded
    watcher outbox dead-letters requeue --event-id ID ...

The outbox is the agent's SQLite database in its state directory (``--state-dir``, else
``WATCHER_STATE_DIR``, which the DaemonSets set; else ``/var/lib/watcher/<--agent>``). A running agent
may keep running: it sends requeued events within its next idle wait.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from watcher_agents import config
from watcher_agents.delivery.outbox import Outbox
from watcher_core import settings_spec
from watcher_core.settings_spec import Setting, Subcommand

STATUS = Subcommand(
    "outbox status", "events queued and dead-lettered, and the students with the most events queued, as JSON"
)
LIST = Subcommand(
    "outbox dead-letters list",
    "the dead letters, newest first, one JSON object per line (`event_id`, `type`, `dead_at`, `error`, `event`)",
    (
        Setting(
            "limit",
            flag="--limit",
            default=100,
            parse=settings_spec.whole_number(1),
            metavar="N",
            doc="at most this many",
        ),
    ),
)
REQUEUE = Subcommand(
    "outbox dead-letters requeue",
    "put dead letters back in the queue, oldest first (after the backend was fixed or upgraded)",
    (
        Setting(
            "all",
            flag="--all",
            flag_value=True,
            default=False,
            required=True,
            exclusive="which",
            default_doc="this or `--event-id` is required",
            doc="every dead letter",
        ),
        Setting(
            "event_ids",
            flag="--event-id",
            parse=lambda raw: (raw.strip(),),
            repeatable=True,
            required=True,
            exclusive="which",
            metavar="ID",
            default=(),
            default_doc="this or `--all` is required",
            doc="this dead letter",
        ),
    ),
)
SHARED = (
    settings_spec.pick(
        config.TABLE,
        "state_dir",
        default=None,
        default_doc="`/var/lib/watcher/<agent>`",
        doc="the agent's state directory, which holds `outbox.sqlite3`",
    ),
    Setting(
        "agent",
        flag="--agent",
        default="filemon",
        parse=settings_spec.one_of(("filemon", "procmon")),
        metavar="NAME",
        doc="`filemon` or `procmon`: whose default state directory",
    ),
)
TABLE = (STATUS, LIST, REQUEUE, *SHARED)

MOST_QUEUED = 5  # students shown by `watcher outbox status`


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="watcher outbox", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="what", required=True, metavar="{dead-letters,status}")
    settings_spec.add_subcommand(sub, STATUS, *SHARED)
    dead = sub.add_parser("dead-letters", help="events the backend refused for good")
    dead_sub = dead.add_subparsers(dest="action", required=True, metavar="{list,requeue}")
    for subcommand in (LIST, REQUEUE):
        settings_spec.add_subcommand(dead_sub, subcommand, *SHARED)
    return p


def _outbox_path(opts: settings_spec.Resolved) -> Path:
    state_dir = opts.state_dir or Path(config.DEFAULT_STATE_DIR.format(agent=opts.agent))
    return state_dir / "outbox.sqlite3"


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    subcommand = STATUS if args.what == "status" else LIST if args.action == "list" else REQUEUE
    try:
        opts = settings_spec.resolve((*subcommand.settings, *SHARED), args)
    except settings_spec.SettingsError as exc:
        sys.stderr.write(f"watcher outbox: {exc}\n")
        return 2
    path = _outbox_path(opts)
    if not path.exists():
        sys.stderr.write(f"watcher outbox: no outbox at {path}; give the agent's --state-dir\n")
        return 2
    with Outbox(path) as outbox:
        if args.what == "status":
            print(
                json.dumps(
                    {
                        "outbox": str(path),
                        "queued": outbox.depth(),
                        "dead_letters": outbox.dead_letter_count(),
                        # a flood shows here: the outbox serves students in turn, so it delays only its own
                        "most_queued": [
                            {"student": student or None, "events": n}
                            for student, n in outbox.queued_by_student(MOST_QUEUED)
                        ],
                    }
                )
            )
        elif args.action == "list":
            for d in outbox.dead_letters(limit=opts.limit):
                event = d["event"]
                print(
                    json.dumps(
                        {
                            "event_id": d["event_id"],
                            "type": event.get("type"),
                            "dead_at": datetime.fromtimestamp(d["dead_at"], UTC).isoformat(),
                            "error": d["error"],
                            "event": event,
                        },
                        ensure_ascii=False,
                    )
                )
        else:
            moved = outbox.requeue_dead_letters(None if opts.all else list(opts.event_ids))
            print(f"requeued {moved} event(s); {outbox.dead_letter_count()} dead letter(s) left", file=sys.stderr)
    return 0
