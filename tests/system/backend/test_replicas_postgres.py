"""Two backend processes on one PostgreSQL behind one address, with concurrent agents: nothing lost, nothing
twice, and the rollups both keep equal the scan over the events.

The address is a round-robin TCP proxy on loopback (what a Kubernetes Service does for replicas); every
request opens a new connection, so consecutive requests go to alternate backends. The two backends start at
the same moment on an empty database, so their migrations and their first rollup build meet.
"""

import concurrent.futures
import json
import random
import secrets
import socket
import threading
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlmodel import Session

from support.backend import run_backend, wire_event
from watcher_backend import db, rollups, store

AGENTS, BATCHES, BATCH = 4, 15, 40
T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)


class RoundRobinProxy:
    """Accepts on 127.0.0.1 and pipes each connection to the next upstream port in turn."""

    def __init__(self, upstreams: list[int]):
        self.upstreams = upstreams
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.served = [0] * len(upstreams)
        self._next = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            i = self._next % len(self.upstreams)
            self._next += 1
            self.served[i] += 1
            upstream = socket.create_connection(("127.0.0.1", self.upstreams[i]))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.sock.close()


def class_events(seed: int, n: int) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        kind = rng.choice(("file.save", "file.save", "process.compile", "process.run", "file.delete"))
        fields = dict(
            course="rep",
            section="1",
            assignment="hw1",
            student_id=f"2024{rng.randrange(12):05d}",
            timestamp=T0 + timedelta(seconds=i * 7 + rng.randrange(600)),  # overlapping, out of order
        )
        if kind.startswith("file."):
            fields["path"] = rng.choice(("main.c", "util.c"))
        if kind == "file.save":
            fields["size"] = rng.randrange(5000)
        out.append(wire_event(kind, **fields))
    return out


@pytest.fixture
def two_backends(postgres, tmp_path):
    url = postgres.create_database("watcher_rep_" + secrets.token_hex(4))
    tokens = {scope: secrets.token_hex(16) for scope in ("ingest", "read", "admin")}
    with concurrent.futures.ThreadPoolExecutor(2) as pool:  # both start (and migrate) at once
        handles = list(pool.map(lambda i: run_backend(tmp_path / f"b{i}", database_url=url, tokens=tokens), range(2)))
    proxy = RoundRobinProxy([h.port for h in handles])
    yield url, tokens, proxy, handles
    proxy.close()
    for h in handles:
        h.stop()


def test_two_replicas_behind_one_address_lose_nothing_and_count_nothing_twice(two_backends):
    url, tokens, proxy, handles = two_backends
    events = class_events(seed=1, n=AGENTS * BATCHES * BATCH)
    # each agent its own events of the same students (as filemon and procmon of several nodes), and one
    # event in ten sent again by another agent (a retry after a lost answer, a replayed outbox)
    sends = [events[i::AGENTS] for i in range(AGENTS)]
    rng = random.Random(2)
    for i, s in enumerate(sends):
        s.extend(rng.sample(sends[(i + 1) % AGENTS], len(s) // 10))
        rng.shuffle(s)
    address = f"http://127.0.0.1:{proxy.port}"

    def agent(batch_of_events: list[dict]) -> int:
        accepted = 0
        for start in range(0, len(batch_of_events), BATCH):
            body = json.dumps(batch_of_events[start : start + BATCH])
            # a new connection per request: the proxy alternates the backends
            r = httpx.post(
                address + "/api/v1/events",
                content=body,
                headers={"Authorization": f"Bearer {tokens['ingest']}", "Content-Type": "application/json"},
                timeout=60,
            )
            assert r.status_code == 200, r.text
            assert r.json()["rejected"] == []
            accepted += r.json()["accepted"]
        return accepted

    with concurrent.futures.ThreadPoolExecutor(AGENTS) as pool:
        accepted = sum(pool.map(agent, sends))

    assert accepted == len(events)  # each event stored once, by whichever replica came first
    assert min(proxy.served) >= BATCHES  # both replicas took a share
    status = httpx.get(address + "/api/v1/status", headers={"Authorization": f"Bearer {tokens['read']}"}).json()
    assert status["events_total"] == len(events)

    engine = db.make_engine(url)
    try:
        with Session(engine) as session:
            assert rollups.built_gap(session) == 300  # built once, by one of them
            fast = store.summary(session, "rep", "1", "hw1")
            slow = store.summary_scan(session, "rep", "1", "hw1")
    finally:
        engine.dispose()
    assert fast == slow
    assert fast["events"] == len(events) and fast["students"] == 12
    answers = [
        httpx.get(
            address + "/api/v1/courses/rep/sections/1/assignments/hw1/summary",
            headers={"Authorization": f"Bearer {tokens['read']}"},
        ).json()
        for _ in range(2)
    ]
    assert answers[0] == answers[1] == json.loads(json.dumps(fast, default=_iso))
    for h in handles:
        assert "Traceback" not in h.logs()


def _iso(value):
    return value.isoformat().replace("+00:00", "Z")
