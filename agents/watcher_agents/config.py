"""Settings shared by both node agents (filemon, procmon), declared once (watcher_core.settings_spec).

Every setting is a flag and an environment variable; the flag wins, then the variable, then the
default. A bad value stops the agent with ONE line naming the setting (``config error: ...``) and exit
code 2, never a traceback: a DaemonSet in CrashLoopBackOff should say why in its last log line.

``AgentSettings`` holds what both agents share; each agent's ``cli.py`` declares its own settings as a
dataclass too (``FilemonSettings``, ``ProcmonSettings``), with the workspace layout rules of
``identity.LayoutRules`` and ``flush_timeout`` below as fields of it. Its ``main``::

    args = build_parser().parse_args(argv)   # config.add_agent_arguments + its own settings' flags
    try:
        settings = config.resolve(args, agent="filemon")
        fm = resolve_filemon(args)              # settings_spec.resolve + build, and its own checks
    except settings_spec.SettingsError as exc:
        return config.fail(exc, "filemon")
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from watcher_agents.delivery import outbox as outbox_mod
from watcher_core import logs, settings_spec
from watcher_core.settings_spec import Resolved, Setting, setting

DEFAULT_BACKEND_URL = "http://watcher-backend-service.watcher.svc.cluster.local:3000"
DEFAULT_STATE_DIR = "/var/lib/watcher/{agent}"
_NODE_RE = re.compile(r"^[A-Za-z0-9._-]{1,253}$")
_NODE_RULE = "must be 1-253 letters, digits, '.', '_' or '-'"


def _node_name(raw: str) -> str:
    value = raw.strip()
    if not _NODE_RE.match(value):
        raise ValueError(f"node name {_NODE_RULE}")
    return value


@dataclass(frozen=True)
class AgentSettings:
    agent: str
    workspace_root: Path = setting(
        Path("/watcher/codes"),
        flag="--workspace-root",
        env="WATCHER_WORKSPACE_ROOT",
        parse=settings_spec.path,
        metavar="DIR",
        doc="the student workspaces (`{course}-{section}-{student_id}/...`); must exist",
    )
    # The default depends on the agent (agent_settings); "<agent>" stands for it in the docs.
    state_dir: Path = setting(
        Path(DEFAULT_STATE_DIR.format(agent="<agent>")),
        flag="--state-dir",
        env="WATCHER_STATE_DIR",
        parse=settings_spec.path,
        metavar="DIR",
        doc="local state: `outbox.sqlite3` (and filemon's per-file state). Created if missing; must be "
        "writable. Use node-local disk (hostPath), not NFS",
    )
    backend_url: str = setting(
        DEFAULT_BACKEND_URL,
        flag="--backend-url",
        env="WATCHER_BACKEND_URL",
        parse=settings_spec.http_url,
        metavar="URL",
        doc="the backend's base URL (`http(s)://host[:port]`, no query); events go to `{URL}/api/v1/events`",
    )
    token: str | None = setting(
        None,
        flag="--token-file",
        env="WATCHER_INGEST_TOKEN",
        secret=True,
        default_doc="none: requests carry no `Authorization` header (fine only against `--insecure-no-auth`)",
        doc="the ingest token; the flag, like `WATCHER_INGEST_TOKEN_FILE`, names a file holding it (a mounted Secret)",
    )
    token_source: str = "none"  # where the token came from, for the start-up line (never the token)
    metrics_port: int = setting(
        9090,
        flag="--metrics-port",
        env="WATCHER_METRICS_PORT",
        parse=settings_spec.port(),
        metavar="PORT",
        doc="port of `/metrics` and `/healthz`",
    )
    node_name: str = setting(
        "",
        flag="--node-name",
        env="WATCHER_NODE_NAME",
        parse=_node_name,
        metavar="NAME",
        default_doc="the hostname",
        doc="this node's name in every event (letters, digits, `.`, `_`, `-`; in the DaemonSet from `spec.nodeName`)",
    )
    outbox_max_events: int = setting(
        outbox_mod.DEFAULT_MAX_EVENTS,
        flag="--outbox-max-events",
        env="WATCHER_OUTBOX_MAX_EVENTS",
        parse=settings_spec.whole_number(1),
        metavar="N",
        doc="bound of the local outbox in events",
    )
    outbox_max_bytes: int = setting(
        outbox_mod.DEFAULT_MAX_BYTES,
        flag="--outbox-max-bytes",
        env="WATCHER_OUTBOX_MAX_BYTES",
        parse=settings_spec.byte_size,
        metavar="SIZE",
        default_doc="`512M`",
        doc="bound of the local outbox in bytes of event JSON (a size: `65536`, `64k`, `512M`, `1G`)",
    )
    outbox_sync: str = setting(
        "normal",
        flag="--outbox-sync",
        env="WATCHER_OUTBOX_SYNC",
        parse=settings_spec.one_of(outbox_mod.SYNC_MODES),
        metavar="MODE",
        doc="SQLite `synchronous`: `normal` survives an agent crash or SIGKILL; `full` also a power loss (one "
        "fsync per transaction)",
    )
    batch_size: int = setting(
        500,
        flag="--batch-size",
        env="WATCHER_BATCH_SIZE",
        parse=settings_spec.whole_number(1, 1000),
        metavar="N",
        doc="events per POST (at most 1000, the backend's limit)",
    )
    log_level: str = logs.level_setting()
    log_format: str = logs.format_setting("text")

    @property
    def outbox_path(self) -> Path:
        return self.state_dir / "outbox.sqlite3"


# The docs' table (docs/configuration.md): the state directory shown as /var/lib/watcher/<agent>.
TABLE = settings_spec.settings_of(AgentSettings)


def agent_settings(agent: str) -> tuple[Setting, ...]:
    return settings_spec.settings_of(AgentSettings, state_dir=Path(DEFAULT_STATE_DIR.format(agent=agent)))


def add_agent_arguments(parser: argparse.ArgumentParser, *, agent: str) -> None:
    """The flags both agents have."""
    group = parser.add_argument_group("common agent settings (each also an environment variable)")
    settings_spec.add_arguments(group, agent_settings(agent))


def resolve(
    args: argparse.Namespace, *, agent: str, env: Mapping[str, str] | None = None, require_workspace: bool = True
) -> AgentSettings:
    values = settings_spec.resolve(agent_settings(agent), args, env)
    root = values.workspace_root
    if require_workspace and not root.is_dir():
        what = "is not a directory" if root.exists() else "does not exist"
        raise values.error("workspace_root", f"workspace root {root} {what}")
    ensure_writable_dir(values, "state_dir", "state dir")
    node = values.node_name or socket.gethostname()
    if not _NODE_RE.match(node):
        raise values.error("node_name", f"node name {node!r} (the hostname) {_NODE_RULE}")
    origin = values.origin("token")
    source = "none" if origin is None else origin if origin == "WATCHER_INGEST_TOKEN" else f"file from {origin}"
    return settings_spec.build(AgentSettings, values, agent=agent, node_name=node, token_source=source)


def ensure_writable_dir(values: Resolved, name: str, what: str) -> None:
    """The directory of setting ``name`` exists (created if need be) and is writable."""
    path = values[name]
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise values.error(name, f"cannot create the {what} {path} ({exc.strerror or exc})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise values.error(name, f"the {what} {path} is not writable")


def flush_timeout() -> Any:
    """Both agents' ``--flush-timeout`` (a field of their settings dataclass)."""
    return setting(
        10.0,
        flag="--flush-timeout",
        env="WATCHER_FLUSH_TIMEOUT_SECONDS",
        parse=settings_spec.seconds(zero=True),
        metavar="SECONDS",
        doc="on shutdown, the longest wait for the pending work and the outbox to drain",
    )


# --- process helpers ------------------------------------------------------------------------------


def fail(exc: Exception, agent: str) -> int:
    """Print the one-line error and return the exit code for ``main``."""
    sys.stderr.write(f"watcher {agent}: config error: {exc}\n")
    return 2


def describe(settings: AgentSettings) -> dict[str, Any]:
    """Settings for the startup log line (the token itself never appears)."""
    return {
        "workspace_root": str(settings.workspace_root),
        "state_dir": str(settings.state_dir),
        "backend_url": settings.backend_url,
        "token": settings.token_source,
        "metrics_port": settings.metrics_port,
        "node": settings.node_name,
        "outbox_bound": f"{settings.outbox_max_events} events / {settings.outbox_max_bytes} bytes",
    }
