"""One known kopf defect, logged as one line instead of a traceback.

kopf (1.45 and earlier) cancels a watch request that still waits for its response headers from a
done-callback on the "paused again" future. Done-callbacks run from the event loop, outside any task,
so its `asyncio.current_task()` is None and an `assert` fails. asyncio then logs an ERROR with a
traceback each time a replica is paused by its peering (a second replica starting is enough).

Nothing is lost: kopf checks the same future again once the headers arrive and closes that watch.
So the guard recognises exactly this failure (an AssertionError raised in kopf's
`request_cancel_callback`), logs one WARNING that says so, and hands every other exception to the
loop's previous handler unchanged.
"""

from __future__ import annotations

import asyncio
import logging
import traceback
from typing import Any

log = logging.getLogger("watcher_operator")

KOPF_CALLBACK = "request_cancel_callback"


def is_kopf_pause_cancel_defect(context: dict[str, Any]) -> bool:
    exc = context.get("exception")
    if not isinstance(exc, AssertionError):
        return False
    frames = traceback.extract_tb(exc.__traceback__)
    return bool(frames) and frames[-1].name == KOPF_CALLBACK and "kopf" in frames[-1].filename


def install(loop: asyncio.AbstractEventLoop) -> None:
    previous = loop.get_exception_handler()

    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if is_kopf_pause_cancel_defect(context):
            log.warning(
                "paused while a watch request was starting: kopf could not cancel it from outside "
                "a task (a known kopf defect); the watch is closed when its headers arrive"
            )
            return
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handle)
