"""Settings shared by both node agents (filemon, procmon): flags, environment variables, validation.

Every setting is a flag and an environment variable; the flag wins, then the variable, then the
default. A bad value stops the agent with ONE line naming the setting (``config error: ...``) and exit
code 2, never a traceback: a DaemonSet in CrashLoopBackOff should say why in its last log line.

Usage in an agent's ``cli.py``::

    parser = argparse.ArgumentParser(prog="watcher filemon", ...)
    config.add_agent_arguments(parser, agent="filemon")
    parser.add_argument("--debounce", ...)            # agent-specific flags
    args = parser.parse_args(argv)
    try:
        settings = config.resolve(args, agent="filemon")
        debounce = config.setting(args, "debounce", "WATCHER_DEBOUNCE_SECONDS", 0.3, config.positive_float)
    except config.ConfigError as exc:
        return config.fail(exc, "filemon")
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from watcher_agents.delivery import outbox as outbox_mod
from watcher_core import identity, logs

T = TypeVar("T")

DEFAULT_WORKSPACE_ROOT = "/watcher/codes"
DEFAULT_BACKEND_URL = "http://watcher-backend-service.watcher.svc.cluster.local:3000"
DEFAULT_METRICS_PORT = 9090
DEFAULT_STATE_DIR = "/var/lib/watcher/{agent}"
DEFAULT_BATCH_SIZE = 500
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
_NODE_RE = re.compile(r"^[A-Za-z0-9._-]{1,253}$")


class ConfigError(Exception):
    """A setting is missing or invalid. The message is one line naming the flag and variable."""


@dataclass(frozen=True)
class AgentSettings:
    agent: str
    workspace_root: Path
    state_dir: Path
    backend_url: str
    token: str | None
    token_source: str
    metrics_port: int
    node_name: str
    outbox_max_events: int
    outbox_max_bytes: int
    outbox_sync: str
    batch_size: int
    log_level: str

    @property
    def outbox_path(self) -> Path:
        return self.state_dir / "outbox.sqlite3"


# --- value parsers (raise ValueError with a short reason) --------------------------------------------


def positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise ValueError("must be a positive integer")
    return value


def non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise ValueError("must be a number >= 0")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise ValueError("must be a number > 0")
    return value


def port_number(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise ValueError("must be a TCP port 0-65535")
    return value


def csv_list(text: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in str(text).split(",") if p.strip())


def byte_size(text: str) -> int:
    """``1048576``, ``64k``, ``512M``, ``1G`` (binary units)."""
    match = re.fullmatch(r"\s*(\d+)\s*([kKmMgG]?)[iI]?[bB]?\s*", str(text))
    if not match:
        raise ValueError("must be a size like 65536, 64k, 512M or 1G")
    return int(match.group(1)) * {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[match.group(2).lower()]


def setting(
    args: argparse.Namespace,
    attr: str,
    env_name: str,
    default: T,
    parse: Callable[[str], T],
    env: Mapping[str, str] | None = None,
) -> T:
    """Flag ``--attr`` if given, else ``env_name`` if set, else ``default``; parsed and validated."""
    env = os.environ if env is None else env
    flag = "--" + attr.replace("_", "-")
    raw = getattr(args, attr, None)
    origin = flag
    if raw is None:
        raw = env.get(env_name)
        origin = env_name
    if raw is None or raw == "":
        return default
    try:
        return parse(raw) if isinstance(raw, str) else raw
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{origin}={raw!r}: {exc} (flag {flag}, variable {env_name})") from None


# --- the shared settings --------------------------------------------------------------------------


def add_agent_arguments(parser: argparse.ArgumentParser, *, agent: str) -> None:
    """The flags both agents have. Defaults are None here so ``resolve`` can fall back to the env."""
    g = parser.add_argument_group("common agent settings (each also an environment variable)")
    g.add_argument(
        "--workspace-root",
        metavar="DIR",
        help=f"student workspaces, {{course}}-{{section}}-{{id}}/... [WATCHER_WORKSPACE_ROOT, "
        f"default {DEFAULT_WORKSPACE_ROOT}]",
    )
    g.add_argument(
        "--state-dir",
        metavar="DIR",
        help="local state: the outbox database and the agent's own state "
        f"[WATCHER_STATE_DIR, default {DEFAULT_STATE_DIR.format(agent=agent)}]",
    )
    g.add_argument(
        "--backend-url", metavar="URL", help=f"backend base URL [WATCHER_BACKEND_URL, default {DEFAULT_BACKEND_URL}]"
    )
    g.add_argument(
        "--token-file",
        metavar="FILE",
        help="file holding the ingest token [WATCHER_INGEST_TOKEN_FILE; or the token itself in WATCHER_INGEST_TOKEN]",
    )
    g.add_argument(
        "--metrics-port",
        metavar="PORT",
        help=f"port for /metrics and /healthz [WATCHER_METRICS_PORT, default {DEFAULT_METRICS_PORT}]",
    )
    g.add_argument(
        "--node-name", metavar="NAME", help="this node's name in every event [WATCHER_NODE_NAME, default: the hostname]"
    )
    g.add_argument(
        "--outbox-max-events",
        metavar="N",
        help=f"bound of the local outbox in events [WATCHER_OUTBOX_MAX_EVENTS, default "
        f"{outbox_mod.DEFAULT_MAX_EVENTS}]",
    )
    g.add_argument(
        "--outbox-max-bytes",
        metavar="SIZE",
        help="bound of the local outbox in bytes of JSON, e.g. 512M [WATCHER_OUTBOX_MAX_BYTES, default 512M]",
    )
    g.add_argument(
        "--outbox-sync",
        choices=outbox_mod.SYNC_MODES,
        help="SQLite synchronous mode: normal survives a crash of the agent, full also a power "
        "loss [WATCHER_OUTBOX_SYNC, default normal]",
    )
    g.add_argument(
        "--batch-size", metavar="N", help=f"events per POST [WATCHER_BATCH_SIZE, default {DEFAULT_BATCH_SIZE}]"
    )
    g.add_argument(
        "--log-level", type=str.upper, choices=LOG_LEVELS, help="log level [WATCHER_LOG_LEVEL, default INFO]"
    )


def backend_url(text: str) -> str:
    parts = urlsplit(text.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host, e.g. http://backend:3000")
    try:
        parts.port  # noqa: B018 (raises ValueError on a bad port)
    except ValueError:
        raise ValueError("has an invalid port") from None
    if parts.query or parts.fragment:
        raise ValueError("must not have a query or fragment")
    return text.strip().rstrip("/")


def _read_token(args: argparse.Namespace, env: Mapping[str, str]) -> tuple[str | None, str]:
    path = getattr(args, "token_file", None) or env.get("WATCHER_INGEST_TOKEN_FILE")
    if path:
        try:
            token = Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(
                f"cannot read the ingest token file {path} ({exc.strerror or exc}) "
                "(flag --token-file, variable WATCHER_INGEST_TOKEN_FILE)"
            ) from None
        if not token:
            raise ConfigError(
                f"the ingest token file {path} is empty (flag --token-file, variable WATCHER_INGEST_TOKEN_FILE)"
            )
        return token, f"file {path}"
    token = env.get("WATCHER_INGEST_TOKEN", "").strip()
    if token:
        return token, "WATCHER_INGEST_TOKEN"
    return None, "none"


def resolve(
    args: argparse.Namespace, *, agent: str, env: Mapping[str, str] | None = None, require_workspace: bool = True
) -> AgentSettings:
    env = os.environ if env is None else env
    root = Path(setting(args, "workspace_root", "WATCHER_WORKSPACE_ROOT", DEFAULT_WORKSPACE_ROOT, str, env))
    if require_workspace and not root.is_dir():
        what = "is not a directory" if root.exists() else "does not exist"
        raise ConfigError(f"workspace root {root} {what} (flag --workspace-root, variable WATCHER_WORKSPACE_ROOT)")
    state_dir = Path(setting(args, "state_dir", "WATCHER_STATE_DIR", DEFAULT_STATE_DIR.format(agent=agent), str, env))
    ensure_writable_dir(state_dir, "state dir", "--state-dir", "WATCHER_STATE_DIR")
    url = setting(args, "backend_url", "WATCHER_BACKEND_URL", DEFAULT_BACKEND_URL, backend_url, env)
    token, token_source = _read_token(args, env)
    port = setting(args, "metrics_port", "WATCHER_METRICS_PORT", DEFAULT_METRICS_PORT, port_number, env)
    node = setting(args, "node_name", "WATCHER_NODE_NAME", "", str, env) or socket.gethostname()
    if not _NODE_RE.match(node):
        raise ConfigError(
            f"node name {node!r} must be 1-253 letters, digits, '.', '_' or '-' "
            "(flag --node-name, variable WATCHER_NODE_NAME)"
        )
    return AgentSettings(
        agent=agent,
        workspace_root=root,
        state_dir=state_dir,
        backend_url=url,
        token=token,
        token_source=token_source,
        metrics_port=port,
        node_name=node,
        outbox_max_events=setting(
            args, "outbox_max_events", "WATCHER_OUTBOX_MAX_EVENTS", outbox_mod.DEFAULT_MAX_EVENTS, positive_int, env
        ),
        outbox_max_bytes=setting(
            args, "outbox_max_bytes", "WATCHER_OUTBOX_MAX_BYTES", outbox_mod.DEFAULT_MAX_BYTES, byte_size, env
        ),
        outbox_sync=setting(args, "outbox_sync", "WATCHER_OUTBOX_SYNC", "normal", _sync_mode, env),
        batch_size=setting(args, "batch_size", "WATCHER_BATCH_SIZE", DEFAULT_BATCH_SIZE, _batch_size, env),
        log_level=setting(args, "log_level", "WATCHER_LOG_LEVEL", "INFO", _log_level, env),
    )


def ensure_writable_dir(path: Path, what: str, flag: str, env_name: str) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"cannot create the {what} {path} ({exc.strerror or exc}) (flag {flag}, variable {env_name})"
        ) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(f"the {what} {path} is not writable (flag {flag}, variable {env_name})")


def _sync_mode(text: str) -> str:
    value = text.strip().lower()
    if value not in outbox_mod.SYNC_MODES:
        raise ValueError(f"must be one of {', '.join(outbox_mod.SYNC_MODES)}")
    return value


def _batch_size(text: str) -> int:
    value = positive_int(text)
    if value > 1000:
        raise ValueError("must be at most 1000 (the backend's batch limit)")
    return value


def _log_level(text: str) -> str:
    value = text.strip().upper()
    if value not in LOG_LEVELS:
        raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
    return value


# --- settings both agents add to their own group ------------------------------------------------

DEFAULT_FLUSH_TIMEOUT = 10.0


def add_layout_arguments(group: argparse._ArgumentGroup, *, with_files: bool) -> None:
    """The workspace layout flags; ``with_files`` adds the per-file ones (filemon: size limit, extensions)."""
    if with_files:
        group.add_argument(
            "--max-file-size",
            metavar="SIZE",
            help="larger files are recorded as file.too_large without content, e.g. 1M "
            f"[WATCHER_MAX_FILE_SIZE, default {identity.DEFAULT_MAX_FILE_SIZE}]",
        )
        group.add_argument(
            "--extensions",
            metavar="LIST",
            help="tracked file extensions, comma-separated [WATCHER_EXTENSIONS, default "
            f"{','.join(identity.DEFAULT_EXTENSIONS)}]",
        )
    # filemon does not watch these directories; procmon does not attribute processes run in them.
    meaning = "never watched (fnmatch), comma-separated" if with_files else "that are never student work (fnmatch)"
    group.add_argument(
        "--ignore-dirs",
        metavar="LIST",
        help=f"directory name patterns {meaning} [WATCHER_IGNORE_DIRS, "
        f"default {','.join(identity.DEFAULT_IGNORE_DIRS)}]",
    )
    group.add_argument(
        "--assignment-pattern",
        metavar="REGEX",
        help="assignment directory names (whole-name match) [WATCHER_ASSIGNMENT_PATTERN, default "
        f"{identity.DEFAULT_ASSIGNMENT_PATTERN}]",
    )


def _regex(text: str) -> str:
    try:
        re.compile(text)
    except re.error as exc:
        raise ValueError(f"is not a valid regex: {exc}") from None
    return text


def _extensions(text: str) -> tuple[str, ...]:
    exts = csv_list(text)
    for ext in exts:
        if not ext.startswith("."):
            raise ValueError(f"extension {ext!r} must start with a dot, e.g. '.c'")
    return exts


def _positive_byte_size(text: str) -> int:
    value = byte_size(text)
    if value <= 0:
        raise ValueError("must be a positive size")
    return value


def resolve_layout(
    args: argparse.Namespace, *, with_files: bool, env: Mapping[str, str] | None = None
) -> identity.LayoutRules:
    """The layout rules from the flags ``add_layout_arguments`` added (same ``with_files``).

    Each value is checked on its own, so a bad one is named by its flag and variable. Without
    ``with_files`` the per-file settings keep their defaults and their variables are not read.
    """
    s = setting
    files = {}
    if with_files:
        files = {
            "extensions": s(args, "extensions", "WATCHER_EXTENSIONS", identity.DEFAULT_EXTENSIONS, _extensions, env),
            "max_file_size": s(
                args, "max_file_size", "WATCHER_MAX_FILE_SIZE", identity.DEFAULT_MAX_FILE_SIZE, _positive_byte_size, env
            ),
        }
    pattern = s(
        args, "assignment_pattern", "WATCHER_ASSIGNMENT_PATTERN", identity.DEFAULT_ASSIGNMENT_PATTERN, _regex, env
    )
    ignores = s(args, "ignore_dirs", "WATCHER_IGNORE_DIRS", identity.DEFAULT_IGNORE_DIRS, csv_list, env)
    try:
        return identity.LayoutRules(assignment_pattern=pattern, ignore_dirs=ignores, **files)
    except identity.IdentityError as exc:  # a rule identity checks that the parsers above do not know yet
        flags = "--extensions/--max-file-size/" if with_files else ""
        raise ConfigError(f"{exc} (flags {flags}--assignment-pattern/--ignore-dirs)") from None


def add_flush_timeout_argument(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--flush-timeout",
        metavar="SECONDS",
        help="on shutdown, wait at most this long for the outbox to drain "
        f"[WATCHER_FLUSH_TIMEOUT_SECONDS, default {DEFAULT_FLUSH_TIMEOUT:g}]",
    )


def resolve_flush_timeout(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> float:
    return setting(
        args, "flush_timeout", "WATCHER_FLUSH_TIMEOUT_SECONDS", DEFAULT_FLUSH_TIMEOUT, non_negative_float, env
    )


# --- process helpers ------------------------------------------------------------------------------


def fail(exc: Exception, agent: str) -> int:
    """Print the one-line error and return the exit code for ``main``."""
    sys.stderr.write(f"watcher {agent}: config error: {exc}\n")
    return 2


def setup_logging(level: str, agent: str, env: Mapping[str, str] | None = None) -> None:
    """One line per record on stderr (kubectl logs), text or JSON (WATCHER_LOG_FORMAT); no files to rotate
    on a shared volume. ConfigError naming the variable for a bad format."""
    try:
        fmt = logs.log_format(os.environ if env is None else env)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    logs.setup(level, agent, fmt)


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
