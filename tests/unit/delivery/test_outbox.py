"""The durable outbox: bounded, all-or-nothing puts, acks, dead letters, and events surviving a reopen."""

import time

import pytest

from watcher_agents.delivery.outbox import Outbox, OutboxDiskFull, OutboxFull
from watcher_core import wire


def _save(i: int) -> wire.FileSave:
    return wire.FileSave(
        event_id=wire.make_event_id("test", i),
        timestamp=wire.utcnow(),
        node="n1",
        source="filemon",
        course="os",
        section="1",
        student_id="2020",
        assignment="hw1",
        path=f"f{i}.c",
        sha256="a" * 64,
        size=i,
    )


def test_put_peek_ack_in_order(tmp_path):
    box = Outbox(tmp_path / "o.db")
    box.put([_save(i) for i in range(5)])
    assert box.depth() == 5
    batch = box.peek_batch(3)
    assert [ev["path"] for _, ev in batch] == ["f0.c", "f1.c", "f2.c"]
    assert batch[0][1]["type"] == "file.save"
    assert box.ack([rowid for rowid, _ in batch]) == 3
    assert box.depth() == 2
    assert [ev["path"] for _, ev in box.peek_batch(10)] == ["f3.c", "f4.c"]
    assert box.ack([999999]) == 0  # unknown ids are ignored
    box.close()


def test_reopen_after_close_keeps_events(tmp_path):
    box = Outbox(tmp_path / "o.db")
    box.put([_save(i) for i in range(3)])
    size = box.bytes()
    box.close()
    again = Outbox(tmp_path / "o.db")
    assert again.depth() == 3 and again.bytes() == size
    assert [ev["event_id"] for _, ev in again.peek_batch(10)] == [_save(i).event_id for i in range(3)]
    again.close()


def test_bound_on_events_is_all_or_nothing(tmp_path):
    box = Outbox(tmp_path / "o.db", max_events=4)
    box.put([_save(i) for i in range(3)])
    with pytest.raises(OutboxFull):
        box.put([_save(10), _save(11)])
    assert box.depth() == 3  # nothing of the refused batch was stored
    box.put([_save(12)])
    assert box.depth() == 4
    assert box.fill_ratio() == 1.0
    box.ack([r for r, _ in box.peek_batch(2)])
    box.put([_save(13), _save(14)])
    assert box.depth() == 4
    box.close()


def test_bound_on_bytes(tmp_path):
    one = len(_save(1).model_dump_json())
    box = Outbox(tmp_path / "o.db", max_bytes=one * 2 + 5)
    box.put([_save(1), _save(2)])
    with pytest.raises(OutboxFull):
        box.put([_save(3)])
    box.close()


def test_also_runs_in_the_same_transaction(tmp_path):
    box = Outbox(tmp_path / "o.db", max_events=1)
    box.connection.execute("CREATE TABLE state (k TEXT PRIMARY KEY)")

    def write_state(conn):
        conn.execute("INSERT INTO state VALUES ('x')")

    box.put([_save(1)], also=write_state)
    assert box.connection.execute("SELECT COUNT(*) FROM state").fetchone()[0] == 1

    def failing(conn):
        conn.execute("INSERT INTO state VALUES ('y')")
        raise RuntimeError("boom")

    box.ack([r for r, _ in box.peek_batch(1)])
    with pytest.raises(RuntimeError):
        box.put([_save(2)], also=failing)
    # neither the event nor the state row of the failed transaction was committed
    assert box.depth() == 0
    assert box.connection.execute("SELECT COUNT(*) FROM state").fetchone()[0] == 1
    assert box.peek_batch(5) == []
    box.close()


def test_dead_letter_moves_and_counts(tmp_path):
    box = Outbox(tmp_path / "o.db")
    box.put([_save(1), _save(2)])
    (rowid, ev), _ = box.peek_batch(2)
    assert box.dead_letter(rowid, "path: must not contain '..'")
    assert box.depth() == 1 and box.dead_letter_count() == 1
    letters = box.dead_letters()
    assert letters[0]["event_id"] == ev["event_id"] and "path" in letters[0]["error"]
    assert not box.dead_letter(rowid, "again")  # already gone
    box.close()
    assert Outbox(tmp_path / "o.db").dead_letter_count() == 1


def test_dead_letters_are_bounded(tmp_path):
    box = Outbox(tmp_path / "o.db", max_dead_letters=3)
    box.put([_save(i) for i in range(6)])
    for rowid, _ in box.peek_batch(6):
        box.dead_letter(rowid, "bad")
    assert box.connection.execute("SELECT COUNT(*) FROM dead_letters").fetchone()[0] == 3
    assert box.dead_letter_count() == 3
    box.close()


def test_oldest_age(tmp_path):
    box = Outbox(tmp_path / "o.db")
    assert box.oldest_age_seconds() == 0.0
    box.put([_save(1)])
    time.sleep(0.2)
    assert 0.15 <= box.oldest_age_seconds() < 5
    box.close()


def test_peek_respects_max_bytes_but_returns_one(tmp_path):
    box = Outbox(tmp_path / "o.db")
    box.put([_save(i) for i in range(10)])
    one = len(_save(1).model_dump_json())
    assert len(box.peek_batch(10, max_bytes=one * 3 + 3)) == 3
    assert len(box.peek_batch(10, max_bytes=1)) == 1
    box.close()


def test_disk_full_is_a_typed_error_and_the_outbox_keeps_working(tmp_path):
    # A real SQLITE_FULL: cap the database's page count so the next write cannot grow the file.
    box = Outbox(tmp_path / "o.db")
    box.put([_save(0)])
    pages = box.connection.execute("PRAGMA page_count").fetchone()[0]
    box.connection.execute(f"PRAGMA max_page_count={pages}")
    big = [_save(i) for i in range(1, 400)]
    with pytest.raises(OutboxDiskFull):
        box.put(big)
    assert box.depth() == 1
    box.connection.execute("PRAGMA max_page_count=1073741823")  # space again
    box.put(big)
    assert box.depth() == 400
    box.close()


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError):
        Outbox(tmp_path / "o.db", synchronous="sometimes")
    with pytest.raises(TypeError):
        Outbox(tmp_path / "p.db").put([object()])
