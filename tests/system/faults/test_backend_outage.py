"""The backend is stopped for 30 s during a burst of saves and compiles, then restarted: every event
arrives exactly once (the agents' outboxes hold them; the backend dedupes resends on event_id)."""

from __future__ import annotations

import time

from system.e2e.session import metrics, reader, student_hw, wait_until
from system.faults.burst import Burst, wait_and_check

OUTAGE_SECONDS = 30


def test_backend_down_30s_during_a_burst_loses_and_duplicates_nothing(stack):
    bursts = [Burst(student_hw(stack, sid), sid).start() for sid in ("202100001", "202100002")]
    try:
        with reader(stack) as http:
            wait_until(lambda: http.get("/api/v1/status").json()["events_total"] > 20, 30, "the burst to arrive")
        stack.stop_component("backend")
        down_at = time.monotonic()
        # the agents keep recording while the backend is away, and say so in their metrics
        wait_until(
            lambda: all(metrics(stack, a).get("watcher_outbox_events", 0) > 0 for a in ("filemon", "procmon")),
            20,
            "both outboxes to hold events",
        )
        time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - down_at)))
        for agent in ("filemon", "procmon"):
            assert stack.components[agent].alive()
            failures = sum(v for k, v in metrics(stack, agent).items() if k.startswith("watcher_send_failures_total"))
            assert failures > 0, agent
        stack.start_component("backend")
        time.sleep(3)  # a little more work after the restart
    finally:
        for b in bursts:
            b.stop()
    with reader(stack) as http:
        accounts = wait_and_check(stack, http, bursts, timeout=120)
    assert all(a["compiles"] == a["compiles_run"] > 5 for a in accounts), accounts
    assert all(a["saves"] >= 100 for a in accounts), accounts
