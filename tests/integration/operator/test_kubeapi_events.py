"""Kube.list_objects against a loopback HTTP server: the FailedCreate events of one DaemonSet are asked for
with a field selector the API server understands (one query parameter, encoded), and the items come back."""

from __future__ import annotations

import threading
from http.server import ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from kubernetes import client as k8s

from support.json_http import JsonHandler
from watcher_operator.kubeapi import Kube


def test_list_objects_sends_the_field_selector_and_returns_the_items():
    seen: list[str] = []
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": "watcher-procmon.17c9e0a1b2c3d4e5"},
        "reason": "FailedCreate",
        "message": 'Error creating: pods "watcher-procmon-x7k2q" is forbidden',
    }

    class Handler(JsonHandler):
        def do_GET(self):  # noqa: N802
            seen.append(self.path)
            self.send_json(200, {"apiVersion": "v1", "kind": "EventList", "metadata": {}, "items": [event]})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        configuration = k8s.Configuration(host=f"http://127.0.0.1:{server.server_address[1]}")
        with k8s.ApiClient(configuration) as api:
            items = Kube(api, timeout=5).list_objects(
                "v1", "Event", "watcher", field_selector="involvedObject.uid=u-1,reason=FailedCreate"
            )
    finally:
        server.shutdown()
        server.server_close()
    assert items == [event]
    [path] = seen
    url = urlsplit(path)
    assert url.path == "/api/v1/namespaces/watcher/events"
    assert parse_qs(url.query) == {"fieldSelector": ["involvedObject.uid=u-1,reason=FailedCreate"]}
