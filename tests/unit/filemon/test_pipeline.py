"""Reconciling one path at a time (no threads, no inotify): events, state, snapshots, retries."""

import os

import pytest
from prometheus_client import CollectorRegistry

from watcher_agents.delivery.outbox import Outbox
from watcher_agents.filemon import pipeline as pl
from watcher_agents.filemon.metrics import FilemonMetrics
from watcher_agents.filemon.state import StateStore
from watcher_core import identity, snapshots

REL = "os-1-202400001/hw1/src/main.c"


class Env:
    def __init__(self, tmp_path, **rules):
        self.root = tmp_path / "ws"
        self.snap = tmp_path / "snap"
        self.outbox = Outbox(tmp_path / "state" / "outbox.db", max_events=rules.pop("max_events", 1000))
        self.state = StateStore(self.outbox.connection, self.outbox.lock)
        self.registry = CollectorRegistry()
        self.retries = []
        self.p = pl.Pipeline(
            self.root,
            identity.LayoutRules(**rules),
            self.snap,
            self.outbox,
            self.state,
            "node-a",
            FilemonMetrics(self.registry),
            workers=1,
            on_retry=lambda rel, delay: self.retries.append((rel, delay)),
        )

    def write(self, rel, data: bytes):
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path

    def events(self):
        return [ev for _, ev in self.outbox.peek_batch(1000)]

    def metric(self, name, labels=None):
        return self.registry.get_sample_value(name, labels or {}) or 0


@pytest.fixture
def env(tmp_path):
    e = Env(tmp_path)
    yield e
    e.outbox.close()


def test_save_then_unchanged_then_modify_then_delete(env):
    env.write(REL, b"int main(void){return 0;}\n")
    assert env.p.reconcile(REL) == "save"
    (ev,) = env.events()
    assert ev["type"] == "file.save" and ev["path"] == "src/main.c" and ev["assignment"] == "hw1"
    assert (ev["course"], ev["section"], ev["student_id"], ev["node"]) == ("os", "1", "202400001", "node-a")
    assert snapshots.read_snapshot(env.snap, ev["sha256"]) == b"int main(void){return 0;}\n"
    assert env.state.get(REL).sha256 == ev["sha256"]
    assert env.p.reconcile(REL) == "unchanged"
    env.write(REL, b"int main(void){return 1;}\n")
    assert env.p.reconcile(REL) == "save"
    os.unlink(env.root / REL)
    assert env.p.reconcile(REL) == "delete"
    assert env.p.reconcile(REL) == "absent"
    assert [e["type"] for e in env.events()] == ["file.save", "file.save", "file.delete"]
    assert env.state.get(REL) is None
    assert env.metric("file_events_total", {"event_type": "create"}) == 1
    assert env.metric("file_events_total", {"event_type": "modify"}) == 1
    assert env.metric("file_events_total", {"event_type": "delete"}) == 1


def test_touch_without_change_is_not_a_save_but_is_remembered(env):
    path = env.write(REL, b"x = 1\n")
    env.p.reconcile(REL)
    os.utime(path, ns=(1_700_000_000_000_000_000, 1_700_000_000_000_000_000))
    assert env.p.reconcile(REL) == "unchanged"
    assert env.state.get(REL).mtime_ns == 1_700_000_000_000_000_000
    assert env.p.reconcile(REL, scan=True) == "unchanged"  # fast path: size and mtime match
    assert len(env.events()) == 1


def test_same_content_twice_is_stored_once(env):
    env.write(REL, b"same\n")
    env.write("os-1-202400002/hw1/main.c", b"same\n")
    env.p.reconcile(REL)
    env.p.reconcile("os-1-202400002/hw1/main.c")
    assert env.metric("filemon_snapshots_written_total") == 1
    assert env.metric("filemon_snapshots_reused_total") == 1


def test_event_ids_are_deterministic_across_a_lost_state(tmp_path):
    a = Env(tmp_path / "a")
    b = Env(tmp_path / "b")
    for e in (a, b):
        e.write(REL, b"v1\n")
    mtime = (a.root / REL).stat().st_mtime_ns
    os.utime(b.root / REL, ns=(mtime, mtime))
    a.p.reconcile(REL)
    b.p.reconcile(REL)
    assert a.events()[0]["event_id"] == b.events()[0]["event_id"]
    # A -> B -> A again is three distinct versions (the mtime differs)
    for data, t in ((b"v2\n", mtime + 10**9), (b"v1\n", mtime + 2 * 10**9)):
        a.write(REL, data)
        os.utime(a.root / REL, ns=(t, t))
        a.p.reconcile(REL)
    assert len({e["event_id"] for e in a.events()}) == 3


