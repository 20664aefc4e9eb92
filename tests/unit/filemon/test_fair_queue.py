"""A pipeline worker's queue serves the student folders in turn (one student's flood does not hold up
the others' saves: tests/security/test_filemon_attacks.py) and keeps each folder's order; the stop comes
after every queued job."""

from watcher_agents.filemon.pipeline import _FairQueue


def test_folders_are_served_in_turn_each_in_its_own_order_and_the_stop_last():
    q = _FairQueue()
    for i in range(1000):
        q.put(f"flooder/hw1/f{i}.c", owner="flooder")
    q.put(None)  # the stop, as Pipeline.stop puts it
    q.put("classmate/hw1/a.c", owner="classmate")
    q.put("classmate/hw1/b.c", owner="classmate")
    got = [q.get() for _ in range(1003)]
    assert got[:4] == ["flooder/hw1/f0.c", "classmate/hw1/a.c", "flooder/hw1/f1.c", "classmate/hw1/b.c"]
    assert [r for r in got if r and r.startswith("flooder")] == [f"flooder/hw1/f{i}.c" for i in range(1000)]
    assert got[-1] is None
