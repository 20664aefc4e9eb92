"""Time conversions of the old platform API (the ``/api/{class_div}/...`` routes).

The old API spoke Korea time (KST, UTC+9, no daylight saving) without offsets; the new store keeps
aware UTC. Everything that crosses between the two goes through this module, so each rule is written
once.

The old API's writers are the old agents, never the platform (it only reads): the old filemon, the old
procmon and the notebook hook all send **naive times from their UTC container clocks**, and the old
server read them as UTC (its container had no TZ) before storing KST. So by default:

* Snapshot timestamps in a write URL (``POST .../{filename}/{timestamp}``, ``YYYYMMDD_HHMMSS``) are UTC
  (``WATCHER_LEGACY_SNAPSHOT_TZ=UTC``): a save the old filemon posts at ``20250101_030000`` (its clock)
  is listed back as ``20250101_120000`` KST, as the old API listed it. A trailing ``.ext``
  (``20250730_151753.c``) is ignored, as before.
* Naive datetimes in a log body (``"timestamp": "2025-07-30T06:17:53"``) are UTC too
  (``WATCHER_LEGACY_NAIVE_TZ=UTC``); aware values are converted exactly.
* ``KST`` (or ``Asia/Seoul``) for either setting is for a writer whose clock is set to Korea time.
* Years outside 1970-9998 are refused (422).
* Range bounds in read URLs (``/api/total_graph_data/.../{start}/{end}``) are KST when they carry no
  offset, in either ``YYYYMMDD_HHMMSS`` or ISO 8601 form.
* Responses: snapshot timestamps are ``"%Y%m%d_%H%M%S"`` KST strings, log timestamps naive KST datetimes,
  graph buckets ``"%Y%m%d_%H%M"`` KST, all exactly like the old API.

Bad input raises ``LegacyTimeError`` (a ValueError) whose message the router returns as a 422.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

KST = timezone(timedelta(hours=9), "KST")
UTC = UTC

SNAPSHOT_FORMAT = "%Y%m%d_%H%M%S"
GRAPH_FORMAT = "%Y%m%d_%H%M"

_SNAPSHOT_RE = re.compile(r"\d{8}_\d{6}")

# The two zones a legacy setting may name. Only fixed offsets: KST has had no DST since 1988, and this
# avoids depending on the system tz database.
_ZONES = {"UTC": UTC, "KST": KST, "ASIA/SEOUL": KST}  # keys: ZONE_NAMES upper-cased

# Times outside these years are refused: they are typos or fuzz, and near the ends of the calendar the
# nine-hour shift to KST would overflow ``datetime``.
MIN_YEAR, MAX_YEAR = 1970, 9998


class LegacyTimeError(ValueError):
    """A legacy timestamp cannot be read. The message says what was expected."""


# What the two zone settings (the backend's WATCHER_LEGACY_SNAPSHOT_TZ and WATCHER_LEGACY_NAIVE_TZ) accept,
# any case; the CRD's enum. Their default is the old writers' clocks (UTC), not the platform's zone: the
# platform never writes.
ZONE_NAMES = ("UTC", "KST", "Asia/Seoul")


def zone(raw: str) -> timezone:
    """A zone setting's value: ``UTC`` or ``KST``/``Asia/Seoul``, any case."""
    try:
        return _ZONES[raw.strip().upper()]
    except KeyError:
        raise ValueError("must be UTC or KST (Asia/Seoul)") from None


def parse_snapshot_timestamp(text: str, zone: timezone = KST) -> datetime:
    """``20250730_151753`` (or ``20250730_151753.c``) read in ``zone`` (KST by default) -> aware UTC datetime."""
    stem = text.split(".", 1)[0]
    if not _SNAPSHOT_RE.fullmatch(stem):
        raise LegacyTimeError(f"{text!r} is not a snapshot timestamp; expected YYYYMMDD_HHMMSS, e.g. 20250730_151753")
    try:
        naive = datetime.strptime(stem, SNAPSHOT_FORMAT)
    except ValueError:
        raise LegacyTimeError(f"{text!r} is not a real date and time (YYYYMMDD_HHMMSS)") from None
    return _in_range(naive.replace(tzinfo=zone), text)


def _in_range(value: datetime, shown: object) -> datetime:
    """Aware ``value`` -> UTC, refusing years outside MIN_YEAR..MAX_YEAR (and the overflow they cause)."""
    try:
        utc = value.astimezone(UTC)
    except OverflowError:
        utc = None
    if utc is None or not (MIN_YEAR <= utc.year <= MAX_YEAR):
        raise LegacyTimeError(f"{shown!s} is out of range (years {MIN_YEAR}-{MAX_YEAR})")
    return utc


def body_datetime_to_utc(value: datetime, naive_zone: timezone = KST) -> datetime:
    """A datetime from a legacy log body: aware -> UTC; naive -> read in ``naive_zone`` (KST by default)."""
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        value = value.replace(tzinfo=naive_zone)
    return _in_range(value, value.isoformat())


def parse_range_bound(text: str) -> datetime:
    """A read-URL bound: ``YYYYMMDD_HHMMSS`` or ISO 8601; without an offset it is KST. -> aware UTC."""
    if _SNAPSHOT_RE.fullmatch(text):
        return parse_snapshot_timestamp(text, KST)
    candidate = text.strip()
    if candidate.endswith(("Z", "z")):
        candidate = candidate[:-1] + "+00:00"
    try:
        value = datetime.fromisoformat(candidate)
    except ValueError:
        raise LegacyTimeError(
            f"{text!r} is not a time; expected YYYYMMDD_HHMMSS (KST) or ISO 8601, e.g. 2025-07-30T15:17:53"
        ) from None
    return body_datetime_to_utc(value, KST)


def to_kst(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("naive datetime: the store keeps aware UTC")
    try:
        return value.astimezone(KST)
    except OverflowError:  # only at the very end of the calendar (an event the v1 API stored); never fail a read
        return value.replace(tzinfo=KST)


def snapshot_string(value: datetime) -> str:
    """Aware time -> the old API's snapshot timestamp string (KST, second resolution)."""
    return to_kst(value).strftime(SNAPSHOT_FORMAT)


def graph_string(value: datetime) -> str:
    return to_kst(value).strftime(GRAPH_FORMAT)


def naive_kst(value: datetime) -> datetime:
    """Aware time -> naive KST datetime, the old API's log/monitoring timestamp type."""
    return to_kst(value).replace(tzinfo=None)
