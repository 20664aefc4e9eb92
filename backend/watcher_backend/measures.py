"""Research measures of how students deal with compiler errors (pure; docs/measures.md cites each definition).

Each takes one student's compilations of one assignment in time order (``Compilation``): whether it
succeeded, and its *first* error (class, message, file, line), the one the measures were defined on (BlueJ's
javac showed only the first). The error class is ``watcher_core.diagnostics``' normalised message.

* ``error_quotient``: Jadud (2006). Consecutive pairs of compilations; a pair scores 0 unless both ended in
  an error, then 2, plus 3 if both errors have the same type, plus 3 if they are at the same location, plus
  3 if the edit between them was at the same location; each pair's score is divided by 11 (the most a
  pair can score) and the EQ is their mean. We do not know where an edit was (the snapshots would tell, at
  the cost of a diff per compile): that term never scores, so our EQ is at most 8/11.
* ``repeated_error_density``: Becker (2016). In the sequence of compilations, every maximal string of
  consecutive compilations ending in the same error type, of length n >= 2, has r = n - 1 repeats and adds
  r^2 / (r + 1). A success, or another error, ends a string.
* ``watwin``: Watson, Li and Godwin (2013). Pairs of consecutive compilations of the same file whose first
  ended in an error; a pair scores WATWIN_SAME_TYPE if the second ends in the same error type, plus
  WATWIN_SAME_MESSAGE if the full messages are equal, plus WATWIN_SAME_LINE if at the same location, plus
  a time penalty comparing the time to the next compilation with that of every student of the assignment
  for the same error type (mean m, standard deviation s): above m + s WATWIN_SLOW, below m - s WATWIN_FAST,
  else WATWIN_USUAL. Each pair's score is divided by WATWIN_MAX; Watwin is their mean. Simplifications: the
  paper's preparation step (dropping pairs whose fix deleted or commented out the code) needs the code and
  is not done; the population for the time statistics is the assignment's students.

Every measure is None when the student has no pair to score.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

EQ_BOTH_ERRORS = 2
EQ_SAME_TYPE = 3
EQ_SAME_LOCATION = 3
EQ_SAME_EDIT_LOCATION = 3  # not observable here (see above): never scored, still in the maximum
EQ_MAX = EQ_BOTH_ERRORS + EQ_SAME_TYPE + EQ_SAME_LOCATION + EQ_SAME_EDIT_LOCATION  # 11

WATWIN_SAME_TYPE = 4
WATWIN_SAME_MESSAGE = 4
WATWIN_SAME_LINE = 2
WATWIN_SLOW, WATWIN_USUAL, WATWIN_FAST = 25, 15, 1
WATWIN_MAX = WATWIN_SAME_TYPE + WATWIN_SAME_MESSAGE + WATWIN_SAME_LINE + WATWIN_SLOW  # 35


@dataclass(frozen=True)
class Compilation:
    at: datetime
    succeeded: bool
    file: str | None = None  # the file compiled (the first source)
    error_class: str | None = None  # of the first error; None: succeeded, or no error could be parsed
    message: str | None = None
    error_file: str | None = None
    line: int | None = None

    @property
    def failed(self) -> bool:
        return not self.succeeded

    @property
    def location(self) -> tuple[str, int] | None:
        return (self.error_file, self.line) if self.error_file is not None and self.line is not None else None


def from_history(rows: Iterable[Mapping[str, Any]]) -> list[Compilation]:
    """Compilations from ``diagnosis.compile_history``'s rows."""
    return [
        Compilation(
            at=r["timestamp"],
            succeeded=r["succeeded"],
            file=r["file"],
            error_class=r["error_class"],
            message=r["message"],
            error_file=r["error_file"],
            line=r["line"],
        )
        for r in rows
    ]


def _same(a: Any, b: Any) -> bool:
    return a is not None and a == b


# ------------------------------------------------------------------------------------------ Jadud's EQ


def eq_pair_score(first: Compilation, second: Compilation) -> int:
    if not (first.failed and second.failed):
        return 0
    score = EQ_BOTH_ERRORS
    if _same(first.error_class, second.error_class):
        score += EQ_SAME_TYPE
    if _same(first.location, second.location):
        score += EQ_SAME_LOCATION
    return score


