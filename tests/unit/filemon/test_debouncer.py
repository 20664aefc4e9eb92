"""The per-file debouncer, driven by a simulated clock (the timings with real inotify are in integration)."""

import pytest

from watcher_agents.filemon.debouncer import Debouncer


def simulate(deb, changes, until, step=0.01):
    """changes: {key: [times]}; returns [(time, key)] emissions."""
    events = sorted((t, k) for k, ts in changes.items() for t in ts)
    out = []
    t = 0.0
    i = 0
    while t <= until + 1e-9:
        while i < len(events) and events[i][0] <= t + 1e-9:
            deb.changed(events[i][1], events[i][0])
            i += 1
        out += [(round(t, 2), k) for k in deb.due(t)]
        t = round(t + step, 2)
    return out


def test_one_change_emits_after_quiet():
    deb = Debouncer(0.3, 3.0)
    assert simulate(deb, {"a": [0.0]}, 2) == [(0.3, "a")]
    assert len(deb) == 0


def test_steady_writes_every_100ms_for_5s_give_two_emissions():
    deb = Debouncer(0.3, 3.0)
    writes = [round(i * 0.1, 2) for i in range(51)]  # 0.0 .. 5.0
    out = simulate(deb, {"a": writes}, 8)
    assert [t for t, _ in out] == [3.0, 5.3]


def test_old_orphan_timer_bug_is_gone():
    # The replaced debouncer (0.6 s window) flushed at 3.01, 3.11, 3.61, 4.11 for writes every 0.5 s over 4 s.
    deb = Debouncer(0.6, 3.0)
    writes = [i * 0.5 for i in range(9)]  # 0.0 .. 4.0
    out = simulate(deb, {"a": writes}, 8)
    assert [t for t, _ in out] == [3.0, 4.6]


def test_files_are_independent():
    deb = Debouncer(0.3, 3.0)
    out = simulate(deb, {"a": [0.0, 0.2], "b": [0.1]}, 2)
    assert out == [(0.4, "b"), (0.5, "a")]


def test_discard_and_restart():
    deb = Debouncer(0.3, 3.0)
    deb.changed("a", 0.0)
    assert deb.discard("a") and not deb.discard("a")
    assert deb.due(10) == []
    deb.changed("a", 10.0)
    assert deb.due(10.2) == [] and deb.due(10.3) == ["a"]


def test_retry_at_delays_emission():
    deb = Debouncer(0.3, 3.0)
    deb.retry_at("a", 5.0)
    assert deb.next_deadline() == 5.0
    assert deb.due(4.9) == [] and deb.due(5.0) == ["a"]
    deb.changed("b", 0.0)
    deb.retry_at("b", 2.0)  # pending and asked to wait: not before 2.0
    assert deb.due(1.0) == [] and deb.due(2.0) == ["b"]


def test_heap_holds_one_entry_per_pending_file():
    deb = Debouncer(0.3, 3.0)
    for i in range(1000):
        deb.changed("a", i * 0.001)
    assert len(deb._heap) == 1


def test_discard_prefix_and_drain():
    deb = Debouncer(0.3, 3.0)
    for k in ("s/hw1/a.c", "s/hw1/sub/b.c", "s/hw10/c.c", "t/x.c"):
        deb.changed(k, 0.0)
    assert sorted(deb.discard_prefix("s/hw1")) == ["s/hw1/a.c", "s/hw1/sub/b.c"]
    assert sorted(deb.drain()) == ["s/hw10/c.c", "t/x.c"]
    assert deb.next_deadline() is None


def test_bad_arguments():
    with pytest.raises(ValueError):
        Debouncer(3.0, 1.0)
