"""Polling for a condition in tests: ``wait_for(predicate, timeout, what)`` returns the first truthy value
``predicate()`` gives and fails naming ``what`` and the last value (or exception) when time runs out."""

from __future__ import annotations

import time


def wait_for(predicate, timeout: float = 60.0, what: str = "condition", interval: float = 0.3):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except Exception as exc:  # noqa: BLE001 - the object may not exist yet
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")
