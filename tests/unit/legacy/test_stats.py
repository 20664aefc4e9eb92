from datetime import UTC, datetime, timedelta

import pytest

from watcher_backend.legacy import stats as ls
from watcher_backend.legacy.stats import Snap

UTC = UTC
T0 = datetime(2025, 3, 2, 1, 0, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


# Values numpy.percentile (default method="linear") gives for these inputs, worked out by hand:
# sorted a, position p=(n-1)q/100, a[floor p] + (a[ceil p]-a[floor p]) * frac(p).
@pytest.mark.parametrize(
    "values,q,expected",
    [
        ([1, 2, 3, 4], 50, 2.5),
        ([1, 2, 3, 4], 90, 3.7),
        ([4, 1, 3, 2], 90, 3.7),
        ([10, 20, 30, 40, 50], 90, 46.0),
        ([15, 20, 35, 40, 50], 50, 35.0),
        ([3, 1, 2], 90, 2.8),
        ([7], 90, 7.0),
        ([7], 50, 7.0),
        ([1, 10, 100, 1000], 90, 730.0),
        ([0, 100], 25, 25.0),
        (list(range(11)), 33, 3.3),
        ([5, 5, 5], 0, 5.0),
        ([1, 2, 3], 100, 3.0),
    ],
)
def test_percentile_matches_numpy_linear(values, q, expected):
    assert ls.percentile(values, q) == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_percentile_rejects_empty_and_out_of_range():
    with pytest.raises(ValueError):
        ls.percentile([], 50)
    with pytest.raises(ValueError):
        ls.percentile([1], 101)


def test_snapshot_avg():
    assert ls.snapshot_avg([]) == (None, None)
    assert ls.snapshot_avg([10, 20, 25]) == (3, 18.33)


def test_monitoring():
    snaps = [Snap(at(0), "a.c", 10), Snap(at(90), "b.c", 30), Snap(at(60), "a.c", 20)]
    m = ls.monitoring(snaps)
    assert m.snapshot_avg == 3
    assert m.snapshot_size_avg == 20.0
    assert m.first == at(0) and m.last == at(90)
    assert m.total == 5400.0
    assert m.interval == 1800.0
    one = ls.monitoring([Snap(at(5), "a.c", 7)])
    assert (one.total, one.interval) == (0.0, 0.0)
    assert ls.monitoring([]) == ls.Monitoring(None, None, None, None, None, None)


def test_graph_trends_hand_computed_example():
    # 10-minute buckets anchored at the first snapshot (t=0).
    snaps = [
        Snap(at(0), "a.c", 100),  # bucket 0: a=100
        Snap(at(4), "b.c", 50),  # bucket 0: a=100 b=50  -> 150
        Snap(at(9.9), "a.c", 120),  # bucket 0: a=120 b=50  -> 170
        # bucket 1 (10..20) empty -> omitted
        Snap(at(25), "b.c", 0),  # bucket 2: a=120 b=0 (deleted) -> 120, change -50
        Snap(at(31), "c.c", 10),  # bucket 3: 130, change +10
        Snap(at(39), "a.c", 200),  # bucket 3: a=200 -> 210, change +90 total vs 120
    ]
    trends = ls.graph_trends(snaps, 10)
    assert [(t.start, t.total_size, t.size_change) for t in trends] == [
        (at(0), 170, 170),
        (at(20), 120, -50),
        (at(30), 210, 90),
    ]


def test_graph_trends_empty_and_bad_interval():
    assert ls.graph_trends([], 5) == []
    with pytest.raises(ValueError, match="Interval must be a positive integer."):
        ls.graph_trends([Snap(at(0), "a.c", 1)], 0)
    with pytest.raises(ValueError):
        ls.graph_trends([Snap(at(0), "a.c", 1)], -3)


def test_assignment_stats():
    snaps = [
        Snap(at(0), "a.c", 100, "001"),
        Snap(at(10), "a.c", 300, "001"),  # 001: mean 200, 2 snapshots, latest 300 @10
        Snap(at(5), "m.py", 50, "002"),  # 002: mean 50, 1 snapshot, latest 50 @5
        Snap(at(1), "x.c", 10, "003"),
        Snap(at(2), "y.c", 20, "003"),
        Snap(at(20), "x.c", 30, "003"),  # 003: mean 20, 3 snapshots, latest 30 @20
    ]
    st = ls.assignment_stats(snaps)
    sizes = [100, 300, 50, 10, 20, 30]
    assert st.percentile_90 == round(ls.percentile(sizes, 90), 2) == 200.0  # sorted 10 20 30 50 100 300, p=4.5
    assert st.percentile_50 == 40.0
    assert st.avg_bytes == round((200 + 50 + 20) / 3, 2)
    assert st.avg_num == 2.0
    assert [(t.student, t.time, t.code_size) for t in st.top_7] == [
        ("003", at(20), 30),
        ("001", at(10), 300),
        ("002", at(5), 50),
    ]


def test_top_7_code_size_is_the_file_saved_last_not_the_students_code():
    # the old definition (reference 1.3 #11): the single latest snapshot; v1's summary sums the files instead
    snaps = [Snap(at(0), "a.c", 300, "001"), Snap(at(1), "b.c", 20, "001")]
    assert [t.code_size for t in ls.assignment_stats(snaps).top_7] == [20]


def test_assignment_stats_top_7_limit_and_empty():
    snaps = [Snap(at(i), "a.c", i, f"{i:03d}") for i in range(10)]
    st = ls.assignment_stats(snaps)
    assert [t.student for t in st.top_7] == ["009", "008", "007", "006", "005", "004", "003"]
    assert ls.assignment_stats([]) == ls.AssignmentStats(0.0, 0.0, 0.0, 0.0, [])


def test_size_change_by_student():
    snaps = [
        Snap(at(0), "a.c", 100, "001"),  # before the window
        Snap(at(10), "a.c", 150, "001"),  # first in window: 0
        Snap(at(20), "a.c", 90, "001"),  # |90-150| = 60
        Snap(at(25), "b.c", 40, "001"),  # first of b.c: 0
        Snap(at(30), "b.c", 45, "001"),  # 5  (at the inclusive end)
        Snap(at(31), "b.c", 1000, "001"),  # after
        Snap(at(15), "a.c", 7, "002"),  # only one: 0, but listed
    ]
    assert ls.size_change_by_student(snaps, at(10), at(30)) == {"001": 65, "002": 0}


def test_avg_count():
    assert ls.avg_count(0, 0) == 0.0
    assert ls.avg_count(7, 3) == 2.33


def test_size_history_closest_at_or_before():
    h = ls.SizeHistory([Snap(at(0), "a.c", 10), Snap(at(10), "a.c", 20), Snap(at(5), "b.c", 1)])
    assert h.size_at("a.c", at(-1)) is None
    assert h.size_at("a.c", at(0)) == 10
    assert h.size_at("a.c", at(9)) == 10
    assert h.size_at("a.c", at(10)) == 20
    assert h.size_at("a.c", at(100)) == 20
    assert h.size_at("zzz.c", at(100)) is None
    assert h.size_at(None, at(100)) is None
