"""Fixtures for the operator against a real kube-apiserver (see tests/support/kube.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from support.kube import ControlPlane
from support.ports import free_port
from support.waiting import wait_for  # noqa: F401 - the operator tests import it from here

ROOT = Path(__file__).resolve().parents[3]
CRD_FILE = ROOT / "crds" / "watcherdeployments.watcher.jcode.io.yaml"
WATCHER = Path(sys.executable).parent / "watcher"

STORAGE_CLASS = {
    "apiVersion": "storage.k8s.io/v1",
    "kind": "StorageClass",
    "metadata": {"name": "longhorn"},
    "provisioner": "driver.longhorn.io",
    "allowVolumeExpansion": True,
}


@pytest.fixture(scope="session")
def cluster(kube_binaries):
    with ControlPlane() as cp:
        cp.kubectl("apply", "-f", str(CRD_FILE))
        cp.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/watcherdeployments.watcher.jcode.io")
        cp.kubectl("apply", "-f", "-", input=json.dumps(STORAGE_CLASS))
        yield cp


@pytest.fixture
def namespace(cluster):
    name = f"t-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", name)
    yield name
    # the operator is already stopped here: drop kopf's finalizers, or the namespace stays Terminating
    listed = cluster.kubectl("-n", name, "get", "watcherdeployments", "-o", "name", check=False).stdout.split()
    for obj in listed:
        cluster.kubectl("-n", name, "patch", obj, "--type=merge", "-p", '{"metadata":{"finalizers":null}}', check=False)
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


class OperatorProcess:
    def __init__(self, cluster: ControlPlane, args: list[str], log: Path, kubeconfig: str | None = None):
        env = dict(
            os.environ,
            KUBECONFIG=kubeconfig or cluster.kubeconfig,
            WATCHER_OPERATOR_RETRY_SECONDS="2",
            PYTHONWARNINGS="ignore",
        )
        self.log = log
        self._fh = open(log, "wb")
        # replicas run side by side here: each serves its metrics on a port of its own
        self.metrics_port = free_port()
        self.metrics_url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        self.proc = subprocess.Popen(
            [str(WATCHER), "operator", "--metrics-port", str(self.metrics_port), *args],
            env=env,
            stdout=self._fh,
            stderr=subprocess.STDOUT,
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if not self._fh.closed:
            self._fh.close()


@pytest.fixture
def run_operator(cluster, tmp_path):
    started: list[OperatorProcess] = []

    def start(namespace: str, *extra: str, kubeconfig: str | None = None, name: str = "operator") -> OperatorProcess:
        op = OperatorProcess(
            cluster, ["--namespace", namespace, "--resync-seconds", "3", *extra], tmp_path / f"{name}.log", kubeconfig
        )
        started.append(op)
        return op

    yield start
    for op in started:
        op.stop()
    for op in started:
        if op.proc.returncode not in (0, -15):
            print(op.output()[-4000:])
