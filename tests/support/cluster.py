"""A real one-node Kubernetes cluster on this machine, for the cluster tier and `make cluster`.

    with Cluster() as c:                      # or: python tests/support/cluster.py up|down|status
        c.kubectl("get", "nodes")
        c.load_images(["harbor.jbnu.ac.kr/jdevops/watcher-backend:0.1.0"])

Parts (every one a real binary; the Kubernetes ones built by scripts/deps/kube.sh):
  etcd, kube-apiserver, kube-controller-manager (all controllers), kube-scheduler  (support.kube)
  containerd (Debian's, CRI, a private socket and state) + runc + the CNI bridge plugin
  kubelet (cgroupfs, node name = hostname), kube-proxy (iptables, masquerade-all)
  support.cluster_addons: the cluster DNS (*.svc.cluster.local) and a hostPath volume provisioner

Network: one bridge this module creates (jcw0, 10.203.0.1/24). The API server, the kubelet and the DNS
listen on the bridge address only; pods get routes to the pod and service ranges and nothing else, so no
traffic can leave the machine. Images come from podman's store (`podman save` -> `ctr images import`),
never from a registry; containerd's image store is cached in ~/.cache/jcode-watcher/cluster.

Every process runs in its own session with a pid file in the state directory, so the cluster outlives the
command that started it (`make cluster`) and `down()` can stop it from any process. `down()` is the order
the machine needs: workloads deleted and their containers gone first, then the kubelet (or network
namespaces leak), then the rest; the API server is killed if it hangs on SIGTERM. Afterwards nothing is
left: `leftovers()` lists any process, mount, network namespace, veth, iptables chain or cgroup.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: python tests/support/cluster.py up
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from support.kube import BIN_DIR, CACHE, ControlPlane, ControlPlaneError, missing_binaries  # noqa: E402

STATE_DIR = Path(os.environ.get("WATCHER_CLUSTER_DIR", "/run/jcode-watcher-cluster"))
IMAGE_STORE = CACHE / "cluster" / "containerd"
BRIDGE = "jcw0"
POD_CIDR, GATEWAY = "10.203.0.0/24", "10.203.0.1"
SERVICE_CIDR = "10.204.0.0/24"
API_PORT = 6443
PAUSE_IMAGE = "localhost/jcode-watcher/pause:1.20.2"
CNI_BIN = "/usr/lib/cni"
NODE = socket.gethostname()
# kubelet and kube-proxy tune these on start; down() puts the machine's values back
SYSCTLS = (
    "net/ipv4/ip_forward",
    "net/ipv4/conf/all/route_localnet",
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
)
CGROUP_ROOT = Path("/sys/fs/cgroup")
POD_LOGS = (Path("/var/log/pods"), Path("/var/log/containers"))  # fixed paths in kubelet 1.20
# hostPath directories the workloads make on the node (filemon's and procmon's state): removed by down()
# when the cluster made them, or the next cluster's filemon reports this one's files as deleted
NODE_PATHS = (Path("/var/lib/watcher"),)
# the namespaces a cluster has of itself; everything else is a workload to remove before the kubelet stops
SYSTEM_NAMESPACES = {"default", "kube-system", "kube-public", "kube-node-lease"}


def why_no_cluster() -> str | None:
    """Why this machine cannot run the cluster, or None."""
    if os.geteuid() != 0:
        return "needs root (kubelet, containerd, bridges)"
    missing = missing_binaries() + [
        str(BIN_DIR / b) for b in ("kubelet", "kube-scheduler", "kube-proxy") if not (BIN_DIR / b).exists()
    ]
    for tool in ("containerd", "ctr", "runc", "iptables", "kubectl", "ip"):
        if not _which(tool):
            missing.append(tool)
    if not Path(CNI_BIN, "bridge").exists():
        missing.append(f"{CNI_BIN}/bridge")
    if missing:
        return f"missing {', '.join(missing)}: run scripts/deps/kube.sh and scripts/deps/cluster.sh"
    return None


def _which(tool: str) -> bool:
    return any(
        Path(d, tool).exists() for d in os.environ.get("PATH", "/usr/sbin:/usr/bin").split(":") + ["/usr/sbin", "/sbin"]
    )


def _run(*cmd: str, check: bool = True, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if check and proc.returncode != 0:
        raise ControlPlaneError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return proc


def log(msg: str) -> None:
    print(f"[cluster] {msg}", file=sys.stderr, flush=True)


class Cluster(ControlPlane):
    address = GATEWAY
    service_cidr = SERVICE_CIDR
    controllers = "*"

    def __init__(self, state_dir: Path = STATE_DIR):
        super().__init__(state_dir)
        self._own_dir = False  # down() removes it, after unmounting what the kubelet left
        self.port = API_PORT
        self.url = f"https://{GATEWAY}:{API_PORT}"
        self.sock = self.dir / "containerd" / "containerd.sock"
        self.kubelet_dir = self.dir / "kubelet"

    # --- lifecycle ----------------------------------------------------------------------------------
    def __enter__(self) -> Cluster:
        try:
            self.up()
        except BaseException:
            self.down()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.down()

    def running(self) -> bool:
        return any(self._alive(name) for name in self._pid_names())

    def up(self, timeout: float = 180) -> None:
        why = why_no_cluster()
        if why:
            raise ControlPlaneError(why)
        if self.running():
            raise ControlPlaneError(
                f"a cluster is already running from {self.dir} "
                "(make cluster-down, or python tests/support/cluster.py down)"
            )
        self.down(quiet=True)  # what a killed earlier run left
        start = time.monotonic()
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "pids").mkdir(exist_ok=True)
        self._save_sysctls()
        (self.dir / "node-paths.json").write_text(json.dumps([str(p) for p in NODE_PATHS if not p.exists()]))
        self._make_bridge()
        self._start_containerd()
        log("containerd ready; starting etcd, kube-apiserver, controller manager")
        self.start(timeout=120)  # support.kube: etcd, kube-apiserver, kube-controller-manager
        self._spawn(
            "kube-scheduler",
            [
                str(BIN_DIR / "kube-scheduler"),
                f"--kubeconfig={self.kubeconfig}",
                "--leader-elect=false",
                "--port=0",
                "--secure-port=0",
                "--v=1",
            ],
        )
        self._spawn(
            "cluster-addons",
            [
                sys.executable,
                str(Path(__file__).with_name("cluster_addons.py")),
                "--kubeconfig",
                self.kubeconfig,
                "--dns",
                f"{GATEWAY}:53",
                "--volumes",
                str(self.dir / "volumes"),
            ],
        )
        self._start_kube_proxy()
        self._start_kubelet()
        self.wait_node_ready(timeout=max(30.0, timeout - (time.monotonic() - start)))
        log(f"node {NODE} Ready in {time.monotonic() - start:.0f} s; KUBECONFIG={self.kubeconfig}")

    def down(self, quiet: bool = False) -> None:
        """Stop everything and leave nothing behind (see the module docstring for the order)."""
        if not self.dir.exists():
            return
        start = time.monotonic()
        if self._alive("kube-apiserver") and self._alive("kubelet"):
            self._delete_workloads()
        # the kubelet, then its API server and the rest, in reverse start order
        for name in reversed(self._pid_names()):
            self._stop(name, grace=10 if name != "containerd" else 15)
        self._kill_shims()
        if Path(BIN_DIR / "kube-proxy").exists():
            _run(str(BIN_DIR / "kube-proxy"), "--cleanup", check=False)
        self._unmount_all()
        _run("ip", "link", "del", BRIDGE, check=False)
        self._remove_cgroups()
        self._restore_sysctls()
        made = self.dir / "node-paths.json"
        for path in json.loads(made.read_text()) if made.exists() else []:
            _run("rm", "-rf", path, check=False)
        for logs in POD_LOGS:  # the kubelet removes a pod's logs some time after the pod: not at its stop
            if logs.is_dir():
                for entry in logs.iterdir():
                    _run("rm", "-rf", str(entry), check=False)
        _run("rm", "-rf", str(self.dir), check=False)
        self.procs.clear()
        if not quiet:
            log(f"cluster down in {time.monotonic() - start:.0f} s")

    def leftovers(self) -> list[str]:
        """What a cluster left on this machine: empty after down()."""
        found = []
        marker = str(self.dir)
        for pid in Path("/proc").iterdir():
            if pid.name.isdigit():
                try:
                    cmdline = (pid / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                except OSError:
                    continue
                # A kube binary counts only when it runs from this cluster's folder: the API server tests
                # start their own control planes from the same BIN_DIR, and may run while the cluster stops.
                try:
                    cwd = os.readlink(pid / "cwd")
                except OSError:
                    cwd = ""
                from_here = str(BIN_DIR) in cmdline and cwd.startswith(marker)
                if marker in cmdline or from_here or "containerd-shim" in cmdline:
                    found.append(f"process {pid.name}: {cmdline[:200]}")
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = line.split()[4]
            if point.startswith(marker) or "/kubelet/pods/" in point or point.startswith("/run/netns/cni-"):
                found.append(f"mount {point}")
        links = _run("ip", "-o", "link", "show", check=False).stdout
        for line in links.splitlines():
            name = line.split(":")[1].strip().split("@")[0]
            if name == BRIDGE or name.startswith("veth"):
                found.append(f"link {name}")
        chains = _run("iptables-save", check=False).stdout
        for chain in ("KUBE-SERVICES", "KUBE-POSTROUTING", "CNI-HOSTPORT-DNAT"):
            if f":{chain} " in chains:
                found.append(f"iptables chain {chain}")
        for controller in CGROUP_ROOT.iterdir():
            if (controller / "kubepods").exists():
                found.append(f"cgroup {controller / 'kubepods'}")
        if Path(self.dir / "cni").exists() or Path("/run/netns").is_dir() and any(Path("/run/netns").glob("cni-*")):
            found.append("network namespaces")
        for logs in POD_LOGS:
            found += [f"pod log {entry}" for entry in logs.glob("*")] if logs.is_dir() else []
        return found

    # --- using it -------------------------------------------------------------------------------------
    def load_images(self, images: list[str]) -> None:
        """Copy images from podman's store (scripts/images/env.sh) into containerd's k8s.io namespace.
        An image already imported with the same id is skipped."""
        stamps = IMAGE_STORE / "imported.json"
        done = json.loads(stamps.read_text()) if stamps.exists() else {}
        env = _podman_env()
        for image in images:
            image_id = _run("podman", "image", "inspect", "--format", "{{.Id}}", image, env=env).stdout.strip()
            if done.get(image) == image_id and image in self._ctr("images", "ls", "-q", check=False).stdout.split():
                continue
            t = time.monotonic()
            archive = self.dir / "image.tar"
            # docker-archive: its manifest names the image, so ctr imports it under exactly that name
            _run("podman", "save", "--format", "docker-archive", "-o", str(archive), image, env=env, timeout=600)
            self._ctr("images", "import", "--snapshotter", "overlayfs", str(archive), timeout=600)
            archive.unlink()
            done[image] = image_id
            stamps.write_text(json.dumps(done, indent=1))
            log(f"loaded {image} in {time.monotonic() - t:.0f} s")

    def wait_node_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name in ("containerd", "kubelet", "kube-apiserver"):
                if not self._alive(name):
                    raise ControlPlaneError(f"{name} exited:\n{self.log_tail(name)}")
            out = self.kubectl("get", "node", NODE, "-o", "json", check=False)
            if out.returncode == 0:
                node = json.loads(out.stdout)
                ready = [c for c in node["status"].get("conditions", []) if c["type"] == "Ready"]
                taints = [t["key"] for t in node["spec"].get("taints", [])]
                if ready and ready[0]["status"] == "True" and not taints:
                    return
            time.sleep(1)
        raise ControlPlaneError(f"node {NODE} not Ready after {timeout:.0f} s:\n{self.diagnose()}")

    def diagnose(self, namespace: str | None = None, lines: int = 25) -> str:
        """Pods' states, recent events and the last log lines of every component: printed on failure."""
        out = []
        scope = ["-n", namespace] if namespace else ["-A"]
        for args in (
            ["get", "nodes", "-o", "wide"],
            ["get", "all,pvc,pv", *scope, "-o", "wide"],
            ["get", "events", *scope, "--sort-by=.lastTimestamp"],
        ):
            proc = self.kubectl(*args, check=False, timeout=20) if self._alive("kube-apiserver") else None
            out.append(f"$ kubectl {' '.join(args)}\n{(proc.stdout + proc.stderr) if proc else '(no API server)'}")
        if namespace and self._alive("kube-apiserver"):
            pods = self.kubectl("-n", namespace, "get", "pods", "-o", "name", check=False, timeout=20).stdout.split()
            for pod in pods:
                proc = self.kubectl(
                    "-n", namespace, "logs", pod, "--all-containers", f"--tail={lines}", check=False, timeout=20
                )
                out.append(f"$ kubectl logs {pod}\n{proc.stdout}{proc.stderr}")
        for name in self._pid_names():
            out.append(
                f"--- {name} ({'running' if self._alive(name) else 'exited'}), last lines:\n"
                f"{self.log_tail(name, lines)}"
            )
        return "\n".join(out)

    # --- the parts --------------------------------------------------------------------------------------
    def _make_bridge(self) -> None:
        # made here, not by the CNI plugin at the first pod: the API server and the DNS listen on it first
        _run("ip", "link", "add", BRIDGE, "type", "bridge")
        _run("ip", "addr", "add", f"{GATEWAY}/24", "dev", BRIDGE)
        _run("ip", "link", "set", BRIDGE, "up")
        # pod -> service -> pod on the same bridge is routed through the host's NAT
        Path("/proc/sys/net/ipv4/ip_forward").write_text("1")

    def _start_containerd(self) -> None:
        cdir = self.dir / "containerd"
        (self.dir / "cni").mkdir(parents=True, exist_ok=True)
        cdir.mkdir(parents=True, exist_ok=True)
        IMAGE_STORE.mkdir(parents=True, exist_ok=True)
        (self.dir / "cni" / "10-jcode-watcher.conflist").write_text(
            json.dumps(
                {
                    "cniVersion": "0.4.0",
                    "name": "jcode-watcher",
                    "plugins": [
                        {
                            "type": "bridge",
                            "bridge": BRIDGE,
                            "isGateway": True,
                            "ipMasq": False,
                            "hairpinMode": True,
                            "ipam": {
                                "type": "host-local",
                                "ranges": [[{"subnet": POD_CIDR, "gateway": GATEWAY}]],
                                # only the cluster's own ranges: a pod has no route off this machine
                                "routes": [{"dst": SERVICE_CIDR}],
                                "dataDir": str(self.dir / "cni" / "ipam"),
                            },
                        },
                        {"type": "portmap", "capabilities": {"portMappings": True}},
                    ],
                },
                indent=1,
            )
        )
        config = f"""version = 2
root = "{IMAGE_STORE}"
state = "{cdir / "state"}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "{self.sock}"
[ttrpc]
  address = "{self.sock}.ttrpc"
[debug]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  # without it runc cannot lower oom_score_adj here and every sandbox fails to start
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{cdir / "runc"}"
        # runc that drops capabilities this machine cannot grant (support/cluster_runc.py says why)
        BinaryName = "{Path(__file__).with_name("cluster_runc.py")}"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN}"
    conf_dir = "{self.dir / "cni"}"
"""
        (cdir / "config.toml").write_text(config)
        self._spawn("containerd", ["containerd", "--config", str(cdir / "config.toml")])
        deadline = time.monotonic() + 30
        while self._ctr("version", check=False).returncode != 0:
            if not self._alive("containerd") or time.monotonic() > deadline:
                raise ControlPlaneError(f"containerd did not start:\n{self.log_tail('containerd')}")
            time.sleep(0.3)
        # containers of a run that was killed are stale: the kubelet recreates what it needs
        self._remove_containers()
        self.load_images([PAUSE_IMAGE])

    def _apiserver_flags(self) -> list[str]:
        # logs and exec through the node's address: its host name resolves to loopback here
        return ["--kubelet-preferred-address-types=InternalIP"]

    def _controller_manager_flags(self) -> list[str]:
        return [
            f"--service-account-private-key-file={self.dir / 'sa.key'}",
            f"--root-ca-file={self.dir / 'pki' / 'apiserver.crt'}",
            "--node-monitor-grace-period=20s",
            "--pod-eviction-timeout=30s",
        ]

    def _start_kube_proxy(self) -> None:
        config = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": self.kubeconfig},
            "hostnameOverride": NODE,
            "mode": "iptables",
            "clusterCIDR": POD_CIDR,
            # replies of pod -> service -> pod come back through the host without br_netfilter
            "iptables": {"masqueradeAll": True, "syncPeriod": "10s", "minSyncPeriod": "0s"},
            "conntrack": {"maxPerCore": 0, "min": 0},  # leave the machine's conntrack table alone
            "bindAddress": GATEWAY,
            "healthzBindAddress": "127.0.0.1:10256",
            "metricsBindAddress": "127.0.0.1:10249",
        }
        path = self.dir / "kube-proxy.yaml"
        path.write_text(json.dumps(config))
        self._spawn("kube-proxy", [str(BIN_DIR / "kube-proxy"), f"--config={path}", "--v=1"])

    def _start_kubelet(self) -> None:
        self.kubelet_dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "resolv.conf").write_text("")  # pods' DNS is the cluster's only
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": GATEWAY,
            "port": 10250,
            "readOnlyPort": 0,
            "healthzPort": 0,
            # the API server reaches logs and exec here; only the bridge and this host can connect
            "authentication": {"anonymous": {"enabled": True}, "webhook": {"enabled": False}},
            "authorization": {"mode": "AlwaysAllow"},
            "cgroupDriver": "cgroupfs",
            "failSwapOn": False,
            "clusterDNS": [GATEWAY],
            "clusterDomain": "cluster.local",
            "resolvConf": str(self.dir / "resolv.conf"),
            # the images were copied in, not pulled: never collect them; never evict for a full disk
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
            "syncFrequency": "10s",
            "fileCheckFrequency": "10s",
            "nodeStatusUpdateFrequency": "5s",
            "volumePluginDir": str(self.kubelet_dir / "volume-plugins"),
            "serializeImagePulls": False,
        }
        path = self.dir / "kubelet.yaml"
        path.write_text(json.dumps(config))
        self._spawn(
            "kubelet",
            [
                str(BIN_DIR / "kubelet"),
                f"--config={path}",
                f"--kubeconfig={self.kubeconfig}",
                f"--root-dir={self.kubelet_dir}",
                f"--cert-dir={self.kubelet_dir / 'pki'}",
                "--container-runtime=remote",
                f"--container-runtime-endpoint=unix://{self.sock}",
                f"--node-ip={GATEWAY}",
                "--v=1",
            ],
        )

    # --- teardown ---------------------------------------------------------------------------------------
    def _delete_workloads(self, timeout: float = 120) -> None:
        """Every workload deleted and its containers gone while the kubelet still runs: it tears down
        their network namespaces and mounts."""
        names = self.kubectl("get", "ns", "-o", "jsonpath={.items[*].metadata.name}", check=False).stdout.split()
        for kind in ("watcherdeployments.watcher.jcode.io",):
            # custom resources first, while their operator can still finish them; then drop stale finalizers
            self.kubectl("delete", kind, "--all", "-A", "--wait=false", check=False, timeout=30)
        for ns in names:
            if ns not in SYSTEM_NAMESPACES:
                self.kubectl("delete", "ns", ns, "--wait=false", check=False, timeout=30)
        for ns in SYSTEM_NAMESPACES:
            self.kubectl(
                "-n",
                ns,
                "delete",
                "deploy,ds,rs,sts,job,pod",
                "--all",
                "--cascade=foreground",
                "--grace-period=5",
                "--wait=false",
                check=False,
                timeout=30,
            )
        deadline = time.monotonic() + timeout
        finalizers_dropped = False
        while time.monotonic() < deadline:
            left = self._ctr("tasks", "ls", "-q", check=False).stdout.split()
            pods = self.kubectl("get", "pods", "-A", "-o", "name", check=False, timeout=20).stdout.split()
            if not left and not pods:
                return
            if not finalizers_dropped and time.monotonic() > deadline - timeout / 2:
                # an operator that is already gone cannot remove its finalizers
                self._drop_finalizers()
                finalizers_dropped = True
            time.sleep(1)
        log(f"workloads still running after {timeout:.0f} s: {pods} / tasks {left}")

    def _drop_finalizers(self) -> None:
        listed = self.kubectl(
            "get",
            "watcherdeployments.watcher.jcode.io",
            "-A",
            "-o",
            "jsonpath={range .items[*]}{.metadata.namespace}/{.metadata.name} {end}",
            check=False,
        ).stdout.split()
        for item in listed:
            ns, name = item.split("/")
            self.kubectl(
                "-n",
                ns,
                "patch",
                "watcherdeployment",
                name,
                "--type=merge",
                "-p",
                '{"metadata":{"finalizers":null}}',
                check=False,
            )

    def _remove_containers(self) -> None:
        for task in self._ctr("tasks", "ls", "-q", check=False).stdout.split():
            self._ctr("tasks", "kill", "-s", "SIGKILL", task, check=False)
            self._ctr("tasks", "delete", "-f", task, check=False)
        for container in self._ctr("containers", "ls", "-q", check=False).stdout.split():
            self._ctr("containers", "delete", container, check=False)

    def _kill_shims(self) -> None:
        for pid in Path("/proc").iterdir():
            if pid.name.isdigit():
                try:
                    cmdline = (pid / "cmdline").read_bytes().decode(errors="replace")
                except OSError:
                    continue
                if "containerd-shim" in cmdline and str(self.sock) in cmdline:
                    os.kill(int(pid.name), signal.SIGKILL)

    def _unmount_all(self) -> None:
        marker = str(self.dir)
        points = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
        for point in sorted({p for p in points if p.startswith(marker)}, key=len, reverse=True):
            _run("umount", "-l", point, check=False)

    def _remove_cgroups(self) -> None:
        """The kubelet's kubepods hierarchy in every controller, innermost first (empty by now)."""
        for controller in CGROUP_ROOT.iterdir():
            top = controller / "kubepods"
            if top.is_dir():
                for path in sorted(
                    (p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True
                ) + [top]:
                    try:
                        path.rmdir()
                    except OSError:
                        pass

    def _save_sysctls(self) -> None:
        saved = {k: Path("/proc/sys", k).read_text().strip() for k in SYSCTLS if Path("/proc/sys", k).exists()}
        (self.dir / "sysctls.json").write_text(json.dumps(saved))

    def _restore_sysctls(self) -> None:
        path = self.dir / "sysctls.json"
        if path.exists():
            for key, value in json.loads(path.read_text()).items():
                try:
                    Path("/proc/sys", key).write_text(value)
                except OSError:
                    pass

    # --- processes: each in its own session, with a pid file -------------------------------------------
    def _spawn(self, name: str, cmd: list[str]) -> None:
        logpath = self.dir / f"{name}.log"
        self.logs[name] = logpath
        with open(logpath, "ab") as fh:
            proc = subprocess.Popen(
                cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.dir, start_new_session=True
            )
        self.procs[name] = proc
        order = len(list((self.dir / "pids").glob("*")))
        (self.dir / "pids" / f"{order:02d}-{name}").write_text(str(proc.pid))

    def _pid_names(self) -> list[str]:
        pids = self.dir / "pids"
        return [p.name.split("-", 1)[1] for p in sorted(pids.iterdir())] if pids.is_dir() else []

    def _pid(self, name: str) -> int | None:
        for p in (self.dir / "pids").glob(f"*-{name}"):
            return int(p.read_text())
        return None

    def _alive(self, name: str) -> bool:
        pid = self._pid(name)
        if pid is None:
            return False
        proc = self.procs.get(name)
        if proc is not None:
            return proc.poll() is None
        try:
            return (
                str(self.dir) in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
                or name in Path(f"/proc/{pid}/comm").read_text()
            )
        except OSError:
            return False

    def _stop(self, name: str, grace: float) -> None:
        pid = self._pid(name)
        if pid is None or not self._alive(name):
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while self._alive(name) and time.monotonic() < deadline:
            time.sleep(0.2)
        if self._alive(name):  # the API server sometimes hangs on SIGTERM
            os.kill(pid, signal.SIGKILL)
            while self._alive(name):
                time.sleep(0.1)
        if name in self.procs:
            self.procs[name].wait(timeout=5)

    def log_tail(self, name: str, lines: int = 40) -> str:
        self.logs.setdefault(name, self.dir / f"{name}.log")
        return super().log_tail(name, lines)

    def _ctr(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        return _run("ctr", "--address", str(self.sock), "-n", "k8s.io", *args, check=check, timeout=timeout)

    def stop(self) -> None:  # ControlPlane's; the cluster stops through down()
        self.down()


ROOT = Path(__file__).resolve().parents[2]
WATCHER_NS = "watcher"
STUDENT_IMAGE = "localhost/jcode-watcher/student:test"
# the guide's Longhorn class; support.cluster_addons provisions its claims as hostPath volumes
STORAGE_CLASS = {
    "apiVersion": "storage.k8s.io/v1",
    "kind": "StorageClass",
    "metadata": {"name": "longhorn"},
    "provisioner": "driver.longhorn.io",
    "allowVolumeExpansion": True,
}


def install_watcher(cluster: Cluster, version: str, namespace: str = WATCHER_NS) -> dict:
    """The deployment guide's steps 1-3 on the cluster: the storage class, the namespace with the registry
    credentials and the workspace claim, the operator from the Helm chart, then
    examples/watcherdeployment-minimal.yaml with only the image tag and pull policy changed (the images
    were loaded, not pulled). Returns the applied WatcherDeployment."""
    import helm_python as helm
    import yaml

    cluster.kubectl("apply", "-f", "-", input=json.dumps(STORAGE_CLASS))
    cluster.kubectl("create", "namespace", namespace)
    # filemon and procmon need the privileged Pod Security level (docs/operator.md; 1.20 has no admission
    # for it yet, the label is what a newer cluster needs)
    cluster.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=privileged")
    cluster.kubectl(
        "-n",
        namespace,
        "create",
        "secret",
        "generic",
        "harbor-credentials",
        "--from-literal=username=robot$watcher",
        "--from-literal=password=not-used-images-are-local",
    )
    cluster.kubectl(
        "apply",
        "-f",
        "-",
        input=json.dumps(
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": "jcode-vol-pvc", "namespace": namespace},
                "spec": {
                    "accessModes": ["ReadWriteMany"],
                    "storageClassName": "longhorn",
                    "resources": {"requests": {"storage": "10Gi"}},
                },
            }
        ),
    )
    config = helm.Config(kubeconfig_path=cluster.kubeconfig, namespace=namespace)
    try:
        config.install(
            str(ROOT / "charts" / "watcher-operator"),
            "watcher-operator",
            {"image": {"tag": version, "pullPolicy": "Never"}},
            namespace=namespace,
            timeout=180,
        )
    finally:
        config.close()
    example = yaml.safe_load((ROOT / "examples" / "watcherdeployment-minimal.yaml").read_text())
    example["metadata"]["namespace"] = namespace
    example["spec"]["image"].update(tag=version, pullPolicy="Never")
    # the chart's CRD must be served before a WatcherDeployment can be applied
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/watcherdeployments.watcher.jcode.io")
    cluster.kubectl("apply", "-f", "-", input=json.dumps(example))
    return example


def _podman_env() -> dict[str, str]:
    from support.podman import container_env

    return container_env()


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        description="A one-node Kubernetes cluster on this machine (the one the cluster tests use). Needs root."
    )
    parser.add_argument(
        "command",
        choices=["up", "down", "status"],
        help="up: start it and print KUBECONFIG; down: stop it and remove everything; status: say whether it runs",
    )
    parser.add_argument(
        "--watcher",
        action="store_true",
        help="with up: load the four images (make images) and the student image, install the "
        "operator chart and apply examples/watcherdeployment-minimal.yaml in namespace watcher",
    )
    args = parser.parse_args(argv)
    cluster = Cluster()
    if args.command == "up":
        try:
            cluster.up()
            if args.watcher:
                from support.podman import COMPONENTS, image_tag, project_version

                cluster.load_images([image_tag(c) for c in COMPONENTS] + [STUDENT_IMAGE])
                install_watcher(cluster, project_version())
                log("installed; watch it with: kubectl -n watcher get wd,pods  (KUBECONFIG below)")
        except Exception as exc:  # any step's failure: one line, and the cluster left to look at
            log(f"error: {exc}")
            log("the cluster stays up for a look (kubectl, logs in its directory); make cluster-down removes it")
            print(cluster.kubeconfig)
            return 1
        print(cluster.kubeconfig)
    elif args.command == "down":
        cluster.down()
        left = cluster.leftovers()
        for item in left:
            log(f"left behind: {item}")
        return 1 if left else 0
    else:
        print("running" if cluster.running() else "not running")
    return 0


if __name__ == "__main__":
    sys.exit(main())
