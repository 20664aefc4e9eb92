"""Erased contents leave the disk: filemon (in-process, real inotify, real snapshot store) records students'
saves into a REAL backend on loopback; the backend erases a student; filemon's snapshot collector removes
the contents no event refers to any more, keeps shared ones and recent ones, and rides out a backend outage."""

from __future__ import annotations

import logging
import os
import time

import httpx
from integration.filemon.harness import by_path, new_student, running_filemon, sha, student_dir, timeline, wait_until

from support.backend import run_backend
from watcher_agents.filemon import gc
from watcher_core import snapshots

DAY = 86400.0
STARTER = b"#include <stdio.h>\n/* hw1 starter code, the same for every student */\nint main(void) { return 0; }\n"


def filemon(ws, state, backend, extra=(), collector_options=None):
    """filemon in this process with the backend's ingest token; the collector only runs when the test says
    (its first run is an hour away) unless ``collector_options`` says otherwise."""
    ws.mkdir(parents=True, exist_ok=True)
    return running_filemon(
        ws,
        state,
        backend,
        extra=list(extra),
        collector_options={"initial_delay": 3600} if collector_options is None else collector_options,
    )


def gc_count(agent, result: str) -> float:
    return agent.runtime.registry.get_sample_value("filemon_snapshot_gc_total", {"result": result}) or 0.0


def age(backend, content: bytes, seconds: float = 2 * DAY) -> None:
    """As if the content was last saved ``seconds`` ago (its grace period is over)."""
    past = time.time() - seconds
    os.utime(snapshots.snapshot_path(backend.snapshot_dir, sha(content)), (past, past))


def stored(backend, content: bytes) -> bool:
    return snapshots.read_snapshot(backend.snapshot_dir, sha(content)) == content


def save(ws, student, name: str, content: bytes) -> None:
    folder = student_dir(ws, student) / "hw1"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(content)


def recorded(backend, student, *names: str) -> bool:
    saves = by_path(timeline(backend, student), "file.save")
    return all(name in saves for name in names)


def erase(backend, student) -> dict:
    with backend.client("admin") as http:
        r = http.delete(f"/api/v1/students/{student[2]}")
    assert r.status_code == 200, r.text
    return r.json()


def queue(backend) -> dict:
    """The backend's answer to filemon's question, asked with the ingest token like filemon does."""
    with backend.client("ingest") as http:
        r = http.get(gc.UNREFERENCED_PATH, params={"limit": 5000})
    assert r.status_code == 200, r.text
    return r.json()


def test_erasing_a_student_removes_their_own_contents_and_keeps_shared_and_recent_ones(tmp_path):
    a, b = new_student(), new_student()
    mine = b'int main(void) { puts("A\'s own solution"); }\n'
    fresh = b'int main(void) { puts("A\'s last edit, minutes ago"); }\n'
    with (
        run_backend(tmp_path) as backend,
        filemon(tmp_path / "ws", tmp_path / "state", backend, ["--snapshot-gc-grace", "3600"]) as agent,
    ):
        save(tmp_path / "ws", a, "main.c", STARTER)
        save(tmp_path / "ws", b, "main.c", STARTER)
        save(tmp_path / "ws", a, "mine.c", mine)
        save(tmp_path / "ws", a, "fresh.c", fresh)
        wait_until(
            lambda: recorded(backend, a, "main.c", "mine.c", "fresh.c") and recorded(backend, b, "main.c"),
            message="the saves of A and B in the backend",
        )
        age(backend, STARTER)  # old enough to go: only B's reference may keep it
        age(backend, mine)
        mine_on_disk = snapshots.snapshot_path(backend.snapshot_dir, sha(mine)).stat().st_size  # compressed

        assert erase(backend, a)["contents_queued"] == 3
        report = agent.collector.run_once()

        assert report.ok and (report.removed, report.recent, report.errors) == (1, 1, 0), report
        assert not stored(backend, mine)  # A's own content left the disk
        assert stored(backend, STARTER)  # B still refers to the starter code
        assert stored(backend, fresh)  # saved within the grace period
        assert gc_count(agent, "removed") == 1 and gc_count(agent, "recent") == 1 and gc_count(agent, "error") == 0
        assert agent.runtime.registry.get_sample_value("filemon_snapshot_gc_bytes_removed_total") == mine_on_disk
        assert agent.runtime.registry.get_sample_value("filemon_snapshot_gc_last_run_timestamp_seconds") > 0
        # B's timeline still has its content.
        b_save = by_path(timeline(backend, b), "file.save")["main.c"][-1]
        with backend.client("read") as http:
            assert http.get(f"/api/v1/snapshots/{b_save['sha256']}").content == STARTER

        # The recent one is still queued; once its grace period is over the next run removes it.
        assert queue(backend) == {"sha256": [sha(fresh)], "pending": 0}
        age(backend, fresh)
        report = agent.collector.run_once()
        assert report.ok and report.removed == 1 and not stored(backend, fresh)
        assert queue(backend) == {"sha256": [], "pending": 0}
        assert stored(backend, STARTER)
        assert timeline(backend, a) == []


