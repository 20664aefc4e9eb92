"""`watcher operator` against a loopback HTTP server standing in for the API server: the start-up check
asks for the peering CRD with the kubeconfig's credentials, and kopf is started standalone (one WARNING)
when the CRD is absent, with peering when it exists, and with peering plus a warning when the check fails.

kopf.run itself is replaced: what is checked is the decision handed to it."""

from __future__ import annotations

import json
import logging
import threading
from http.server import ThreadingHTTPServer

import kopf
import pytest

from support.json_http import JsonHandler
from watcher_operator import cli

CRD_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/"


class FakeApi:
    """Answers GET of a CRD: 200 for the names in `crds`, else 404; `forbidden` answers 403 to everything."""

    def __init__(self, crds: set[str], forbidden: bool = False):
        self.crds, self.forbidden, self.requests = crds, forbidden, []
        api = self

        class Handler(JsonHandler):
            def do_GET(self):  # noqa: N802 - http.server's naming
                api.requests.append((self.path, self.headers.get("Authorization")))
                name = self.path[len(CRD_PATH) :] if self.path.startswith(CRD_PATH) else None
                if api.forbidden:
                    self.send_json(
                        403,
                        {
                            "kind": "Status",
                            "status": "Failure",
                            "reason": "Forbidden",
                            "code": 403,
                            "message": f'customresourcedefinitions "{name}" is forbidden',
                        },
                    )
                elif name in api.crds:
                    self.send_json(
                        200,
                        {
                            "apiVersion": "apiextensions.k8s.io/v1",
                            "kind": "CustomResourceDefinition",
                            "metadata": {"name": name},
                        },
                    )
                else:
                    self.send_json(
                        404,
                        {
                            "kind": "Status",
                            "status": "Failure",
                            "reason": "NotFound",
                            "code": 404,
                            "message": f'customresourcedefinitions.apiextensions.k8s.io "{name}" not found',
                        },
                    )

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeApi:
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def kubeconfig(self, tmp_path) -> str:
        port = self.server.server_address[1]
        path = tmp_path / "kubeconfig"
        path.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "current-context": "loop",
                    "clusters": [{"name": "loop", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
                    "users": [{"name": "op", "user": {"token": "op-token"}}],
                    "contexts": [{"name": "loop", "context": {"cluster": "loop", "user": "op"}}],
                }
            )
        )
        return str(path)


@pytest.fixture
def kopf_run(monkeypatch):
    """Record what `watcher operator` hands to kopf.run instead of running kopf; keep the environment
    `watcher operator` writes (resync, retry, kubeconfig hand-over) from leaking into other tests."""
    import os

    for name in list(os.environ):
        if name.startswith("WATCHER_"):
            monkeypatch.delenv(name)
    for name in (
        "WATCHER_OPERATOR_RESYNC_SECONDS",
        "WATCHER_OPERATOR_RETRY_SECONDS",
        "KUBECONFIG",
    ):
        monkeypatch.setenv(name, "60" if "SECONDS" in name else "")
    calls: list[dict] = []
    monkeypatch.setattr(kopf, "run", lambda **kwargs: calls.append(kwargs))
    return calls


def _operator_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "watcher_operator" and r.levelno >= logging.WARNING]


def test_without_the_peering_crd_kopf_runs_standalone_after_one_warning(tmp_path, kopf_run, caplog):
    caplog.set_level(logging.INFO)
    with FakeApi(crds=set()) as api:
        assert cli.main(["-n", "jcode", "--kubeconfig", api.kubeconfig(tmp_path)]) == 0
    assert api.requests == [(CRD_PATH + "kopfpeerings.kopf.dev", "Bearer op-token")]
    assert len(kopf_run) == 1 and kopf_run[0]["standalone"] is True and kopf_run[0]["peering_name"] is None
    assert kopf_run[0]["namespaces"] == ("jcode",)
    assert _operator_warnings(caplog) == [
        "peering CRD kopfpeerings.kopf.dev not found: install the chart's CRDs (charts/watcher-operator/crds) or "
        "run with --standalone / WATCHER_OPERATOR_STANDALONE=1; running standalone"
    ]


def test_with_the_peering_crd_kopf_runs_with_peering_and_nothing_is_said(tmp_path, kopf_run, caplog):
    caplog.set_level(logging.INFO)
    with FakeApi(crds={"clusterkopfpeerings.kopf.dev"}) as api:
        assert cli.main(["-A", "--peering", "p", "--kubeconfig", api.kubeconfig(tmp_path)]) == 0
    assert [path for path, _ in api.requests] == [CRD_PATH + "clusterkopfpeerings.kopf.dev"]
    assert kopf_run[0]["standalone"] is False and kopf_run[0]["peering_name"] == "p"
    assert kopf_run[0]["clusterwide"] is True
    assert _operator_warnings(caplog) == []


def test_a_forbidden_check_keeps_peering_and_says_so_once(tmp_path, kopf_run, caplog):
    caplog.set_level(logging.INFO)
    with FakeApi(crds=set(), forbidden=True) as api:
        assert cli.main(["-n", "jcode", "--kubeconfig", api.kubeconfig(tmp_path)]) == 0
    assert kopf_run[0]["standalone"] is False and kopf_run[0]["peering_name"] == "watcher-operator"
    [warning] = _operator_warnings(caplog)
    assert "403" in warning and "is forbidden" in warning and "--standalone" in warning


def test_standalone_asks_the_api_nothing(tmp_path, kopf_run, caplog):
    with FakeApi(crds=set()) as api:
        assert cli.main(["-n", "jcode", "--standalone", "--kubeconfig", api.kubeconfig(tmp_path)]) == 0
    assert api.requests == []
    assert kopf_run[0]["standalone"] is True and _operator_warnings(caplog) == []