def test_too_large_is_recorded_once_without_content(tmp_path):
    e = Env(tmp_path, max_file_size=100)
    e.write(REL, b"x" * 101)
    assert e.p.reconcile(REL) == "too_large"
    assert e.p.reconcile(REL) == "unchanged"
    (ev,) = e.events()
    assert ev["type"] == "file.too_large" and ev["size"] == 101 and ev["limit"] == 100
    assert not e.snap.exists() or not any(e.snap.rglob("*"))
    e.write(REL, b"small\n")
    assert e.p.reconcile(REL) == "save"  # back under the limit: a normal save
    assert e.metric("filemon_files_skipped_total", {"reason": "too_large"}) >= 1


def test_changed_while_reading_is_retried_not_dropped(env, monkeypatch):
    # Fault: the file's mtime moves between the two fstat calls (a writer racing the read).
    env.write(REL, b"partial")
    real_fstat = os.fstat
    calls = {"n": 0}

    def racing_fstat(fd):
        st = real_fstat(fd)
        calls["n"] += 1
        if calls["n"] == 2:
            return os.stat_result(
                (
                    st.st_mode,
                    st.st_ino,
                    st.st_dev,
                    st.st_nlink,
                    st.st_uid,
                    st.st_gid,
                    st.st_size + 5,
                    st.st_atime,
                    st.st_mtime + 1,
                    st.st_ctime,
                )
            )
        return st

    monkeypatch.setattr(pl.os, "fstat", racing_fstat)
    assert env.p.reconcile(REL) == "retry:changed_while_reading"
    assert env.retries == [(REL, env.p.quiet)]
    assert env.events() == [] and env.state.get(REL) is None
    monkeypatch.setattr(pl.os, "fstat", real_fstat)
    assert env.p.reconcile(REL) == "save"
    assert env.metric("filemon_read_retries_total") == 1


def test_outbox_full_keeps_state_and_retries(tmp_path):
    e = Env(tmp_path, max_events=1)
    e.write(REL, b"one\n")
    e.write("os-1-202400001/hw1/two.c", b"two\n")
    assert e.p.reconcile(REL) == "save"
    assert e.p.reconcile("os-1-202400001/hw1/two.c") == "retry:outbox"
    assert e.state.get("os-1-202400001/hw1/two.c") is None  # nothing recorded without its event
    assert e.retries == [("os-1-202400001/hw1/two.c", pl.OUTBOX_RETRY_SECONDS)]
    assert e.metric("filemon_outbox_unavailable_total", {"reason": "full"}) == 1
    e.outbox.ack([r for r, _ in e.outbox.peek_batch(10)])
    assert e.p.reconcile("os-1-202400001/hw1/two.c") == "save"


def test_symlinks_are_never_followed(env, tmp_path):
    secret = tmp_path / "secret.c"
    secret.write_text("root only\n")
    (env.root / "os-1-202400001/hw1").mkdir(parents=True)
    os.symlink(secret, env.root / REL.replace("src/main.c", "link.c"))
    assert env.p.reconcile("os-1-202400001/hw1/link.c") == "absent"
    assert env.events() == []


@pytest.mark.parametrize(
    "rel, reason",
    [
        ("os-1-202400001/notes.c", "not_in_assignment"),
        ("os-1-202400001/hw1/.venv/x.py", "ignored"),
        ("os-1-202400001/hw1/a.out", "extension"),
        ("notastudent/hw1/a.c", "not_in_assignment"),
    ],
)
def test_classify_reasons(rel, reason):
    assert pl.classify(identity.LayoutRules(), rel) == (None, reason)


def test_scan_uses_mtime_live_uses_arrival_for_old_mtimes(env):
    path = env.write(REL, b"old\n")
    old = 1_600_000_000_000_000_000
    os.utime(path, ns=(old, old))
    env.p.reconcile(REL, scan=True)  # scan: no noticed time -> the mtime
    assert env.events()[0]["timestamp"].startswith("2020-09-13")
    env.write(REL, b"moved in\n")
    os.utime(path, ns=(old, old))
    env.p.reconcile(REL, noticed_at=1_750_000_000.0)  # live: mv kept an old mtime -> arrival time
    assert env.events()[1]["timestamp"].startswith("2025-06-15")


def test_undecodable_names_are_skipped():
    rel = "os-1-202400001/hw1/" + b"\xff.c".decode("utf-8", "surrogateescape")
    assert pl.classify(identity.LayoutRules(), rel) == (None, "bad_name")


def test_a_live_change_upgrades_a_queued_scan_job(env):
    # workers not started: jobs stay queued
    env.p.submit(REL, scan=True)
    assert env.p._queued[REL] == (True, None)
    env.p.submit(REL, noticed_at=123.0)
    assert env.p._queued[REL] == (False, 123.0)
    env.p.submit(REL, scan=True)  # a later scan does not downgrade it
    assert env.p._queued[REL] == (False, 123.0)
    assert env.p.pending() == 1