def error_quotient(compilations: Sequence[Compilation]) -> float | None:
    pairs = list(zip(compilations, compilations[1:]))
    if not pairs:
        return None
    return sum(eq_pair_score(a, b) / EQ_MAX for a, b in pairs) / len(pairs)


# ------------------------------------------------------------------------------------------ Becker's RED


def repeat_strings(compilations: Sequence[Compilation]) -> list[int]:
    """The number of repeats r of every string of consecutive compilations with the same error type."""
    strings: list[int] = []
    run = 0
    for prev, cur in zip(compilations, compilations[1:]):
        if cur.failed and prev.failed and _same(prev.error_class, cur.error_class):
            run += 1
            continue
        if run:
            strings.append(run)
        run = 0
    if run:
        strings.append(run)
    return strings


def repeated_error_density(compilations: Sequence[Compilation]) -> float | None:
    if len(compilations) < 2:
        return None
    return sum(r * r / (r + 1) for r in repeat_strings(compilations))


# -------------------------------------------------------------------------------------------- Watwin


def watwin_pairs(compilations: Sequence[Compilation]) -> list[tuple[Compilation, Compilation]]:
    """Consecutive compilations of the same file (the next compilation of that file), the first failed."""
    last: dict[str | None, Compilation] = {}
    pairs = []
    for c in compilations:
        before = last.get(c.file)
        if before is not None and before.failed:
            pairs.append((before, c))
        last[c.file] = c
    return pairs


@dataclass(frozen=True)
class TimeStats:
    mean: float
    sd: float


def resolve_time_stats(classes: Iterable[Sequence[Compilation]]) -> dict[str | None, TimeStats]:
    """Per error type: the mean and (population) standard deviation of the seconds from a failed compilation
    to the next compilation of the same file, over every student given (the paper's class population)."""
    samples: dict[str | None, list[float]] = defaultdict(list)
    for compilations in classes:
        for a, b in watwin_pairs(compilations):
            samples[a.error_class].append((b.at - a.at).total_seconds())
    out = {}
    for error_class, times in samples.items():
        mean = sum(times) / len(times)
        out[error_class] = TimeStats(mean, math.sqrt(sum((t - mean) ** 2 for t in times) / len(times)))
    return out


def watwin_pair_score(first: Compilation, second: Compilation, stats: Mapping[str | None, TimeStats]) -> int:
    score = 0
    if second.failed and _same(first.error_class, second.error_class):
        score += WATWIN_SAME_TYPE
    if second.failed and _same(first.message, second.message):
        score += WATWIN_SAME_MESSAGE
    if second.failed and _same(first.location, second.location):
        score += WATWIN_SAME_LINE
    seconds = (second.at - first.at).total_seconds()
    usual = stats.get(first.error_class)
    if usual is None or seconds > usual.mean + usual.sd:
        score += WATWIN_SLOW if usual is not None else WATWIN_USUAL
    elif seconds < usual.mean - usual.sd:
        score += WATWIN_FAST
    else:
        score += WATWIN_USUAL
    return score


def watwin(compilations: Sequence[Compilation], stats: Mapping[str | None, TimeStats]) -> float | None:
    pairs = watwin_pairs(compilations)
    if not pairs:
        return None
    return sum(watwin_pair_score(a, b, stats) / WATWIN_MAX for a, b in pairs) / len(pairs)


# ---------------------------------------------------------------------------------------------- rows


def student_rows(histories: Mapping[str, Sequence[Compilation]]) -> list[dict[str, Any]]:
    """Every student's measures for one assignment (the Watwin time statistics from all of them)."""
    stats = resolve_time_stats(histories.values())
    rows = []
    for student_id, compilations in sorted(histories.items()):
        rows.append(
            {
                "student_id": student_id,
                "compiles": len(compilations),
                "failed_compiles": sum(c.failed for c in compilations),
                "error_quotient": _rounded(error_quotient(compilations)),
                "repeated_error_density": _rounded(repeated_error_density(compilations)),
                "watwin": _rounded(watwin(compilations, stats)),
            }
        )
    return rows


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 6)
