"""``watcher status``: what a running backend has stored, which agents report, and their backlogs."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import httpx

from watcher_local.tables import ago, local_time, render


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="watcher status",
        description="Show events stored by type, the agents seen per node with their last report, and their "
        "outbox backlogs, for a running local or remote backend.",
    )
    p.add_argument(
        "--backend-url",
        default=os.environ.get("WATCHER_BACKEND_URL", "http://127.0.0.1:3000"),
        help="backend to ask (env WATCHER_BACKEND_URL; default http://127.0.0.1:3000)",
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="a 'watcher local' data directory: its tokens.json supplies the read token",
    )
    p.add_argument(
        "--token-file",
        type=Path,
        default=None,
        help="file holding a read token (env WATCHER_READ_TOKEN or WATCHER_READ_TOKEN_FILE)",
    )
    p.add_argument("--json", action="store_true", help="print the raw JSON answer")
    return p


def read_token(args) -> str | None:
    """Flags first (--token-file, --data-dir), then the environment, then ./watcher-data if present."""
    if args.token_file:
        return args.token_file.read_text().strip()
    if args.data_dir:
        return json.loads((args.data_dir / "tokens.json").read_text())["read"]
    if os.environ.get("WATCHER_READ_TOKEN"):
        return os.environ["WATCHER_READ_TOKEN"]
    if os.environ.get("WATCHER_READ_TOKEN_FILE"):
        return Path(os.environ["WATCHER_READ_TOKEN_FILE"]).read_text().strip()
    if Path("./watcher-data/tokens.json").exists():
        return json.loads(Path("./watcher-data/tokens.json").read_text())["read"]
    return None


def format_status(status: dict) -> str:
    lines = [
        f"events stored: {status['events_total']}"
        f" (last received {local_time(status.get('last_received_at'), with_date=True)})",
        "",
    ]
    by_type = status.get("events_by_type") or {}
    lines.append(render(["type", "events"], sorted(by_type.items())) if by_type else "no events yet")
    lines.append("")
    agents = status.get("agents") or []
    if agents:
        rows = [
            (
                a["node"],
                a["source"],
                ago(a["last_seen"]),
                a["events_received"],
                "-" if a.get("backlog") is None else a["backlog"],
            )
            for a in agents
        ]
        lines.append(render(["node", "agent", "last report", "events", "outbox backlog"], rows))
    else:
        lines.append("no agent has reported yet")
    pending = status.get("erased_contents_pending")
    if pending:  # an older backend does not say
        lines += ["", f"erased snapshot contents waiting for filemon to remove them: {pending}"]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        token = read_token(args)
    except (OSError, KeyError, ValueError) as exc:
        print(f"watcher status: cannot read the read token: {exc}", file=sys.stderr)
        return 2
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        r = httpx.get(f"{args.backend_url.rstrip('/')}/api/v1/status", headers=headers, timeout=10)
    except httpx.HTTPError as exc:
        print(f"watcher status: cannot reach {args.backend_url}: {exc}. Is the backend running?", file=sys.stderr)
        return 1
    if r.status_code in (401, 403):
        print(
            f"watcher status: the backend refused the token ({r.status_code}); pass --data-dir, --token-file "
            "or WATCHER_READ_TOKEN with a read token",
            file=sys.stderr,
        )
        return 1
    if r.status_code != 200:
        print(f"watcher status: {args.backend_url} answered {r.status_code}: {r.text[:200]}", file=sys.stderr)
        return 1
    print(json.dumps(r.json(), indent=2) if args.json else format_status(r.json()))
    return 0
