"""The ingest lane: the common case of the event writes, answered without FastAPI's per-request machinery.

The old filemon, procmon and notebook hook post one event per request, hundreds of pods at once. Storing
one event costs little once requests share a commit (``ingest_writer``); FastAPI's route matching (every
route before the old API's is tried), dependency solving and response handling cost several times more
per request (bench/RESULTS.md, "Single-event requests"). So this pure ASGI middleware, inside the metrics
and body-limit middleware, takes the writes it can answer exactly as their routes would:

* a ``POST`` to a route of ``routes`` (``events.post_events``, the old API's three writes), matched by that
  route's own path pattern, in the app's order;
* with a declared ``Content-Length`` within the body limit and ``Content-Type: application/json``;
* with a bearer token that grants ``ingest`` (or authentication off);
* whose route-specific ``prepare`` accepts the request: it runs the route's own checks and builds what
  the route would store, and raises (``DECLINE``) at anything it is not sure of.

Everything else, and every request a ``prepare`` declines, goes on to FastAPI unchanged (the body it read
is handed on), so every error answer, every other route and the OpenAPI schema stay FastAPI's. A taken
request is stored and answered by the same functions its route calls, and carries the route in its scope,
so the metrics label it with the same route template.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import HTTPException
from fastapi.routing import APIRoute
from pydantic import ValidationError
from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .auth import scopes_of
from .settings import Settings

# What a prepare raises when the lane should leave the request to its route: a bad field (the route then
# answers the same 422 with FastAPI's shape), a header it does not check, a token that is no ingest token.
DECLINE = (HTTPException, ValidationError, ValueError, LookupError)

# (app, path parameters, body, headers) -> the coroutine that stores and answers. It must raise before it
# returns if it declines: once the stored work has started the lane answers itself.
Prepare = Callable[[Any, Mapping[str, str], bytes, Headers], Callable[[], Awaitable[Response]]]


@dataclass(frozen=True)
class LaneRoute:
    route: APIRoute
    prepare: Prepare


class IngestLane:
    def __init__(
        self,
        app: ASGIApp,
        *,
        owner: Any,
        settings: Settings,
        routes: Sequence[LaneRoute],
        on_database_error: Callable[[Scope, Exception], Response],
        database_errors: tuple[type[Exception], ...],
    ):
        self.app = app
        self.owner = owner  # the FastAPI app: its state holds the writer and the metrics
        self.settings = settings
        self.routes = list(routes)
        self.on_database_error = on_database_error
        self.database_errors = database_errors

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope.get("root_path"):
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        for lane in self.routes:
            match = lane.route.path_regex.match(path)
            if match is not None:
                break
        else:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if not self._takes(headers):
            await self.app(scope, receive, send)
            return
        received = await _read_body(receive)
        body = b"".join(m.get("body", b"") for m in received if m["type"] == "http.request")
        complete = received[-1]["type"] == "http.request" and not received[-1].get("more_body", False)
        run = None
        if complete:
            try:
                run = lane.prepare(self.owner, match.groupdict(), body, headers)
            except DECLINE:
                run = None
        if run is None:
            await self.app(scope, _replay(received, receive), send)
            return
        scope["route"] = lane.route  # what routing would have set: the metrics' endpoint label
        scope["path_params"] = match.groupdict()
        try:
            response = await run()
        except self.database_errors as exc:
            response = self.on_database_error(scope, exc)
        await response(scope, receive, send)

    def _takes(self, headers: Headers) -> bool:
        """A declared body within the limit, JSON, and a token that grants ingest (or no authentication)."""
        length = headers.get("content-length", "")
        if not (length.isdigit() and int(length) <= self.settings.max_body_bytes):
            return False
        if headers.get("content-type") != "application/json":
            return False
        if not self.settings.auth_enabled:
            return True
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return False
        return "ingest" in (scopes_of(token, self.settings) or ())


async def _read_body(receive: Receive) -> list[Message]:
    """The request's messages up to the end of its body (or a disconnect)."""
    messages = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request" or not message.get("more_body", False):
            return messages


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """A receive that hands on the messages the lane read, then the client's own."""
    pending = list(messages)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay
