"""A tiny real HTTP server on loopback that stands in for ``POST /api/v1/events`` in agent tests.

It stores events by ``event_id`` (so duplicates are counted as the real backend does), records every
request (headers, sizes), and can be told to answer with a scripted status (503, 401, 413, 422 ...) for
the next N requests, or to reject specific event ids. Used before the real backend helper existed and
still for fault scripts the real backend cannot produce on demand (a 503 storm, a 413).

Import as ``from integration.delivery.recording_server import RecordingServer``.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from http.server import ThreadingHTTPServer

from support.json_http import JsonHandler


class RecordingServer:
    def __init__(self, token: str | None = None, port: int = 0) -> None:
        self.token = token
        self.lock = threading.Lock()
        self.events: dict[str, dict] = {}  # event_id -> event (first copy)
        self.arrivals: list[tuple[float, str]] = []  # (time stored, event_id)
        self.requests: list[dict] = []
        self.script: deque[int] = deque()  # statuses to answer next, then normal
        self.reject_ids: set[str] = set()
        self.max_events_per_request: int | None = None  # answer 413 above this
        self.posted_ids: list[str] = []
        server = self

        class Handler(JsonHandler):
            def do_POST(self):  # noqa: N802
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                status, doc = server._handle(self.path, dict(self.headers), body)
                self.send_json(status, doc)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def _handle(self, path: str, headers: dict, body: bytes):
        with self.lock:
            self.requests.append({"path": path, "headers": headers, "size": len(body)})
            if path != "/api/v1/events":
                return 404, {"detail": "not found"}
            if self.script:
                status = self.script.popleft()
                return status, {"detail": f"scripted {status}"}
            if self.token is not None and headers.get("Authorization") != f"Bearer {self.token}":
                return 401, {"detail": "invalid ingest token"}
            try:
                events = json.loads(body)
                assert isinstance(events, list)
            except Exception:
                return 422, {"detail": [{"loc": ["body"], "msg": "expected a JSON array"}]}
            if self.max_events_per_request is not None and len(events) > self.max_events_per_request:
                return 413, {"detail": "batch too large"}
            accepted = duplicates = 0
            rejected = []
            now = time.monotonic()
            for i, ev in enumerate(events):
                eid = ev.get("event_id")
                self.posted_ids.append(eid)
                if eid in self.reject_ids:
                    rejected.append({"index": i, "event_id": eid, "error": "path: scripted rejection"})
                elif eid in self.events:
                    duplicates += 1
                else:
                    self.events[eid] = ev
                    self.arrivals.append((now, eid))
                    accepted += 1
            return (422 if rejected else 200), {"accepted": accepted, "duplicates": duplicates, "rejected": rejected}

    def fail_next(self, *statuses: int) -> None:
        with self.lock:
            self.script.extend(statuses)

    def stored(self) -> list[dict]:
        with self.lock:
            return list(self.events.values())

    def wait_for(self, predicate, timeout: float = 15.0, interval: float = 0.05) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self):
                return True
            time.sleep(interval)
        return predicate(self)

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
