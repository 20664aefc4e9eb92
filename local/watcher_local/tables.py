"""Plain-text tables for the terminal (no dependency): used by ``watcher demo`` and ``watcher status``."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime


def render(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    cells = [[_text(c) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, c in enumerate(row):
            widths[i] = max(widths[i], len(c))
    line = "  ".join("-" * w for w in widths)
    out = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)), line]
    out += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    return "\n".join(out)


def _text(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def local_time(iso: str | None, with_date: bool = False) -> str:
    """An RFC 3339 timestamp from the API, shown in this machine's time zone."""
    if not iso:
        return "-"
    t = datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone()
    return t.strftime("%Y-%m-%d %H:%M:%S" if with_date else "%H:%M:%S.%f")[: 19 if with_date else 12]


def ago(iso: str | None, now: datetime | None = None) -> str:
    if not iso:
        return "never"
    t = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    now = now or datetime.now(t.tzinfo)
    seconds = max(0, int((now - t).total_seconds()))
    if seconds < 120:
        return f"{seconds} s ago"
    if seconds < 7200:
        return f"{seconds // 60} min ago"
    return f"{seconds // 3600} h ago"
