"""Group commit: concurrent ingest requests share one transaction.

Every write of events (``POST /api/v1/events``, the old API's writes) hands its validated events to the
app's ``IngestWriter`` and waits (on SQLite their rows are made then, ``store.Batch.ready``). One group at a
time is written in a worker thread: once it holds the write lock, everything waiting, in arrival order, in
one transaction (``store.ingest_many``: one insert statement, one rollup update, one
commit); then each request gets its own result, and what arrived meanwhile forms the next group. Alone, a
request is written at once (nothing waits for a timer); under load one commit serves many requests, which
is what makes single-event requests cheap (docs/backend.md, "Ingest").

Durability and idempotency are ``store.ingest``'s: a request is answered only after the transaction holding
its events has committed, and its result counts exactly its own events (an event that two requests of one
group carry is stored with the first and is a duplicate for the second). When a group's transaction fails,
each of its requests is written again on its own, so one request's failure never becomes another's.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from watcher_core import wire

from . import store

# Events in one group: a few agents' full batches. A request is never split; one larger than this is a group
# of its own.
GROUP_EVENTS = 4 * wire.MAX_BATCH_EVENTS


@dataclass
class _Waiting:
    batch: store.Batch
    answer: asyncio.Future[store.IngestResult]


class IngestWriter:
    """Group commit of ingest requests for one engine. Use from the event loop: ``await writer.write(events)``."""

    def __init__(self, engine: Engine, group_events: int = GROUP_EVENTS):
        self.engine = engine
        self.group_events = group_events
        self._waiting: deque[_Waiting] = deque()
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._taken: list[_Waiting] = []  # the group being written
        self.sqlite = engine.dialect.name == "sqlite"

    async def write(self, events: Sequence[wire.Event], backlog: int | None = None) -> store.IngestResult:
        """Store valid events (``store.ingest``'s result for them), sharing a transaction with the requests
        that wait at the same time; returns after the commit. Database errors are raised as they are."""
        loop = asyncio.get_running_loop()
        waiting = _Waiting(store.Batch(events, backlog).ready(sqlite=self.sqlite), loop.create_future())
        self._waiting.append(waiting)
        if self._task is None or self._task.done() or self._loop is not loop:
            # No group is being written (or only on a loop that has ended): write this one now. While a
            # group is written, requests just queue: the running task takes them next.
            self._loop = loop
            self._task = loop.create_task(self._write_waiting())
        return await waiting.answer

    async def _write_waiting(self) -> None:
        while self._waiting:
            try:
                group, answers = await asyncio.to_thread(self._write_next)
            except BaseException as exc:  # cancelled (the loop is ending) or a bug: no request waits forever
                for waiting in [*self._taken, *self._waiting]:
                    _answer(waiting, exc)
                self._waiting.clear()
                raise
            for waiting, answer in zip(group, answers):
                _answer(waiting, answer)

    def _write_next(self) -> tuple[list[_Waiting], list[store.IngestResult | Exception]]:
        """In a worker thread: the write lock first, then the group: on SQLite with several workers
        (``--workers``) the lock may be another's for a while, and what arrives meanwhile joins this group
        (one commit for more requests). Only this thread takes from the queue; the event loop appends."""
        with store.write_lock(self.engine):
            group = self._taken = self._take()
            return group, self._write([w.batch for w in group]) if group else []

    def _take(self) -> list[_Waiting]:
        if not self._waiting:
            return []
        group = [self._waiting.popleft()]
        events = len(group[0].batch.events)
        while self._waiting and events + len(self._waiting[0].batch.events) <= self.group_events:
            events += len(self._waiting[0].batch.events)
            group.append(self._waiting.popleft())
        return group

    def _write(self, batches: list[store.Batch]) -> list[store.IngestResult | Exception]:
        """In a worker thread: the group in one transaction; if that fails, each batch on its own."""
        try:
            with Session(self.engine) as session:
                return list(store.ingest_many(session, batches))
        except Exception as exc:
            if len(batches) == 1:
                return [exc]
        answers: list[store.IngestResult | Exception] = []
        for batch in batches:
            try:
                with Session(self.engine) as session:
                    answers.append(store.ingest_many(session, [batch])[0])
            except Exception as exc:
                answers.append(exc)
        return answers


def _answer(waiting: _Waiting, answer: store.IngestResult | BaseException) -> None:
    if waiting.answer.done():  # the request was cancelled (its client went away); its events are stored
        return
    if isinstance(answer, asyncio.CancelledError):
        waiting.answer.cancel()
    elif isinstance(answer, BaseException):
        waiting.answer.set_exception(answer)
    else:
        waiting.answer.set_result(answer)
