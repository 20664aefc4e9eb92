"""The statistics of the old platform API, as pure functions over snapshot lists.

A "snapshot" here is what the old API called one: a (student, file, time, size) fact. The legacy router
builds them from the event store: a file.save is a snapshot of its size, a file.too_large one of its
(unkept) size, and a file.delete a snapshot of size 0 (the old API's way to say "deleted").

Every function here matches the definition of the old endpoint (reference §1.3) on the same data; where the
old code failed (empty input, numpy on an empty list) we return an empty answer instead of an error.
No numpy: ``percentile`` reproduces numpy's default (linear) interpolation.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True, order=True)
class Snap:
    time: datetime  # aware
    path: str  # relative to the assignment folder
    size: int
    student: str = ""


def round2(value: float) -> float:
    return round(value + 0.0, 2)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation between closest ranks (numpy's default).

    For sorted a[0..n-1]: position p = (n-1)*q/100, result = a[floor p] + (a[ceil p]-a[floor p])*(p-floor p).
    """
    if not values:
        raise ValueError("percentile of an empty list")
    if not 0 <= q <= 100:
        raise ValueError("q must be between 0 and 100")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * (q / 100.0)
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return _interpolate(float(ordered[lo]), float(ordered[hi]), pos - lo)


def _interpolate(a: float, b: float, frac: float) -> float:
    # numpy interpolates from the nearer end (b - (b-a)*(1-t) when t >= 0.5) for float stability;
    # doing the same gives bit-identical results.
    if frac >= 0.5:
        return b - (b - a) * (1.0 - frac)
    return a + (b - a) * frac


def mean(values: Sequence[float]) -> float:
    # fsum: exactly rounded, so the answer does not depend on the order the students come in
    return math.fsum(values) / len(values)


# --- per file, per student -------------------------------------------------------------------------


def snapshot_avg(sizes: Sequence[int]) -> tuple[int | None, float | None]:
    """``/api/snapshot_avg/...``: (count, mean size rounded to 2 dp); both None for no snapshots."""
    if not sizes:
        return None, None
    return len(sizes), round2(mean(sizes))


@dataclass(frozen=True)
class Monitoring:
    snapshot_avg: int | None
    snapshot_size_avg: float | None
    first: datetime | None
    last: datetime | None
    total: float | None  # seconds from first to last snapshot
    interval: float | None  # seconds between the last two snapshots (0 with one snapshot)


def monitoring(snaps: Sequence[Snap]) -> Monitoring:
    """``/api/assignments/snapshot_avg/...``: a student's activity over all files of one assignment."""
    if not snaps:
        return Monitoring(None, None, None, None, None, None)
    ordered = sorted(snaps, key=lambda s: s.time)
    first, last = ordered[0].time, ordered[-1].time
    interval = (ordered[-1].time - ordered[-2].time).total_seconds() if len(ordered) > 1 else 0.0
    return Monitoring(
        snapshot_avg=len(ordered),
        snapshot_size_avg=round2(mean([s.size for s in ordered])),
        first=first,
        last=last,
        total=(last - first).total_seconds(),
        interval=interval,
    )


@dataclass(frozen=True)
class Trend:
    start: datetime  # the bucket's start (aware)
    total_size: int
    size_change: int


