"""A loopback JSON server's handler base for tests that stand in for an API (a refusing backend, an API
server without a CRD): subclass ``JsonHandler`` and answer with ``self.send_json(status, doc)``."""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler


class JsonHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def send_json(self, status: int, doc) -> None:
        data = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:  # quiet: the tests assert on what was sent
        pass
