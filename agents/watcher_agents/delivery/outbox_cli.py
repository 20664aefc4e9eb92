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
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

from watcher_agents import config
from watcher_agents.delivery.outbox import Outbox

MOST_QUEUED = 5  # students shown by `watcher outbox status`


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="watcher outbox", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="what", required=True, metavar="{dead-letters,status}")
    status = sub.add_parser(
        "status", help="events queued and dead-lettered, and the students with the most events queued"
    )
    dead = sub.add_parser("dead-letters", help="events the backend refused for good")
    dead_sub = dead.add_subparsers(dest="action", required=True, metavar="{list,requeue}")
    listing = dead_sub.add_parser("list", help="one JSON object per line, newest first")
    listing.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    requeue = dead_sub.add_parser("requeue", help="put dead letters back in the queue, oldest first")
    which = requeue.add_mutually_exclusive_group(required=True)
    which.add_argument("--all", action="store_true", help="every dead letter")
    which.add_argument("--event-id", action="append", metavar="ID", help="this event (repeatable)")
    for parser in (status, listing, requeue):
        parser.add_argument("--state-dir", type=Path, help="the agent's state directory [WATCHER_STATE_DIR]")
        parser.add_argument(
            "--agent",
            choices=("filemon", "procmon"),
            default="filemon",
            help="whose default state directory (default filemon)",
        )
    return p


def _outbox_path(args) -> Path:
    state_dir = args.state_dir or Path(
        os.environ.get("WATCHER_STATE_DIR") or config.DEFAULT_STATE_DIR.format(agent=args.agent)
    )
    return state_dir / "outbox.sqlite3"


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    path = _outbox_path(args)
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
            for d in outbox.dead_letters(limit=max(1, args.limit)):
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
            moved = outbox.requeue_dead_letters(None if args.all else args.event_id)
            print(f"requeued {moved} event(s); {outbox.dead_letter_count()} dead letter(s) left", file=sys.stderr)
    return 0
