"""One log setup for every component: a line per record on stderr (``kubectl logs``).

``WATCHER_LOG_FORMAT`` (``format_setting``):

* ``text``: ``2026-12-04T10:00:00+0000 INFO filemon watcher_agents.filemon: message`` (the agents' and the
  operator's default);
* ``plain``: the message alone (the backend's default: the deployment guide's start-up lines, exactly);
* ``json``: ``{"time", "level", "component", "logger", "message"[, "exception"]}`` per line, for log
  collectors (Loki, Elasticsearch) that parse fields instead of text.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from watcher_core import settings_spec

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
FORMATS = ("text", "plain", "json")


def level_setting() -> Any:
    """``--log-level`` / ``WATCHER_LOG_LEVEL``, the same for every component (a settings dataclass field)."""
    return settings_spec.setting(
        "INFO",
        flag="--log-level",
        env="WATCHER_LOG_LEVEL",
        parse=settings_spec.one_of(LEVELS, case=str.upper),
        metavar="LEVEL",
        doc="log level, any case",
    )


def format_setting(default: str) -> Any:
    """``WATCHER_LOG_FORMAT`` (a settings dataclass field); the backend's default differs from the others'."""
    return settings_spec.setting(
        default,
        env="WATCHER_LOG_FORMAT",
        parse=settings_spec.one_of(FORMATS),
        doc="`text`: one line per record, `<time> <level> <component> <logger>: <message>`; `plain`: the "
        "message alone (the backend's default, so `kubectl logs` shows the deployment guide's start-up lines "
        "exactly); `json`: one JSON object per line (`time`, `level`, `component`, `logger`, `message`, "
        "`exception`) for log collectors",
    )


class JsonFormatter(logging.Formatter):
    def __init__(self, component: str) -> None:
        super().__init__()
        self.component = component

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "component": self.component,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def setup(level: str | int, component: str, fmt: str = "text") -> None:
    """Replace the root handlers with one stderr handler in ``fmt``; quiet the HTTP clients' chatter."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter(component))
    elif fmt == "plain":
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s %(levelname)s {component} %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S%z")
        )
    handler._watcher_handler = True  # type: ignore[attr-defined]  # ours: replaced when set up again
    root = logging.getLogger()
    for old in list(root.handlers):
        # only our own handler and logging's lastResort-style defaults; a host's (pytest's caplog) stays
        if getattr(old, "_watcher_handler", False) or type(old) is logging.StreamHandler:
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
