"""Per-file debounce: one emission after a quiet period, at the latest after a maximum wait.

A file that is written many times in a row (an editor's autosave, a program writing its output) should
give one snapshot when it settles, not one per write; but a file that never settles must still be
snapshotted every ``max_wait`` seconds.

For each pending path we keep (first change, last change). Its deadline is
``min(last + quiet, first + max_wait)``. The heap holds at most ONE entry per pending path; when an
entry comes due we recompute the path's current deadline and either emit the path or push it back with
the later deadline. After an emission the path is no longer pending, so the next change starts a fresh
bucket. There are no timers to cancel, hence no orphan timer firing into the next bucket (the old
debouncer's bug, which degraded to one flush per write after its first forced flush).

Not thread-safe by itself: the watch thread owns it. Time is passed in (monotonic seconds), so the
logic is tested without sleeping.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass


@dataclass
class _Pending:
    first: float
    last: float
    not_before: float = 0.0  # for retries scheduled in the future


class Debouncer:
    def __init__(self, quiet: float = 0.3, max_wait: float = 3.0) -> None:
        if quiet < 0 or max_wait < quiet:
            raise ValueError("need 0 <= quiet <= max_wait")
        self.quiet = quiet
        self.max_wait = max_wait
        self._pending: dict[str, _Pending] = {}
        self._heap: list[tuple[float, int, str]] = []
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._pending)

    def __contains__(self, key: str) -> bool:
        return key in self._pending

    def _deadline(self, p: _Pending) -> float:
        return max(min(p.last + self.quiet, p.first + self.max_wait), p.not_before)

    def changed(self, key: str, now: float) -> None:
        """A change to ``key`` was seen at ``now``."""
        p = self._pending.get(key)
        if p is None:
            p = self._pending[key] = _Pending(now, now)
            heapq.heappush(self._heap, (self._deadline(p), next(self._seq), key))
        else:
            p.last = max(p.last, now)

    def retry_at(self, key: str, when: float) -> None:
        """Emit ``key`` again no earlier than ``when`` (a failed read or a full outbox)."""
        p = self._pending.get(key)
        if p is None:
            start = when - self.quiet  # so the deadline is exactly ``when``
            p = self._pending[key] = _Pending(start, start, when)
            heapq.heappush(self._heap, (when, next(self._seq), key))
        else:
            p.not_before = max(p.not_before, when)

    def discard(self, key: str) -> bool:
        """Forget a pending key (it was deleted, or is being handled right now). Its heap entry goes stale."""
        return self._pending.pop(key, None) is not None

    def discard_prefix(self, prefix: str) -> list[str]:
        """Forget every pending key equal to ``prefix`` or below ``prefix/``; returns them."""
        below = prefix.rstrip("/") + "/"
        gone = [k for k in self._pending if k == prefix or k.startswith(below)]
        for k in gone:
            del self._pending[k]
        return gone

    def next_deadline(self) -> float | None:
        """When ``due`` will next return something (it may be earlier than needed, never later)."""
        while self._heap and self._heap[0][2] not in self._pending:
            heapq.heappop(self._heap)  # stale: discarded or already emitted
        return self._heap[0][0] if self._heap else None

    def due(self, now: float) -> list[str]:
        """Pop every key whose deadline has passed, oldest deadline first."""
        out = []
        while self._heap and self._heap[0][0] <= now:
            _, _, key = heapq.heappop(self._heap)
            p = self._pending.get(key)
            if p is None:
                continue  # stale entry
            deadline = self._deadline(p)
            if deadline <= now:
                del self._pending[key]
                out.append(key)
            else:
                heapq.heappush(self._heap, (deadline, next(self._seq), key))
        return out

    def drain(self) -> list[str]:
        """Everything pending, for shutdown: emit now whatever the deadlines say."""
        keys = sorted(self._pending, key=lambda k: self._pending[k].first)
        self._pending.clear()
        self._heap.clear()
        return keys
