"""The outbox serves students in turn: one student's flood does not hold up a classmate's events, each
student's events keep their order, and an outbox written before turns existed is upgraded in place."""

import json
import random
import shutil
import sqlite3
from pathlib import Path

import pytest

from watcher_agents.delivery.outbox import Outbox, Serialized, student_key
from watcher_core import wire

OLD_OUTBOX = Path(__file__).parent / "data" / "outbox-e6082c3.sqlite3"


def _save(student_id: str, i: int) -> wire.FileSave:
    return wire.FileSave(
        event_id=wire.make_event_id("turns", student_id, i),
        timestamp=wire.utcnow(),
        node="n1",
        source="filemon",
        course="os",
        section="1",
        student_id=student_id,
        assignment="hw1",
        path=f"f{i}.c",
        sha256="a" * 64,
        size=i,
    )


def _who(batch) -> list[str]:
    return [f"{ev.get('student_id', '-')}:{ev['path']}" for _, ev in batch]


def _drain(box: Outbox, batch: int = 500) -> list[dict]:
    out = []
    while taken := box.peek_batch(batch):
        out += [ev for _, ev in taken]
        box.ack([rowid for rowid, _ in taken])
    return out


def test_students_are_served_in_turn_each_in_their_own_order(tmp_path):
    box = Outbox(tmp_path / "o.db")
    box.put([_save("1", i) for i in range(4)])
    box.put([_save("2", i) for i in range(2)])
    box.put([_save("1", 4)])
    box.put([{"event_id": "node-event-0001", "path": "none.c"}])  # an event of no student takes turns too
    box.put([_save("3", 0)])
    assert _who(box.peek_batch(20)) == [
        "1:f0.c", "2:f0.c", "-:none.c", "3:f0.c",  # turn 0: one event of each
        "1:f1.c", "2:f1.c",
        "1:f2.c",
        "1:f3.c",
        "1:f4.c",
    ]  # fmt: skip
    box.close()


def test_a_classmates_event_put_behind_a_flood_is_in_the_next_batch(tmp_path):
    box = Outbox(tmp_path / "o.db")
    for start in range(0, 20_000, 1000):  # the flood, put as an agent puts it: many transactions
        box.put([_save("666", i) for i in range(start, start + 1000)])
    first = box.peek_batch(500)
    assert {ev["student_id"] for _, ev in first} == {"666"}
    box.put([_save("7", 0)])  # the classmate saves while the first batch is on its way
    box.ack([rowid for rowid, _ in first])
    second = box.peek_batch(500)
    assert _who(second)[0] == "7:f0.c"
    # the flood itself keeps its order, and nothing is lost or doubled
    box.ack([rowid for rowid, _ in second])
    rest = _drain(box)
    flood = [ev["path"] for _, ev in first] + [ev["path"] for _, ev in second[1:]] + [ev["path"] for ev in rest]
    assert flood == [f"f{i}.c" for i in range(20_000)]
    assert box.depth() == 0 and box.bytes() == 0
    box.close()


def test_the_worst_case_200_classmates_behind_one_flood_are_served_in_the_first_batches(tmp_path):
    box = Outbox(tmp_path / "o.db")
    box.put([_save("666", i) for i in range(100_000)])
    for s in range(200):
        box.put([_save(f"{1000 + s}", i) for i in range(3)])
    batches = []
    while len(batches) < 3:
        taken = box.peek_batch(500)
        batches.append(taken)
        box.ack([rowid for rowid, _ in taken])
    classmates = [ev for batch in batches for _, ev in batch if ev["student_id"] != "666"]
    assert len(classmates) == 600  # all 200 x 3, within the first 3 batches of 500 (3 turns of 201)
    assert box.depth() == 100_000 + 600 - 1500
    box.close()


def test_a_student_who_had_nothing_queued_joins_the_turn_being_served(tmp_path):
    box = Outbox(tmp_path / "o.db")
    box.put([_save("1", i) for i in range(10)])
    box.ack([rowid for rowid, _ in box.peek_batch(5)])
    box.peek_batch(1)  # serving the flood's turn 5 now
    box.put([_save("2", 0), _save("2", 1)])
    assert _who(box.peek_batch(4)) == ["1:f5.c", "2:f0.c", "1:f6.c", "2:f1.c"]
    box.close()


