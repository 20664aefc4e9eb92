"""``watcher backend --workers 2`` on one SQLite file: real worker processes on one port (SO_REUSEPORT), real
concurrent clients. Nothing lost, nothing twice, the rollups equal to the scan over the events, the metrics
summed over the workers, a killed worker started again, and SIGTERM stopping them all.
"""

import concurrent.futures
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from sqlmodel import Session

from support.backend import run_backend, wire_event
from watcher_backend import db, store
from watcher_backend.models import EVENT_TABLE

CLIENTS, REQUESTS = 8, 40
T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)


def workers_of(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def cpu_of(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of every series of ``name`` whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        m = re.fullmatch(rf"{name}(?:\{{(.*)\}})? (\S+)", line)
        if m and all(f'{k}="{v}"' in (m.group(1) or "") for k, v in labels.items()):
            total += float(m.group(2))
    return total


def class_events(n: int) -> list[dict]:
    rng = random.Random(7)
    out = []
    for i in range(n):
        kind = rng.choice(("file.save", "file.save", "process.compile", "process.run"))
        fields = dict(
            course="wk",
            student_id=f"2024{rng.randrange(12):05d}",
            timestamp=T0 + timedelta(seconds=i * 5 + rng.randrange(400)),  # overlapping, out of order
        )
        if kind == "file.save":
            fields["size"] = rng.randrange(5000)
        out.append(wire_event(kind, **fields))
    return out


def test_two_workers_on_one_sqlite_file_lose_nothing_count_nothing_twice_and_sum_their_metrics(tmp_path):
    with run_backend(tmp_path, args=["--workers", "2"]) as backend:
        pids = workers_of(backend.process.pid)
        assert len(pids) == 2
        cpu_before = {pid: cpu_of(pid) for pid in pids}
        events = class_events(CLIENTS * REQUESTS)
        sends = [events[i::CLIENTS] for i in range(CLIENTS)]
        rng = random.Random(8)
        resent = 0
        for i, s in enumerate(sends):  # one request in ten is another client's event again (a retry)
            again = rng.sample(sends[(i + 1) % CLIENTS][:REQUESTS], REQUESTS // 10)
            resent += len(again)
            s.extend(again)
            rng.shuffle(s)

        def client(evs: list[dict]) -> int:
            accepted = 0
            for ev in evs:  # a new connection per request: the kernel spreads them over the workers
                r = httpx.post(backend.url + "/api/v1/events", json=[ev], headers=backend.headers("ingest"))
                assert r.status_code == 200, r.text
                assert r.json()["rejected"] == []
                accepted += r.json()["accepted"]
            return accepted

        with concurrent.futures.ThreadPoolExecutor(CLIENTS) as pool:
            accepted = sum(pool.map(client, sends))

        assert accepted == len(events)  # each stored once, by whichever worker came first
        share = {pid: cpu_of(pid) - cpu_before[pid] for pid in pids}
        assert min(share.values()) >= 0.1 * sum(share.values()), share  # both workers served
        with backend.client("read") as http:
            assert http.get("/api/v1/status").json()["events_total"] == len(events)
            scraped = http.get("/metrics").text
        # whichever worker answers the scrape, the counters are both workers' together
        assert metric(scraped, "watcher_events_ingested_total", result="accepted") == len(events)
        assert metric(scraped, "watcher_events_ingested_total", result="duplicate") == resent
        posts = metric(scraped, "http_requests_total", method="POST", endpoint="/api/v1/events", http_status="200")
        assert posts == len(events) + resent
        assert metric(scraped, "watcher_build_info") == 1  # once, not once per worker

        engine = db.make_engine(backend.database_url)
        try:
            with Session(engine) as session:
                fast = store.summary(session, "wk", "1", "hw1")
                assert fast == store.summary_scan(session, "wk", "1", "hw1")
                received = session.execute(select(EVENT_TABLE.c.received_at)).scalars().all()
        finally:
            engine.dispose()
        assert fast["events"] == len(events) and fast["students"] == 12
        assert len(set(received)) == len(received)  # every request its own time, whichever worker took it
    assert "Traceback" not in backend.logs()


def test_a_killed_worker_is_started_again_and_sigterm_stops_every_worker(tmp_path):
    backend = run_backend(tmp_path, args=["--workers", "2"])
    try:
        parent = backend.process.pid
        first, second = workers_of(parent)
        assert backend.post_events([wire_event()]).json()["accepted"] == 1
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            now = workers_of(parent)
            if len(now) == 2 and first not in now:
                break
            time.sleep(0.2)
        else:
            pytest.fail(f"the killed worker was not started again: {workers_of(parent)}\n{backend.logs()}")
        assert re.search(
            rf"worker \d \(pid {first}\) was killed by signal 9; starting it again in \d+ s", backend.logs()
        )
        for _ in range(20):  # served by both, the new one too
            assert backend.post_events([wire_event()]).status_code == 200
        with backend.client("read") as http:
            assert http.get("/api/v1/status").json()["events_total"] == 21
            scraped = http.get("/metrics").text
        # the killed worker's counts stay in the sum
        assert metric(scraped, "watcher_events_ingested_total", result="accepted") == 21
        workers = workers_of(parent)
    finally:
        code = backend.stop()
    assert code == 0
    for pid in workers:
        assert not Path(f"/proc/{pid}").exists(), f"worker {pid} outlived its parent"
    logs = backend.logs()
    assert "Stopping 2 workers (SIGTERM)" in logs and "All workers stopped" in logs
    assert "Traceback" not in logs


def two_workers(tmp_path: Path, port: int) -> list[str]:
    """The command of a backend with two workers on loopback, without tokens (for a run_backend-less test)."""
    return [
        *(sys.executable, "-m", "watcher_core", "backend", "--insecure-no-auth", "--host", "127.0.0.1"),
        *("--port", str(port), "--workers", "2", "--database-url", f"sqlite:///{tmp_path}/w.db"),
        *("--snapshot-dir", str(tmp_path / "snap")),
    ]


def test_workers_refuse_a_port_another_program_holds_in_one_line(tmp_path):
    taken = socket.create_server(("127.0.0.1", 0))
    port = taken.getsockname()[1]
    try:
        proc = subprocess.run(
            two_workers(tmp_path, port),
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        taken.close()
    assert proc.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port} (WATCHER_HOST, WATCHER_PORT)" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_workers_stamp_received_at_in_disjoint_microseconds():
    try:
        for index in range(3):
            store.set_time_slot(index, 3)
            times = [store._unique_now() for _ in range(200)]
            assert all(t.microsecond % 3 == index for t in times)
            assert times == sorted(set(times))  # still strictly increasing
    finally:
        store.set_time_slot(0, 1)


@pytest.mark.skipif(os.geteuid() != 0, reason="a PID namespace needs root (make test runs as root)")
def test_workers_serve_when_the_backend_is_pid_1_as_in_a_container(tmp_path):
    """In a container the backend's main process is pid 1: its workers must not take that for an orphan's
    parent (a real pod found it: every worker exited and restarted)."""
    from support.ports import free_port

    port = free_port()
    log = (tmp_path / "log").open("w")
    proc = subprocess.Popen(
        [
            "unshare",
            "--pid",
            "--fork",
            "--mount-proc",
            "--kill-child",
            *two_workers(tmp_path, port),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "log").read_text()
            time.sleep(0.2)
        r = httpx.post(f"http://127.0.0.1:{port}/api/v1/events", json=[wire_event()])
        assert r.status_code == 200 and r.json()["accepted"] == 1
        (main,) = workers_of(proc.pid)  # unshare's child: the backend, pid 1 in its namespace
        (nspid,) = [
            line.split() for line in Path(f"/proc/{main}/status").read_text().splitlines() if line.startswith("NSpid:")
        ]
        assert nspid[-1] == "1"  # its pid in its own namespace
        assert len(workers_of(main)) == 2
        os.kill(main, signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    text = (tmp_path / "log").read_text()
    assert text.count("API endpoints ready") == 2 and "exited with code" not in text, text