def test_backend_down_is_counted_logged_once_and_the_next_run_succeeds(tmp_path, caplog):
    a = new_student()
    gone = b"erased while the backend was away\n"
    with run_backend(tmp_path) as backend, filemon(tmp_path / "ws", tmp_path / "state", backend) as agent:
        save(tmp_path / "ws", a, "gone.c", gone)
        wait_until(lambda: recorded(backend, a, "gone.c"), message="the save in the backend")
        age(backend, gone)
        assert erase(backend, a)["contents_queued"] == 1

        backend.stop()
        with caplog.at_level(logging.INFO, logger=gc.__name__):
            down = [agent.collector.run_once() for _ in range(2)]
            assert [r.failure for r in down] == ["connection", "connection"]
            assert gc_count(agent, "error") == 2 and stored(backend, gone)
            assert agent.collector.alive()
            health = httpx.get(f"http://127.0.0.1:{agent.runtime.http.port}/healthz", timeout=5)
            assert health.status_code == 200 and health.json()["snapshot_collector"] == "running"

            backend.start()  # same port, database and store
            up = agent.collector.run_once()

        assert up.ok and up.removed == 1 and not stored(backend, gone)
        assert queue(backend) == {"sha256": [], "pending": 0}
        warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(warnings) == 1 and "cannot reach the backend" in warnings[0] and "WATCHER_BACKEND_URL" in warnings[0]
        assert any("answers again" in r.getMessage() for r in caplog.records)


def test_the_collector_runs_by_itself_with_the_agents_token(tmp_path):
    """The thread as deployed: its first run after a random delay up to the interval, then every interval."""
    a = new_student()
    gone = b"collected without anyone asking\n"
    with (
        run_backend(tmp_path) as backend,
        filemon(
            tmp_path / "ws", tmp_path / "state", backend, ["--snapshot-gc-interval", "0.5"], collector_options={}
        ) as agent,
    ):
        save(tmp_path / "ws", a, "gone.c", gone)
        wait_until(lambda: recorded(backend, a, "gone.c"), message="the save in the backend")
        age(backend, gone)
        erase(backend, a)
        wait_until(lambda: not stored(backend, gone), timeout=30, message="the collector to remove the content")
        wait_until(lambda: queue(backend) == {"sha256": [], "pending": 0}, timeout=30, message="the queue to empty")
        assert gc_count(agent, "error") == 0


def test_interval_0_turns_the_collector_off(tmp_path):
    with (
        run_backend(tmp_path) as backend,
        filemon(tmp_path / "ws", tmp_path / "state", backend, ["--snapshot-gc-interval", "0"]) as agent,
    ):
        assert agent.collector is None
        health = httpx.get(f"http://127.0.0.1:{agent.runtime.http.port}/healthz", timeout=5)
        assert health.status_code == 200 and health.json()["snapshot_collector"] == "off"
