"""procmon's downtime: the heartbeat file in the state dir and the gap computed from it at the next start."""

import logging
import os

from prometheus_client import CollectorRegistry

from watcher_agents.procmon import heartbeat
from watcher_agents.procmon.cli import report_downtime
from watcher_agents.procmon.metrics import ProcmonMetrics


def test_first_start_ever_has_no_gap(tmp_path):
    hb = heartbeat.Heartbeat(tmp_path)
    assert hb.last() is None
    g = heartbeat.gap(hb.last(), 1_700_000_000.0)
    assert (g.last_seen, g.downtime, g.describe()) == (None, 0.0, None)


def test_the_gap_is_from_the_last_heartbeat(tmp_path):
    clock = iter([1_700_000_000.0, 1_700_000_001.0]).__next__
    hb = heartbeat.Heartbeat(tmp_path, clock=clock)
    hb.beat()
    hb.beat()
    assert (tmp_path / "heartbeat").read_text() == "1700000001.000\n"
    assert not list(tmp_path.glob(".*.tmp"))  # written through a temporary file, replaced
    g = heartbeat.gap(hb.last(), 1_700_000_005.5)
    assert (g.last_seen, g.downtime) == (1_700_000_001.0, 4.5)
    assert g.describe() == (
        "procmon was down for 4.5 s (last heartbeat 2023-11-14T22:13:21+00:00): "
        "processes that ran in that window were not seen"
    )


def test_an_unreadable_heartbeat_falls_back_to_its_mtime(tmp_path):
    path = tmp_path / "heartbeat"
    path.write_text("not a time")
    os.utime(path, (1_600_000_000, 1_600_000_000))
    assert heartbeat.read_last(path) == 1_600_000_000
    path.write_text("")  # cut short (power loss before a sync)
    os.utime(path, (1_600_000_100, 1_600_000_100))
    assert heartbeat.read_last(path) == 1_600_000_100


def test_a_clock_that_went_back_gives_no_negative_downtime():
    assert heartbeat.gap(2000.0, 1000.0).downtime == 0.0


def test_stop_writes_a_final_heartbeat(tmp_path):
    now = [100.0]
    hb = heartbeat.Heartbeat(tmp_path, interval=60, clock=lambda: now[0]).start()
    assert hb.alive() and hb.last() == 100.0
    now[0] = 175.0
    hb.stop()
    assert not hb.alive() and hb.last() == 175.0


def test_a_state_dir_that_cannot_be_written_is_logged_once(tmp_path, caplog):
    hb = heartbeat.Heartbeat(tmp_path / "missing" / "dir")
    with caplog.at_level(logging.WARNING):
        assert hb.beat() is False and hb.beat() is False
    assert len([r for r in caplog.records if "cannot write the heartbeat" in r.message]) == 1


def test_the_gap_in_metrics_and_one_log_line(caplog):
    registry = CollectorRegistry()
    m = ProcmonMetrics(registry)
    with caplog.at_level(logging.INFO, logger="watcher_agents.procmon"):
        report_downtime(m, heartbeat.gap(1_700_000_001.0, 1_700_000_013.0))
    assert registry.get_sample_value("procmon_downtime_seconds") == 12.0
    assert registry.get_sample_value("procmon_last_seen_before_start_timestamp_seconds") == 1_700_000_001.0
    lines = [r.message for r in caplog.records if "was down" in r.message]
    assert lines == [
        "procmon was down for 12.0 s (last heartbeat 2023-11-14T22:13:21+00:00): "
        "processes that ran in that window were not seen"
    ]
    m2 = ProcmonMetrics(CollectorRegistry())
    caplog.clear()
    report_downtime(m2, heartbeat.gap(None, 1_700_000_013.0))
    assert m2.downtime._value.get() == 0 and m2.last_seen_before_start._value.get() == 0
    assert not [r for r in caplog.records if "was down" in r.message]
