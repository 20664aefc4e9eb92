"""What a real backend measures at ingest (its /metrics): the delay from an event's time to its row being
queryable, and the outcome of compiles and runs; resends count neither twice. And what every component has:
the process collector, watcher_build_info, no *_created series."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from prometheus_client.parser import text_string_to_metric_families

from support.backend import run_backend, wire_event
from watcher_core import __version__


def samples(backend) -> dict[tuple[str, tuple], float]:
    text = httpx.get(backend.url + "/metrics").text
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[s.name, tuple(sorted(s.labels.items()))] = s.value
    return out


def bucket(m, type_: str, le: str) -> float:
    return m["watcher_event_queryable_delay_seconds_bucket", (("le", le), ("type", type_))]


def outcome(m, type_: str, result: str) -> float:
    return m["watcher_event_outcomes_total", (("outcome", result), ("type", type_))]


def test_queryable_delay_and_outcomes_are_measured_once_per_new_event(tmp_path):
    with run_backend(tmp_path) as backend:
        before = samples(backend)
        assert outcome(before, "process.compile", "failed") == 0  # the series exist before the first compile
        assert ("watcher_event_queryable_delay_seconds_count", (("type", "file.save"),)) not in before
        late = wire_event("file.save", timestamp=datetime.now(UTC) - timedelta(seconds=40))
        fresh = wire_event("file.save")
        failed = wire_event("process.compile", compiler="gcc", exit_code=1)
        crashed = wire_event("process.run", kind="binary", exit_code=None, signal=11)
        ok = wire_event("process.compile", compiler="gcc")
        assert backend.post_events([late, fresh, failed, crashed, ok]).json()["accepted"] == 5
        m = samples(backend)
        assert m["watcher_event_queryable_delay_seconds_count", (("type", "file.save"),)] == 2
        assert bucket(m, "file.save", "30.0") == 1  # the fresh save
        assert bucket(m, "file.save", "60.0") == 2  # and the one that waited 40 s
        assert m["watcher_event_queryable_delay_seconds_sum", (("type", "file.save"),)] >= 40
        assert outcome(m, "process.compile", "failed") == 1 and outcome(m, "process.compile", "succeeded") == 1
        assert outcome(m, "process.run", "failed") == 1 and outcome(m, "process.run", "succeeded") == 0
        # an agent resends a batch it had no answer for: already queryable, counted before
        assert backend.post_events([late, failed]).json()["duplicates"] == 2
        again = samples(backend)
        assert again["watcher_event_queryable_delay_seconds_count", (("type", "file.save"),)] == 2
        assert outcome(again, "process.compile", "failed") == 1
        # a new save beside a resent compile: the save counts; of the compiles it is not known which are new
        new_compile = wire_event("process.compile", compiler="gcc", exit_code=1)
        body = backend.post_events([wire_event("file.save"), failed, new_compile]).json()
        assert (body["accepted"], body["duplicates"]) == (2, 1)
        mixed = samples(backend)
        assert mixed["watcher_event_queryable_delay_seconds_count", (("type", "file.save"),)] == 3
        assert outcome(mixed, "process.compile", "failed") == 1


def test_backend_metrics_have_process_and_build_info_and_no_created_series(tmp_path):
    with run_backend(tmp_path) as backend:
        backend.post_events([wire_event("file.save")])
        m = samples(backend)
        text = httpx.get(backend.url + "/metrics").text
    assert m["watcher_build_info", (("component", "backend"), ("version", __version__))] == 1
    assert m["process_resident_memory_bytes", ()] > 0 and m["process_open_fds", ()] > 0
    assert "_created" not in text
