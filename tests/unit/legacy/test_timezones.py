from datetime import UTC, datetime, timedelta, timezone

import pytest

from watcher_backend.legacy import timezones as lt
from watcher_backend.settings import SettingsError, from_env


def snapshot_path_zone(env):
    """The zone the backend reads snapshot write URLs in, with this environment."""
    return from_env(env).legacy_snapshot_zone


def naive_body_zone(env):
    """The zone the backend reads naive log-body times in, with this environment."""
    return from_env(env).legacy_naive_zone


UTC = UTC


def test_snapshot_path_timestamp_is_the_old_filemons_utc_clock_by_default():
    # The old filemon posts its UTC container clock; the old server read it as UTC and listed KST (+9 h).
    zone = snapshot_path_zone({})
    assert zone is lt.UTC
    t = lt.parse_snapshot_timestamp("20250730_061753", zone)
    assert t == datetime(2025, 7, 30, 6, 17, 53, tzinfo=UTC)
    assert lt.snapshot_string(t) == "20250730_151753"


def test_snapshot_path_timestamp_in_kst_when_set_for_a_writer_on_korea_time():
    zone = snapshot_path_zone({"WATCHER_LEGACY_SNAPSHOT_TZ": "KST"})
    assert zone is lt.KST
    t = lt.parse_snapshot_timestamp("20250730_151753", zone)
    assert t == datetime(2025, 7, 30, 6, 17, 53, tzinfo=UTC)
    assert lt.snapshot_string(t) == "20250730_151753"  # reads back unchanged
    assert lt.parse_snapshot_timestamp("20250730_151753") == t  # the function's own default (range bounds) is KST


def test_naive_log_times_are_utc_by_default_aware_ones_exact():
    zone = naive_body_zone({})
    assert lt.body_datetime_to_utc(datetime(2025, 7, 30, 6, 17, 53), zone) == datetime(
        2025, 7, 30, 6, 17, 53, tzinfo=UTC
    )
    aware = datetime(2025, 7, 30, 15, 17, 53, tzinfo=lt.KST)
    assert lt.body_datetime_to_utc(aware, zone) == datetime(2025, 7, 30, 6, 17, 53, tzinfo=UTC)


def test_snapshot_timestamp_with_extension_suffix_is_accepted():
    assert lt.parse_snapshot_timestamp("20250730_151753.c") == lt.parse_snapshot_timestamp("20250730_151753")
    assert lt.parse_snapshot_timestamp("20250730_061753.c", lt.UTC) == lt.parse_snapshot_timestamp(
        "20250730_061753", lt.UTC
    )


@pytest.mark.parametrize(
    "bad",
    [
        "build",
        "run",
        "2025-07-30",
        "20250730061753",
        "20251330_000000",
        "20250230_000000",
        "20250730_256000",
        "2025073_0617531",
        "",
    ],
)
def test_bad_snapshot_timestamps_raise_a_clear_error(bad):
    with pytest.raises(lt.LegacyTimeError) as err:
        lt.parse_snapshot_timestamp(bad)
    assert "YYYYMMDD_HHMMSS" in str(err.value)


def test_naive_body_datetime_is_kst_and_aware_is_exact():
    naive = datetime(2025, 7, 30, 15, 17, 53)
    assert lt.body_datetime_to_utc(naive) == datetime(2025, 7, 30, 6, 17, 53, tzinfo=UTC)
    aware = datetime(2025, 7, 30, 6, 17, 53, tzinfo=UTC)
    assert lt.body_datetime_to_utc(aware) == aware
    other = datetime(2025, 7, 30, 8, 17, 53, tzinfo=timezone(timedelta(hours=2)))
    assert lt.body_datetime_to_utc(other) == aware


def test_naive_kst_response_form():
    t = datetime(2025, 12, 31, 20, 0, 0, tzinfo=UTC)
    assert lt.naive_kst(t) == datetime(2026, 1, 1, 5, 0, 0)
    assert lt.snapshot_string(t) == "20260101_050000"
    assert lt.graph_string(t) == "20260101_0500"


@pytest.mark.parametrize(
    "text,expected",
    [
        ("20250730_151753", datetime(2025, 7, 30, 6, 17, 53, tzinfo=UTC)),
        ("2025-07-30T15:17:53", datetime(2025, 7, 30, 6, 17, 53, tzinfo=UTC)),
        ("2025-07-30 15:17:53", datetime(2025, 7, 30, 6, 17, 53, tzinfo=UTC)),
        ("2025-07-30T06:17:53Z", datetime(2025, 7, 30, 6, 17, 53, tzinfo=UTC)),
        ("2025-07-30T15:17:53+09:00", datetime(2025, 7, 30, 6, 17, 53, tzinfo=UTC)),
    ],
)
def test_range_bounds(text, expected):
    assert lt.parse_range_bound(text) == expected


def test_bad_range_bound():
    with pytest.raises(lt.LegacyTimeError):
        lt.parse_range_bound("yesterday")


def test_zone_settings():
    assert snapshot_path_zone({}) is lt.UTC
    assert snapshot_path_zone({"WATCHER_LEGACY_SNAPSHOT_TZ": ""}) is lt.UTC
    assert naive_body_zone({}) is lt.UTC
    assert snapshot_path_zone({"WATCHER_LEGACY_SNAPSHOT_TZ": "Asia/Seoul"}) is lt.KST
    assert snapshot_path_zone({"WATCHER_LEGACY_SNAPSHOT_TZ": "utc"}) is lt.UTC
    assert naive_body_zone({"WATCHER_LEGACY_NAIVE_TZ": "kst"}) is lt.KST
    assert {name.upper() for name in lt.ZONE_NAMES} == set(lt._ZONES)
    with pytest.raises(SettingsError) as err:
        naive_body_zone({"WATCHER_LEGACY_NAIVE_TZ": "PST"})
    assert "WATCHER_LEGACY_NAIVE_TZ" in str(err.value)


@pytest.mark.parametrize(
    "value",
    [
        datetime(1, 1, 1),
        datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5))),
        datetime(9999, 12, 31, 23, 0, tzinfo=timezone(timedelta(hours=-5))),
        datetime(1969, 12, 31, 23, 0, tzinfo=UTC),
    ],
)
def test_out_of_range_body_times_are_refused_not_overflowed(value):
    with pytest.raises(lt.LegacyTimeError, match="out of range"):
        lt.body_datetime_to_utc(value)


def test_out_of_range_snapshot_and_bound():
    with pytest.raises(lt.LegacyTimeError, match="out of range"):
        lt.parse_snapshot_timestamp("00010101_000000", lt.KST)
    with pytest.raises(lt.LegacyTimeError, match="out of range"):
        lt.parse_snapshot_timestamp("19700101_080000")  # KST by default: 1969-12-31T23:00Z
    assert lt.parse_snapshot_timestamp("19700101_090000") == datetime(1970, 1, 1, tzinfo=UTC)
    with pytest.raises(lt.LegacyTimeError, match="out of range"):
        lt.parse_range_bound("9999-12-31T23:59:59-05:00")


def test_reads_never_overflow_at_the_end_of_the_calendar():
    edge = datetime(9999, 12, 31, 23, 0, tzinfo=UTC)
    assert lt.snapshot_string(edge) == "99991231_230000"
