"""The group commit (ingest_writer.IngestWriter) on a real SQLite file: requests that wait while a group is
written form the next group; a failed group is written again request by request, so only the request that
fails gets the error; a request whose client went away does not stop the others. The faults are injected
(a real database does not fail on demand)."""

from __future__ import annotations

import asyncio
import threading

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlmodel import Session

from support.backend import wire_event
from watcher_backend import db, ingest_writer, migrate, rollups, store
from watcher_backend.models import EVENT_TABLE
from watcher_core import wire


@pytest.fixture
def engine(tmp_path):
    engine = db.make_engine(f"sqlite:///{tmp_path / 'w.db'}")
    migrate.upgrade(engine)
    with Session(engine) as session:
        rollups.ensure_built(session, 300)
    yield engine
    engine.dispose()


def events(n: int, **fields) -> list[list[wire.Event]]:
    return [[wire.parse_event(wire_event("file.save", **({"path": f"f{i}.c"} | fields)))] for i in range(n)]


def stored(engine) -> int:
    with Session(engine) as session:
        return store.status(session)["events_total"]


def test_requests_that_wait_during_a_write_share_the_next_commit(engine, monkeypatch):
    groups: list[int] = []
    first_started, release = threading.Event(), threading.Event()
    real = store.ingest_many

    def ingest_many(session, batches, **kwargs):
        groups.append(len(batches))
        if len(groups) == 1:  # hold the first group until the others queued behind it
            first_started.set()
            release.wait(10)
        return real(session, batches, **kwargs)

    monkeypatch.setattr(store, "ingest_many", ingest_many)
    writer = ingest_writer.IngestWriter(engine)

    async def main():
        first = asyncio.create_task(writer.write(events(1)[0]))
        await asyncio.to_thread(first_started.wait, 10)
        rest = [asyncio.create_task(writer.write(batch)) for batch in events(20, student_id="202400002")]
        await asyncio.sleep(0.05)
        release.set()
        return await first, await asyncio.gather(*rest)

    first, rest = asyncio.run(main())
    assert groups == [1, 20]
    assert first.accepted == 1 and [r.accepted for r in rest] == [1] * 20
    assert stored(engine) == 21


def test_requests_that_arrive_while_another_process_writes_join_the_group_taken_after_the_lock(
    engine, monkeypatch, tmp_path
):
    """Another worker (``--workers``) holds the database file's write lock: the writer takes its group only once
    it holds the lock, so the requests that queued meanwhile share one commit."""
    import fcntl
    import os

    groups: list[int] = []
    real = store.ingest_many
    monkeypatch.setattr(store, "ingest_many", lambda s, b, **kw: groups.append(len(b)) or real(s, b, **kw))
    writer = ingest_writer.IngestWriter(engine)
    other = os.open(f"{tmp_path / 'w.db'}.writer-lock", os.O_RDWR | os.O_CREAT)  # another process's descriptor
    fcntl.flock(other, fcntl.LOCK_EX)

    async def main():
        first = asyncio.create_task(writer.write(events(1)[0]))
        try:
            await asyncio.sleep(0.2)  # the writer thread now waits for the lock
            rest = [asyncio.create_task(writer.write(batch)) for batch in events(20, student_id="202400002")]
            await asyncio.sleep(0.05)
            waited = list(groups)
        finally:
            fcntl.flock(other, fcntl.LOCK_UN)
        return waited, await first, await asyncio.gather(*rest)

    try:
        waited, first, rest = asyncio.run(main())
    finally:
        os.close(other)
    assert waited == []  # nothing written while the other process held the lock
    assert groups == [21]
    assert first.accepted == 1 and [r.accepted for r in rest] == [1] * 20
    assert stored(engine) == 21


def test_a_group_is_never_larger_than_its_event_limit(engine, monkeypatch):
    groups: list[int] = []
    real = store.ingest_many
    monkeypatch.setattr(store, "ingest_many", lambda s, b, **kw: groups.append(len(b)) or real(s, b, **kw))
    writer = ingest_writer.IngestWriter(engine, group_events=8)

    async def main():
        return await asyncio.gather(*(writer.write(batch) for batch in events(30)))

    assert [r.accepted for r in asyncio.run(main())] == [1] * 30
    assert sum(groups) == 30 and max(groups) <= 8


def test_a_failing_request_fails_alone(engine, monkeypatch):
    poison = events(1, student_id="202400666")[0]
    real = store.ingest_many

    def ingest_many(session, batches, **kwargs):
        if any(b.events is poison for b in batches):
            raise OperationalError("INSERT", {}, Exception("disk I/O error"))
        return real(session, batches, **kwargs)

    monkeypatch.setattr(store, "ingest_many", ingest_many)
    writer = ingest_writer.IngestWriter(engine)
    batches = events(5)
    batches.insert(2, poison)

    async def main():
        return await asyncio.gather(*(writer.write(batch) for batch in batches), return_exceptions=True)

    answers = asyncio.run(main())
    assert isinstance(answers[2], OperationalError)
    assert [a.accepted for i, a in enumerate(answers) if i != 2] == [1] * 5
    assert stored(engine) == 5


def test_a_request_whose_client_went_away_does_not_stop_the_others(engine):
    writer = ingest_writer.IngestWriter(engine)

    async def main():
        tasks = [asyncio.create_task(writer.write(batch)) for batch in events(10)]
        await asyncio.sleep(0)
        tasks[3].cancel()
        return await asyncio.gather(*tasks, return_exceptions=True)

    answers = asyncio.run(main())
    assert isinstance(answers[3], asyncio.CancelledError)
    assert [a.accepted for i, a in enumerate(answers) if i != 3] == [1] * 9
    assert stored(engine) in (9, 10)  # the cancelled one was stored if its group had started


def test_two_batches_of_one_group_with_the_same_event(engine):
    """As if written one after the other: the first stores it, the second counts a duplicate; each batch
    keeps its own received_at."""
    shared = wire.parse_event(wire_event("process.compile"))
    a, b = [shared, *events(1)[0]], [shared, *events(1, path="g.c")[0]]
    with Session(engine) as session:
        first, second = store.ingest_many(session, [store.Batch(a), store.Batch(b, backlog=4)])
    assert (first.accepted, first.duplicates) == (2, 0)
    assert (second.accepted, second.duplicates, second.duplicates_by_type) == (1, 1, {"process.compile": 1})
    with Session(engine) as session:
        agents = store.status(session)["agents"]
        rows = session.execute(select(EVENT_TABLE.c.event_id, EVENT_TABLE.c.received_at)).all()
    received = {event_id: at for event_id, at in rows}
    assert [(a["source"], a["events_received"], a["backlog"]) for a in agents] == [("filemon", 2, 4), ("procmon", 2, 4)]
    assert received[a[1].event_id] == received[shared.event_id] != received[b[1].event_id]