def test_a_student_whose_queue_emptied_does_not_start_behind_the_others(tmp_path):
    # the flood's high turns are gone with its events: once everything is sent, a new event of the flooder
    # and one of a classmate are each other's equals again
    box = Outbox(tmp_path / "o.db")
    box.put([_save("1", i) for i in range(1000)])
    _drain(box)
    box.put([_save("2", 0)])
    box.put([_save("1", 1000)])
    box.put([_save("2", 1)])
    assert _who(box.peek_batch(3)) == ["2:f0.c", "1:f1000.c", "2:f1.c"]
    box.close()


def test_turns_survive_a_reopen(tmp_path):
    box = Outbox(tmp_path / "o.db")
    box.put([_save("1", i) for i in range(100)])
    box.ack([rowid for rowid, _ in box.peek_batch(10)])
    box.close()  # e.g. the agent restarts with the flood still queued
    again = Outbox(tmp_path / "o.db")
    again.put([_save("1", 100), _save("2", 0)])
    assert _who(again.peek_batch(3)) == ["1:f10.c", "2:f0.c", "1:f11.c"]
    assert [ev["path"] for ev in _drain(again) if ev["student_id"] == "1"] == [f"f{i}.c" for i in range(10, 101)]
    again.close()


def test_random_puts_and_acks_keep_each_students_order_and_wait_at_most_one_turn_per_student(tmp_path):
    rng = random.Random(17)
    box = Outbox(tmp_path / "o.db")
    sent: dict[str, int] = {}
    delivered: list[str] = []
    for step in range(300):
        s = f"{rng.choice([1, 1, 1, 1, 2, 3, 4, 5])}"  # student 1 puts half of everything
        n = rng.randint(1, 40)
        box.put([_save(s, sent.get(s, 0) + i) for i in range(n)])
        sent[s] = sent.get(s, 0) + n
        if step % 3 == 0:
            taken = box.peek_batch(rng.randint(1, 60))
            box.ack([rowid for rowid, _ in taken])
            delivered += [f"{ev['student_id']}:{ev['path']}" for _, ev in taken]
        if step == 200:  # behind the batch on its way, a classmate's event waits one turn of each student
            in_flight = box.peek_batch(30)
            box.put([_save("9", 0)])
            waiting = len(box.queued_by_student(100))
            box.ack([rowid for rowid, _ in in_flight])
            delivered += [f"{ev['student_id']}:{ev['path']}" for _, ev in in_flight]
            position = next(i for i, (_, ev) in enumerate(box.peek_batch(100_000)) if ev["student_id"] == "9")
            assert box.depth() > 1000 and position < waiting, (position, waiting)
    delivered += [f"{ev['student_id']}:{ev['path']}" for ev in _drain(box, 37)]
    by_student: dict[str, list[int]] = {}
    for item in delivered:
        s, path = item.split(":")
        by_student.setdefault(s, []).append(int(path[1:-2]))
    assert {s: len(v) for s, v in by_student.items() if s != "9"} == sent
    assert all(v == sorted(v) for v in by_student.values())
    box.close()


def test_requeued_dead_letters_take_turns_too(tmp_path):
    box = Outbox(tmp_path / "o.db")
    refused = [_save("2", 0), _save("2", 1)]
    box.put(refused)
    for rowid, _ in box.peek_batch(2):
        box.dead_letter(rowid, "422")
    flood = [_save("1", i) for i in range(50)]
    box.put(flood)
    assert box.requeue_dead_letters() == 2
    order = _who(box.peek_batch(100))
    assert order.index("2:f0.c") < order.index("2:f1.c") < 5  # not behind the 50 of student 1
    assert box.depth() == 52 and box.bytes() == sum(len(e.model_dump_json()) for e in refused + flood)
    box.close()


