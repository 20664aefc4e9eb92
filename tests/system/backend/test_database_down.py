"""While PostgreSQL is down: /health stays up, /ready says 503, writes answer 503 (never 500); then recovery."""

import secrets

import httpx

from support.backend import run_backend, wire_event


def test_database_outage_gives_503_and_recovers(postgres, tmp_path):
    url = postgres.create_database("watcher_down_" + secrets.token_hex(3))
    with run_backend(tmp_path, database_url=url) as backend:
        event = wire_event("file.save")
        postgres.stop()
        try:
            assert httpx.get(backend.url + "/health").status_code == 200
            ready = httpx.get(backend.url + "/ready")
            assert ready.status_code == 503 and ready.json()["status"] == "unavailable"
            r = backend.post_events([event])
            assert r.status_code == 503 and "database" in r.json()["detail"]
            with backend.client("read") as http:
                assert http.get("/api/v1/status").status_code == 503
            assert "watcher_database_errors_total 2.0" in httpx.get(backend.url + "/metrics").text
        finally:
            postgres.start()
        assert httpx.get(backend.url + "/ready").status_code == 200
        assert backend.post_events([event]).json()["accepted"] == 1
