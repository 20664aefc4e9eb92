"""A real, throw-away Kubernetes control plane for tests: etcd + kube-apiserver + kube-controller-manager.

No kubelet, no scheduler, no nodes: objects are stored, validated, defaulted, admitted and garbage
collected exactly as in a cluster, but no pod ever runs (tests patch a workload's status subresource to
simulate readiness). The binaries come from `scripts/deps/kube.sh` (cached under
~/.cache/jcode-watcher/kube/<version>/bin); `WATCHER_KUBE_BIN_DIR` overrides the location.

    with ControlPlane() as cp:
        subprocess.run(["kubectl", "--kubeconfig", cp.kubeconfig, "get", "ns"])

Only the garbage collector, the namespace and the pvc-protection controllers run in the controller manager: the deployment or
daemonset controllers would overwrite the status the tests set by hand.
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from support.ports import free_port

KUBE_VERSION = "1.20.5+really1.20.2"
CACHE = Path(os.environ.get("JCODE_WATCHER_CACHE") or Path.home() / ".cache" / "jcode-watcher")
BIN_DIR = Path(os.environ.get("WATCHER_KUBE_BIN_DIR") or CACHE / "kube" / KUBE_VERSION / "bin")

ADMIN_TOKEN = "admin-test-token"
# A user with no rights of its own: tests bind the chart's ClusterRole to it to prove the RBAC suffices.
RESTRICTED_USER = "watcher-operator-test"
RESTRICTED_TOKEN = "restricted-test-token"


def missing_binaries() -> list[str]:
    missing = [str(BIN_DIR / b) for b in ("kube-apiserver", "kube-controller-manager") if not (BIN_DIR / b).exists()]
    if not shutil.which("etcd"):
        missing.append("etcd")
    return missing


class ControlPlaneError(RuntimeError):
    pass


class ControlPlane:
    # what support.cluster.Cluster changes to run pods: where the API server listens, the service range,
    # the controllers of the controller manager
    address = "127.0.0.1"
    service_cidr = "10.96.0.0/16"
    controllers = "garbagecollector,namespace,pvc-protection"

    def __init__(self, workdir: str | Path | None = None, *, controller_manager: bool = True):
        self._own_dir = workdir is None
        self.dir = Path(workdir or tempfile.mkdtemp(prefix="watcher-kube-"))
        self.with_controller_manager = controller_manager
        self.procs: dict[str, subprocess.Popen] = {}
        self.logs: dict[str, Path] = {}
        self.port = 0
        self.url = ""
        self.kubeconfig = str(self.dir / "admin.kubeconfig")
        self.restricted_kubeconfig = str(self.dir / "restricted.kubeconfig")

    # --- lifecycle ----------------------------------------------------------------------------------
    def __enter__(self) -> ControlPlane:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self, timeout: float = 120.0) -> None:
        missing = missing_binaries()
        if missing:
            raise ControlPlaneError(f"missing {missing}: run scripts/deps/kube.sh")
        self._write_credentials()
        etcd_port, peer_port = free_port(), free_port()
        self._spawn(
            "etcd",
            [
                "etcd",
                "--name",
                "test",
                "--data-dir",
                str(self.dir / "etcd"),
                "--listen-client-urls",
                f"http://127.0.0.1:{etcd_port}",
                "--advertise-client-urls",
                f"http://127.0.0.1:{etcd_port}",
                "--listen-peer-urls",
                f"http://127.0.0.1:{peer_port}",
                "--initial-advertise-peer-urls",
                f"http://127.0.0.1:{peer_port}",
                "--initial-cluster",
                f"test=http://127.0.0.1:{peer_port}",
                "--log-level",
                "warn",
            ],
        )
        self.port = self.port or free_port()
        self.url = f"https://{self.address}:{self.port}"
        self._spawn(
            "kube-apiserver",
            [
                str(BIN_DIR / "kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{etcd_port}",
                f"--bind-address={self.address}",
                f"--advertise-address={self.address}",
                f"--secure-port={self.port}",
                "--insecure-port=0",
                f"--cert-dir={self.dir / 'pki'}",
                f"--service-cluster-ip-range={self.service_cidr}",
                f"--service-account-key-file={self.dir / 'sa.pub'}",
                f"--service-account-signing-key-file={self.dir / 'sa.key'}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--token-auth-file={self.dir / 'tokens.csv'}",
                "--authorization-mode=RBAC",
                "--allow-privileged=true",
                "--profiling=false",
                "--v=1",
                *self._apiserver_flags(),
            ],
        )
        self._wait_ready(timeout)
        # the API server wrote its self-signed serving certificate into --cert-dir: trust exactly that
        self._write_kubeconfig(self.kubeconfig, "admin", ADMIN_TOKEN)
        self._write_kubeconfig(self.restricted_kubeconfig, RESTRICTED_USER, RESTRICTED_TOKEN)
        if self.with_controller_manager:
            self._spawn(
                "kube-controller-manager",
                [
                    str(BIN_DIR / "kube-controller-manager"),
                    f"--kubeconfig={self.kubeconfig}",
                    f"--controllers={self.controllers}",
                    "--leader-elect=false",
                    "--port=0",
                    "--secure-port=0",
                    "--concurrent-gc-syncs=5",
                    "--v=1",
                    *self._controller_manager_flags(),
                ],
            )

    def stop(self) -> None:
        for name in reversed(list(self.procs)):
            proc = self.procs[name]
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)
        self.procs.clear()
        if self._own_dir and not os.environ.get("WATCHER_KEEP_KUBE_DIR"):
            shutil.rmtree(self.dir, ignore_errors=True)

    def _apiserver_flags(self) -> list[str]:
        return []

    def _controller_manager_flags(self) -> list[str]:
        return []

    # --- helpers ------------------------------------------------------------------------------------
    def kubectl(
        self,
        *args: str,
        check: bool = True,
        input: str | None = None,
        kubeconfig: str | None = None,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess:
        cmd = ["kubectl", f"--kubeconfig={kubeconfig or self.kubeconfig}", *args]
        proc = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise ControlPlaneError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = self.logs.get(name)
        if not path or not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def _spawn(self, name: str, cmd: list[str]) -> None:
        log = self.dir / f"{name}.log"
        self.logs[name] = log
        fh = open(log, "wb")
        self.procs[name] = subprocess.Popen(
            cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.dir
        )
        fh.close()

    def _write_credentials(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "pki").mkdir(exist_ok=True)
        subprocess.run(["openssl", "genrsa", "-out", str(self.dir / "sa.key"), "2048"], check=True, capture_output=True)
        subprocess.run(
            ["openssl", "rsa", "-in", str(self.dir / "sa.key"), "-pubout", "-out", str(self.dir / "sa.pub")],
            check=True,
            capture_output=True,
        )
        (self.dir / "tokens.csv").write_text(
            f'{ADMIN_TOKEN},admin,admin-uid,"system:masters"\n{RESTRICTED_TOKEN},{RESTRICTED_USER},restricted-uid\n'
        )

    def _write_kubeconfig(self, path: str, user: str, token: str) -> None:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "test",
            "clusters": [
                {
                    "name": "test",
                    "cluster": {"server": self.url, "certificate-authority": str(self.dir / "pki" / "apiserver.crt")},
                }
            ],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": user, "namespace": "default"}}],
        }
        Path(path).write_text(json.dumps(config, indent=2))

    def _wait_ready(self, timeout: float) -> None:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise ControlPlaneError(f"{name} exited ({proc.returncode}):\n{self.log_tail(name)}")
            try:
                req = urllib.request.Request(f"{self.url}/readyz", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
                with urllib.request.urlopen(req, context=ctx, timeout=5) as resp:
                    if resp.status == 200:
                        return
            except Exception as exc:  # not listening yet / still starting post-start hooks
                last = str(exc)
            time.sleep(0.5)
        raise ControlPlaneError(
            f"kube-apiserver not ready after {timeout}s ({last}):\n{self.log_tail('kube-apiserver')}"
        )
