"""``watcher status``: what a running backend has stored, which agents report, and their backlogs."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path

import httpx

from watcher_core import settings_spec
from watcher_core.settings_spec import Setting
from watcher_local.tables import ago, local_time, render

BACKEND_URL = Setting(
    "backend_url",
    flag="--backend-url",
    env="WATCHER_BACKEND_URL",
    default="http://127.0.0.1:3000",
    parse=settings_spec.http_url,
    metavar="URL",
    doc="the backend to ask (the agents' default for the same variable is the in-cluster Service)",
)
TOKEN = (
    Setting(
        "read_token",
        flag="--token-file",
        env="WATCHER_READ_TOKEN",
        secret=True,
        default_doc="none",
        doc="a read token; the flag, like `WATCHER_READ_TOKEN_FILE`, names a file holding it",
    ),
    Setting(
        "data_dir",
        flag="--data-dir",
        parse=settings_spec.path,
        metavar="DIR",
        default_doc="`./watcher-data` if it has a `tokens.json`",
        doc="take the read token from a `watcher local` data directory's `tokens.json`",
    ),
)
JSON = Setting("json", flag="--json", flag_value=True, default=False, doc="print the API's raw JSON answer")
OPTIONS = (BACKEND_URL, *TOKEN, JSON)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="watcher status",
        description="Show events stored by type, the agents seen per node with their last report, and their "
        "outbox backlogs, for a running local or remote backend.",
    )
    settings_spec.add_arguments(p, OPTIONS)
    return p


def read_token(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> str | None:
    """--token-file, then --data-dir's tokens.json, then WATCHER_READ_TOKEN (or its file), then
    ./watcher-data if present. SettingsError for an unreadable token file."""
    values = settings_spec.resolve(TOKEN, args, env)
    if values.origin("read_token") == "--token-file":
        return values.read_token
    if values.data_dir:
        return json.loads((values.data_dir / "tokens.json").read_text())["read"]
    if values.read_token:
        return values.read_token
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
        opts = settings_spec.resolve((BACKEND_URL, JSON), args)
        token = read_token(args)
    except settings_spec.SettingsError as exc:
        print(f"watcher status: bad setting {exc}", file=sys.stderr)
        return 2
    except (OSError, KeyError, ValueError) as exc:
        print(f"watcher status: cannot read the read token: {exc}", file=sys.stderr)
        return 2
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        r = httpx.get(f"{opts.backend_url.rstrip('/')}/api/v1/status", headers=headers, timeout=10)
    except httpx.HTTPError as exc:
        print(f"watcher status: cannot reach {opts.backend_url}: {exc}. Is the backend running?", file=sys.stderr)
        return 1
    if r.status_code in (401, 403):
        print(
            f"watcher status: the backend refused the token ({r.status_code}); pass --data-dir, --token-file "
            "or WATCHER_READ_TOKEN with a read token",
            file=sys.stderr,
        )
        return 1
    if r.status_code != 200:
        print(f"watcher status: {opts.backend_url} answered {r.status_code}: {r.text[:200]}", file=sys.stderr)
        return 1
    print(json.dumps(r.json(), indent=2) if opts.json else format_status(r.json()))
    return 0
