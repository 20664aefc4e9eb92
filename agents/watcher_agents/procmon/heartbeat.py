"""procmon's own downtime: a heartbeat file in the state dir says "procmon was tracing at this time".

Processes that ran while procmon was down (crashed, killed, restarted, node rebooted) were never
seen, and nothing else can tell: the kernel keeps no history of execs. So while it traces, procmon
rewrites ``<state-dir>/heartbeat`` (a unix time) every second, and writes a last one on a clean
shutdown. At the next start, ``now - last heartbeat`` is the window it was blind for: a gauge
(``procmon_downtime_seconds``) and one log line, so a dashboard shows the gap instead of a restart
that looks like a fresh start.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

log = logging.getLogger(__name__)

FILENAME = "heartbeat"
INTERVAL = 1.0  # seconds between heartbeats (the gap is known to within this)


def read_last(path: Path) -> float | None:
    """The unix time of the last heartbeat: the time written in the file, else its mtime (a file
    written by hand, or cut short); None when there is none (procmon never ran with this state dir)."""
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    except OSError:
        text = ""
    try:
        value = float(text)
        if value > 0:
            return value
    except ValueError:
        pass
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def write(path: Path, now: float) -> None:
    """Atomically: a reader (the next start) sees the old or the new time, never a torn file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(f"{now:.3f}\n")
    os.replace(tmp, path)


@dataclass(frozen=True)
class Gap:
    last_seen: float | None  # unix time of the last heartbeat before this start (None: first start ever)
    downtime: float  # seconds procmon was not tracing (0 on a first start)

    def describe(self) -> str | None:
        """The log line, or None when there was no earlier run."""
        if self.last_seen is None:
            return None
        when = datetime.fromtimestamp(self.last_seen, tz=UTC).isoformat(timespec="seconds")
        return (
            f"procmon was down for {self.downtime:.1f} s (last heartbeat {when}): "
            "processes that ran in that window were not seen"
        )


def gap(last_seen: float | None, now: float) -> Gap:
    if last_seen is None:
        return Gap(None, 0.0)
    return Gap(last_seen, max(0.0, now - last_seen))


class Heartbeat:
    """Writes the heartbeat every ``interval`` seconds from a small daemon thread."""

    def __init__(self, state_dir: Path, interval: float = INTERVAL, clock=time.time) -> None:
        self.path = Path(state_dir) / FILENAME
        self.interval = interval
        self.clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False

    def last(self) -> float | None:
        return read_last(self.path)

    def beat(self) -> bool:
        try:
            write(self.path, self.clock())
        except OSError as exc:
            if not self._failing:  # one line per failure streak, not one per second
                log.warning(
                    "cannot write the heartbeat %s (%s); the next start cannot tell how long procmon was down",
                    self.path,
                    exc,
                )
            self._failing = True
            return False
        if self._failing:
            log.info("heartbeat %s written again", self.path)
        self._failing = False
        return True

    def start(self) -> Heartbeat:
        self.beat()
        self._thread = threading.Thread(target=self._run, name="procmon-heartbeat", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.beat()

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        """Clean shutdown: the last heartbeat is the moment procmon stopped tracing."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self.beat()