def graph_trends(snaps: Iterable[Snap], interval_minutes: int) -> list[Trend]:
    """``/api/graph_data/...``: code size over time in buckets of ``interval_minutes``.

    Buckets are anchored at the earliest snapshot: bucket k covers [t0 + k*I, t0 + (k+1)*I). A bucket's
    total is the sum over files of each file's latest size as of the bucket's last snapshot (so a file
    not touched in the bucket still counts with its earlier size). ``size_change`` is the difference to
    the previous non-empty bucket (the first bucket compares with 0). Empty buckets are left out.
    """
    if interval_minutes <= 0:
        raise ValueError("Interval must be a positive integer.")
    ordered = sorted(snaps, key=lambda s: (s.time, s.path))
    if not ordered:
        return []
    width = timedelta(minutes=interval_minutes)
    t0 = ordered[0].time
    latest: dict[str, int] = {}
    trends: list[Trend] = []
    current_bucket: int | None = None
    previous_total = 0

    def close(bucket: int) -> None:
        nonlocal previous_total
        total = sum(latest.values())
        trends.append(Trend(t0 + bucket * width, total, total - previous_total))
        previous_total = total

    for snap in ordered:
        bucket = int((snap.time - t0) // width)
        if current_bucket is not None and bucket != current_bucket:
            close(current_bucket)
        current_bucket = bucket
        latest[snap.path] = snap.size
    close(current_bucket)  # type: ignore[arg-type]
    return trends


# --- per assignment ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TopStudent:
    student: str
    time: datetime
    code_size: int


@dataclass(frozen=True)
class AssignmentStats:
    percentile_90: float
    percentile_50: float
    avg_bytes: float
    avg_num: float
    top_7: list[TopStudent]


@dataclass(frozen=True)
class StudentSnaps:
    """One student's snapshots in an assignment: how many, their total size, the latest by (time, path)."""

    student: str
    count: int
    total_bytes: int
    latest_time: datetime
    latest_size: int


def assignment_stats(snaps: Sequence[Snap], top: int = 7) -> AssignmentStats:
    """``/api/assignment/...`` from the snapshots themselves (the rollups give the same aggregates)."""
    size_counts = Counter(s.size for s in snaps)
    per_student: dict[str, list[Snap]] = {}
    for snap in snaps:
        per_student.setdefault(snap.student, []).append(snap)
    students = []
    for student, group in per_student.items():
        last = max(group, key=lambda s: (s.time, s.path))
        students.append(StudentSnaps(student, len(group), sum(s.size for s in group), last.time, last.size))
    return assignment_stats_from(sorted(size_counts.items()), students, top)


def assignment_stats_from(
    size_counts: Sequence[tuple[int, int]], students: Sequence[StudentSnaps], top: int = 7
) -> AssignmentStats:
    """``/api/assignment/...``, with the old definitions kept so the platform's charts mean the same:

    * percentile_90 / percentile_50: over every snapshot size of every student (``size_counts``: each
      size and how many snapshots have it, ascending);
    * avg_bytes: the mean over students of each student's mean snapshot size;
    * avg_num: the mean number of snapshots per student;
    * top_7: the 7 most recently active students, newest first, each with the size of their latest
      snapshot (ties broken by student id).
    An assignment without snapshots gives zeros and an empty list (the old code raised).
    """
    if not students:
        return AssignmentStats(0.0, 0.0, 0.0, 0.0, [])
    latest = [TopStudent(s.student, s.latest_time, s.latest_size) for s in students]
    latest.sort(key=lambda t: (-t.time.timestamp(), t.student))
    return AssignmentStats(
        percentile_90=round2(percentile_of_counts(size_counts, 90)),
        percentile_50=round2(percentile_of_counts(size_counts, 50)),
        avg_bytes=round2(mean([s.total_bytes / s.count for s in students])),
        avg_num=round2(mean([s.count for s in students])),
        top_7=latest[:top],
    )


def percentile_of_counts(size_counts: Sequence[tuple[int, int]], q: float) -> float:
    """``percentile`` of the values that ``size_counts`` (value, how many; ascending) stands for."""
    n = sum(count for _, count in size_counts)
    if n == 0:
        raise ValueError("percentile of an empty list")
    pos = (n - 1) * (q / 100.0)
    lo = math.floor(pos)
    ranks = (lo, min(lo + 1, n - 1))
    values: list[float] = []
    seen = 0
    for value, count in size_counts:
        seen += count
        while len(values) < 2 and ranks[len(values)] < seen:
            values.append(float(value))
        if len(values) == 2:
            break
    return _interpolate(values[0], values[1], pos - lo)


def size_change_by_student(snaps: Iterable[Snap], start: datetime, end: datetime) -> dict[str, int]:
    """``/api/total_graph_data/...``: per student, the sum of |size difference| between consecutive
    snapshots of the same file, over snapshots with start <= time <= end (a file's first snapshot in the
    window adds 0). Students with a snapshot in the window appear even when the sum is 0.
    """
    result: dict[str, int] = {}
    last_size: dict[tuple[str, str], int] = {}
    for snap in sorted(snaps, key=lambda s: (s.time, s.student, s.path)):
        if not (start <= snap.time <= end):
            continue
        key = (snap.student, snap.path)
        previous = last_size.get(key)
        result[snap.student] = result.get(snap.student, 0) + (abs(snap.size - previous) if previous is not None else 0)
        last_size[key] = snap.size
    return result


def avg_count(n_events: int, n_students: int) -> float:
    """``/api/build_avg`` and ``/api/run_avg``: events per student that has any, 2 dp; 0.0 if none."""
    if n_students <= 0:
        return 0.0
    return round2(n_events / n_students)


# --- logs ----------------------------------------------------------------------------------------


class SizeHistory:
    """Sizes of each file over time, to answer "how big was this file when it was compiled/run"."""

    def __init__(self, snaps: Iterable[Snap]):
        self._times: dict[str, list[datetime]] = {}
        self._sizes: dict[str, list[int]] = {}
        for snap in sorted(snaps, key=lambda s: s.time):
            self._times.setdefault(snap.path, []).append(snap.time)
            self._sizes.setdefault(snap.path, []).append(snap.size)

    def size_at(self, path: str | None, when: datetime) -> int | None:
        """The size of the closest snapshot of ``path`` at or before ``when``; None when unknown."""
        if path is None or path not in self._times:
            return None
        i = bisect.bisect_right(self._times[path], when)
        if i == 0:
            return None
        return self._sizes[path][i - 1]
