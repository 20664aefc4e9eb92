"""EQ, RED and Watwin on worked examples, computed by hand in the comments (docs/measures.md)."""

from datetime import UTC, datetime, timedelta

import pytest

from watcher_backend import measures
from watcher_backend.measures import Compilation

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def ok(seconds, file="main.c"):
    return Compilation(at=T0 + timedelta(seconds=seconds), succeeded=True, file=file)


def err(seconds, error_class, line, message=None, file="main.c"):
    return Compilation(
        at=T0 + timedelta(seconds=seconds),
        succeeded=False,
        file=file,
        error_class=error_class,
        message=message or error_class,
        error_file=file,
        line=line,
    )


def test_eq_worked_example():
    # A@3, A@3, B@5, ok, A@3
    # (A@3, A@3): both errors 2 + same type 3 + same line 3 = 8
    # (A@3, B@5): both errors 2                               = 2
    # (B@5, ok) and (ok, A@3): not both errors                 = 0, 0
    # EQ = (8/11 + 2/11 + 0 + 0) / 4 = 10/44
    history = [err(0, "A", 3), err(10, "A", 3), err(20, "B", 5), ok(30), err(40, "A", 3)]
    assert measures.error_quotient(history) == pytest.approx(10 / 44)


def test_eq_bounds():
    assert measures.error_quotient([ok(0), ok(1), ok(2)]) == 0
    # the same error at the same line every time: 8/11 (the edit-location term is not observable)
    assert measures.error_quotient([err(i, "A", 3) for i in range(5)]) == pytest.approx(8 / 11)
    assert measures.error_quotient([err(0, "A", 3)]) is None  # no pair
    # an error without a parsed class still counts as an error, never as the "same type"
    unknown = Compilation(at=T0, succeeded=False)
    assert measures.error_quotient([unknown, unknown]) == pytest.approx(2 / 11)


@pytest.mark.parametrize(
    ("sequence", "expected"),
    [
        ("AAA", 4 / 3),  # one string, r = 2: 2^2/3
        ("AAAA", 9 / 4),  # r = 3: 9/4
        ("AABB", 1.0),  # two strings, r = 1 each: 1/2 + 1/2
        ("AA.AA", 1.0),  # a success ends a string: 1/2 + 1/2
        ("ABAB", 0.0),  # never the same error twice in a row
        ("AAABA", 4 / 3),
        ("....", 0.0),
    ],
)
def test_red_worked_examples(sequence, expected):
    history = [ok(i) if c == "." else err(i, c, 1) for i, c in enumerate(sequence)]
    assert measures.repeated_error_density(history) == pytest.approx(expected)


def test_red_separates_what_eq_does_not():
    # Becker's point: EQ gives AAAB.. and AB.. other weights than RED, which grows with the length of
    # each string: one string of 4 (2.25) weighs more than two strings of 2 (1.0), same number of repeats.
    one_long = [err(i, "A", 1) for i in range(4)] + [ok(4), ok(5)]
    two_short = [err(0, "A", 1), err(1, "A", 1), ok(2), err(3, "B", 1), err(4, "B", 1), ok(5)]
    assert measures.repeated_error_density(one_long) > measures.repeated_error_density(two_short)


def test_watwin_worked_example():
    # Student 1: A@3 (t=0), A@3 same message (t=10), ok (t=70). Student 2: A@5 (t=0), ok (t=40).
    # Times to the next compilation after an A: 10, 60, 40. Mean 36.667, population sd 20.548:
    # fast below 16.119, slow above 57.215.
    # s1 pair 1: same type 4 + same message 4 + same line 2 + fast (10 s) 1 = 11
    # s1 pair 2: the second succeeded, nothing the same;  slow (60 s) 25 = 25
    # s2 pair 1: usual (40 s) 15 = 15
    # Watwin s1 = (11 + 25) / 2 / 35 = 18/35; s2 = 15/35
    s1 = [err(0, "A", 3, "msg"), err(10, "A", 3, "msg"), ok(70)]
    s2 = [err(0, "A", 5, "other"), ok(40)]
    stats = measures.resolve_time_stats([s1, s2])
    assert stats["A"].mean == pytest.approx(110 / 3)
    assert stats["A"].sd == pytest.approx(20.548, abs=1e-3)
    assert measures.watwin(s1, stats) == pytest.approx(18 / 35)
    assert measures.watwin(s2, stats) == pytest.approx(15 / 35)
    rows = measures.student_rows({"s1": s1, "s2": s2})
    assert [(r["student_id"], r["compiles"], r["failed_compiles"]) for r in rows] == [("s1", 3, 2), ("s2", 2, 1)]
    assert rows[0]["watwin"] == pytest.approx(18 / 35, abs=1e-6)


def test_watwin_pairs_follow_the_file():
    # util.c compiled in between does not break main.c's pair; util.c's own pair is scored too
    history = [err(0, "A", 1), err(5, "B", 2, file="util.c"), ok(9, file="util.c"), ok(20)]
    pairs = measures.watwin_pairs(history)
    assert [(a.at, b.at) for a, b in pairs] == [
        (T0 + timedelta(seconds=5), T0 + timedelta(seconds=9)),
        (T0, T0 + timedelta(seconds=20)),
    ]
    assert measures.watwin([ok(0), ok(1)], {}) is None  # no failed compilation: nothing to score