def test_queued_by_student_names_the_flood(tmp_path):
    box = Outbox(tmp_path / "o.db")
    box.put([_save("666", i) for i in range(50)] + [_save("7", 0)] + [{"event_id": "x" * 8}])
    assert box.queued_by_student(2) == [("os/1/666", 50), ("", 1)]
    box.close()


def test_student_key_of_models_dicts_and_serialized_agree():
    event = _save("2020", 1)
    assert student_key(event.model_dump(mode="json")) == "os/1/2020"
    assert Serialized.of(event).student == "os/1/2020" == Serialized.of(event.model_dump(mode="json")).student
    assert student_key({"course": "os", "section": "1"}) == ""  # names no student
    assert student_key({"course": "os", "section": 1, "student_id": "2"}) == ""


def test_an_outbox_written_by_the_fifo_version_is_upgraded_in_place(tmp_path):
    # made by the outbox of commit e6082c3 (data/make_old_outbox.py): 14 events, 2 dead letters
    path = tmp_path / "outbox.sqlite3"
    shutil.copy(OLD_OUTBOX, path)
    with sqlite3.connect(path) as old:
        old_rows = old.execute("SELECT id, event_id, body, size, enqueued_at FROM outbox ORDER BY id").fetchall()
        assert "turn" not in {r[1] for r in old.execute("PRAGMA table_info(outbox)")}
    box = Outbox(path)
    assert box.depth() == 14 and box.bytes() == sum(r[3] for r in old_rows)
    assert box.dead_letter_count() == 2
    assert box.oldest_age_seconds() > 0
    # nothing of the events changed: same ids, bodies, sizes, times
    rows = box.connection.execute("SELECT id, event_id, body, size, enqueued_at FROM outbox ORDER BY id").fetchall()
    assert rows == old_rows
    # the old backlog goes first, in its old order; then new events take turns: a flood put after the
    # upgrade does not hold up a classmate, and each student's new events come after their old ones
    old_order = [f"{ev.get('student_id', '-')}:{ev['path']}" for ev in (json.loads(r[2]) for r in old_rows)]
    box.put([_save("1001", i) for i in range(10)])
    box.put([_save("1005", 0), _save("1003", 99)])
    assert _who(box.peek_batch(100)) == old_order + [
        "1001:f0.c", "1005:f0.c", "1003:f99.c", *(f"1001:f{i}.c" for i in range(1, 10))
    ]  # fmt: skip
    assert box.requeue_dead_letters() == 2
    assert box.depth() == 28
    box.close()
    again = Outbox(path)  # a second open finds nothing to upgrade and keeps the order
    assert again.depth() == 28 and _who(again.peek_batch(14)) == old_order
    assert {s for s, _ in again.queued_by_student(10)} >= {"", "os/1/1001", "os/1/1002", "os/1/1004"}
    again.close()


def test_an_upgrade_that_fails_midway_leaves_the_old_file_as_it_was(tmp_path, monkeypatch):
    path = tmp_path / "outbox.sqlite3"
    shutil.copy(OLD_OUTBOX, path)
    real_connect = sqlite3.connect

    def full_disk(*args, **kwargs):  # a real SQLITE_FULL: the file may not grow, so the index cannot be built
        conn = real_connect(*args, **kwargs)
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count={pages}")
        return conn

    monkeypatch.setattr(sqlite3, "connect", full_disk)
    with pytest.raises(sqlite3.OperationalError, match="full"):
        Outbox(path)
    monkeypatch.setattr(sqlite3, "connect", real_connect)
    with real_connect(path) as old:
        assert "turn" not in {r[1] for r in old.execute("PRAGMA table_info(outbox)")}
        assert old.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 14
    box = Outbox(path)  # with room again, the upgrade succeeds
    assert box.depth() == 14
    box.close()


def test_the_batch_is_read_through_the_turn_index(tmp_path):
    box = Outbox(tmp_path / "o.db")
    plan = box.connection.execute("EXPLAIN QUERY PLAN SELECT id FROM outbox ORDER BY turn, id LIMIT 5").fetchall()
    assert any("outbox_turn" in row[-1] for row in plan) and not any("TEMP B-TREE" in row[-1] for row in plan)
    box.close()
