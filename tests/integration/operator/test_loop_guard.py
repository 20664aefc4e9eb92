"""kopf's pause-while-connecting defect, reproduced with kopf's own watch stream against a loopback server
that is slow to send headers, and the operator's loop guard that turns it into one WARNING line.

CI once failed on this: a second operator replica paused while its watch request waited for headers, and
asyncio logged kopf's AssertionError with a traceback."""

from __future__ import annotations

import asyncio
import logging

import kopf
import pytest
from kopf._cogs.clients import api, auth
from kopf._cogs.structs import credentials

from watcher_operator import loop_guard

HEADERS_AFTER = 0.5  # the server answers this late
PAUSE_AFTER = 0.1  # the "paused again" future finishes while the request still waits


async def _slow_server() -> tuple[asyncio.AbstractServer, int]:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await asyncio.sleep(HEADERS_AFTER)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def _watch_paused_while_connecting(guarded: bool) -> tuple[list[dict], list]:
    """Run one kopf watch stream that is paused before its headers arrive; return what reached the
    loop's own exception handler and what the stream yielded."""
    loop = asyncio.get_running_loop()
    reached: list[dict] = []
    loop.set_exception_handler(lambda _loop, context: reached.append(context))
    if guarded:
        loop_guard.install(loop)
    server, port = await _slow_server()
    vault = credentials.Vault()
    await vault.populate({"loopback": credentials.ConnectionInfo(server=f"http://127.0.0.1:{port}")})
    auth.vault_var.set(vault)
    try:
        paused_again = asyncio.create_task(asyncio.sleep(PAUSE_AFTER))  # kopf's pause waiter is a task too
        events = [
            e
            async for e in api.stream(
                "/api/v1/pods?watch=true",
                settings=kopf.OperatorSettings(),
                stopper=paused_again,
                logger=logging.getLogger("test"),
            )
        ]
        await asyncio.sleep(0.05)  # let pending callbacks run
    finally:
        await vault.close()  # closes the aiohttp sessions kopf opened
        server.close()
        await server.wait_closed()
    return reached, events


def test_the_defect_is_real_in_the_installed_kopf():
    """Without the guard the loop's handler receives kopf's AssertionError: the reproduction is faithful
    and the guard's matcher recognises it. When kopf fixes it this fails: drop loop_guard then."""
    reached, events = asyncio.run(_watch_paused_while_connecting(guarded=False))
    assert events == []
    assert len(reached) == 1
    assert loop_guard.is_kopf_pause_cancel_defect(reached[0])


def test_the_guard_logs_one_warning_and_no_traceback(caplog):
    caplog.set_level(logging.WARNING, logger="watcher_operator")
    reached, events = asyncio.run(_watch_paused_while_connecting(guarded=True))
    assert events == []
    assert reached == []  # nothing reached the previous handler, so asyncio logged no ERROR
    warnings = [r for r in caplog.records if r.name == "watcher_operator"]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
    assert "known kopf defect" in warnings[0].getMessage() and warnings[0].exc_info is None


def test_the_guard_passes_every_other_exception_on():
    async def scenario() -> list[dict]:
        loop = asyncio.get_running_loop()
        reached: list[dict] = []
        loop.set_exception_handler(lambda _loop, context: reached.append(context))
        loop_guard.install(loop)

        def fails() -> None:
            raise AssertionError("not kopf's")

        loop.call_soon(fails)
        loop.call_soon(lambda: 1 / 0)
        await asyncio.sleep(0.05)
        return reached

    reached = asyncio.run(scenario())
    assert [type(c["exception"]) for c in reached] == [AssertionError, ZeroDivisionError]


@pytest.mark.parametrize("context", [{}, {"message": "no exception"}, {"exception": AssertionError("bare")}])
def test_the_matcher_needs_kopfs_frame(context):
    assert not loop_guard.is_kopf_pause_cancel_defect(context)
