"""The four images, built from docker/Dockerfile and run with podman as the manifests run them.

Each test starts real containers on the host network (loopback only) and removes them at the end:
the backend keeps its data across a restart, filemon in its container snapshots a save in a mounted
workspace and reports to the backend container, procmon with the DaemonSet's capabilities and host
mounts records a student's compiles and runs, and the operator reconciles against a real API server.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import stat
from pathlib import Path

import httpx
import pytest
import yaml
from system.operator.conftest import STORAGE_CLASS
from system.operator.test_operator_real_api import prepare
from system.procmon.pm_helpers import Container as StudentContainer
from system.procmon.pm_helpers import why_no_ebpf

from support.backend import wire_event
from support.kube import ControlPlane
from support.podman import (
    Podman,
    build_images,
    build_local_image,
    ensure_tracefs,
    image_config,
    image_size,
    wait_until,
    why_no_podman,
)
from support.ports import free_port

ROOT = Path(__file__).resolve().parents[3]
STUDENT = ("os", "1", "202012345", "hw1")
TIMELINE = "/api/v1/courses/os/sections/1/assignments/hw1/students/202012345/timeline"
BACKEND_UID = 10001


@pytest.fixture(scope="module")
def images() -> dict[str, str]:
    reason = why_no_podman()
    if reason:
        pytest.skip(reason)
    tags = build_images()
    print("\nimage sizes: " + ", ".join(f"{tag} {image_size(tag) / 1e6:.0f} MB" for tag in tags.values()))
    return tags


@pytest.fixture
def pods():
    with Podman() as pm:
        yield pm
        pm.remove_all()
        assert pm.leftovers() == []


def tokens() -> dict[str, str]:
    return {scope: f"{scope}-{secrets.token_hex(12)}" for scope in ("ingest", "read", "admin")}


def token_env(tok: dict[str, str]) -> dict[str, str]:
    return {f"WATCHER_{scope.upper()}_TOKEN": value for scope, value in tok.items()}


def owned_dir(path: Path, uid: int = BACKEND_UID) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    os.chown(path, uid, uid)
    return path


def start_backend(pods: Podman, image: str, tmp: Path, tok: dict[str, str], snapshots: Path | None = None):
    port = free_port()
    data = owned_dir(tmp / "backend-data")
    volumes = {data: "/app/data"}
    if snapshots is not None:
        volumes[snapshots] = "/watcher/snapshots:ro"
    # the port by its environment variable, which the image's HEALTHCHECK reads too
    c = pods.run(
        image,
        "backend",
        "--host",
        "127.0.0.1",
        "--snapshot-dir",
        "/watcher/snapshots",
        "--database-url",
        "sqlite:////app/data/watcher.db",
        name="backend",
        volumes=volumes,
        env=token_env(tok) | {"WATCHER_PORT": str(port)},
        # the DaemonSet's restrictions: read-only root, no capabilities, writable /tmp only
        options=("--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL"),
    )
    url = f"http://127.0.0.1:{port}"
    wait_until(
        lambda: httpx.get(f"{url}/health", timeout=2).status_code == 200,
        60,
        f"the backend container's /health\n{c.logs()[-2000:]}",
    )
    return c, url, port


def read(url: str, tok: dict[str, str], path: str, **params) -> httpx.Response:
    return httpx.get(url + path, params=params, headers={"Authorization": f"Bearer {tok['read']}"}, timeout=10)


def timeline(url: str, tok: dict[str, str]) -> list[dict]:
    r = read(url, tok, TIMELINE, limit=1000)
    return r.json()["events"] if r.status_code == 200 else []


# --- what every image is -----------------------------------------------------------------------------

# Which modules an image can import (bcc the way procmon loads it: Debian's package), and which build
# tools it carries.
PROBE = """
import importlib.util, json, shutil, sys
found = {m: importlib.util.find_spec(m) is not None for m in sys.argv[1:]}
try:
    from watcher_agents.procmon.ebpf import import_bcc
    import_bcc()
    found["bcc"] = True
except Exception:
    found["bcc"] = False
found |= {tool: shutil.which(tool) is not None for tool in ("gcc", "cc", "pip", "pip3")}
print(json.dumps(found))
"""


def test_every_image_has_its_labels_entrypoint_and_user_and_no_build_tools(images):
    version = images["backend"].rsplit(":", 1)[1]
    for component, tag in images.items():
        config = image_config(tag)
        labels = config["Labels"] or {}
        assert labels["org.opencontainers.image.version"] == version, component
        assert labels["org.opencontainers.image.title"] == f"watcher-{component}"
        assert len(labels["org.opencontainers.image.revision"]) >= 7
        assert labels["org.opencontainers.image.source"].startswith("https://")
        assert config["Config"]["Entrypoint"] == ["watcher"]
        assert (config.get("Healthcheck") or {}).get("Test"), f"{component} has no HEALTHCHECK"
        user = config["Config"].get("User") or "0"
        assert user.startswith("10001") == (component in ("backend", "operator")), (component, user)
    with Podman() as pm:
        for component, tag in images.items():
            # one venv per image with only its component's dependencies, and no compiler or pip
            c = pm.run(
                tag,
                "-c",
                PROBE,
                "fastapi",
                "kopf",
                "inotify_simple",
                name=f"probe-{component}",
                options=("--entrypoint", "python3"),
            )
            wait_until(lambda: not c.running(), 30, f"{component} probe")
            found = json.loads(c.logs().strip().splitlines()[-1])
            assert found["fastapi"] == (component == "backend"), (component, found)
            assert found["kopf"] == (component == "operator"), (component, found)
            assert found["inotify_simple"] == (component in ("filemon", "procmon")), (component, found)
            assert found["bcc"] == (component == "procmon"), (component, found)
            assert not any(found[tool] for tool in ("gcc", "cc", "pip", "pip3")), (component, found)
            if component == "filemon":  # a command of another image says which extra it lacks
                other = pm.run(
                    tag,
                    "backend",
                    "--insecure-no-auth",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(free_port()),
                    name="filemon-runs-backend",
                )
                wait_until(lambda: not other.running(), 30, "watcher backend in the filemon image")
                assert "pip install 'jcode-watcher[backend]'" in other.logs(), other.logs()
                assert "Traceback" not in other.logs()
            version_out = pm.run(tag, "--version", name=f"version-{component}")
            wait_until(lambda: not version_out.running(), 30, f"{component} --version")
            assert version in version_out.logs()


# --- backend -----------------------------------------------------------------------------------------


def test_backend_serves_health_and_keeps_its_data_across_a_restart(images, pods, tmp_path):
    tok = tokens()
    c, url, port = start_backend(pods, images["backend"], tmp_path, tok)
    health = httpx.get(f"{url}/health", timeout=5).json()
    assert health["status"] == "healthy" and health["timestamp"]
    logs = c.logs()
    for line in ("Server starting on port", "Database initialized", "API endpoints ready"):
        assert line in logs, logs[-2000:]
    assert c.exec("id", "-u").stdout.strip() == str(BACKEND_UID)
    assert c.healthcheck().returncode == 0, "the image's HEALTHCHECK fails on a healthy backend"

    event = wire_event("file.save", course="os", section="1", student_id="202012345", assignment="hw1", path="main.c")
    r = httpx.post(
        f"{url}/api/v1/events", json=[event], headers={"Authorization": f"Bearer {tok['ingest']}"}, timeout=10
    )
    assert r.status_code == 200 and r.json()["accepted"] == 1, r.text
    assert (tmp_path / "backend-data" / "watcher.db").exists()

    c.restart()
    wait_until(lambda: httpx.get(f"{url}/health", timeout=2).status_code == 200, 60, "/health after restart")
    assert [e["event_id"] for e in timeline(url, tok)] == [event["event_id"]]
    # a refused client sees why
    denied = httpx.get(url + TIMELINE, timeout=5)
    assert denied.status_code == 401 and denied.json()["detail"]


# --- filemon -----------------------------------------------------------------------------------------


def test_filemon_snapshots_a_save_in_the_mounted_workspace_and_reports_to_the_backend(images, pods, tmp_path):
    tok = tokens()
    snapshots = owned_dir(tmp_path / "snapshots", 0)
    workspace = tmp_path / "workspace"
    student_dir = workspace / "os-1-202012345" / "hw1"
    student_dir.mkdir(parents=True)
    _, url, _ = start_backend(pods, images["backend"], tmp_path, tok, snapshots=snapshots)
    metrics = free_port()
    state = tmp_path / "filemon-state"
    state.mkdir()
    fm = pods.run(
        images["filemon"],
        "filemon",
        "--workspace-root",
        "/watcher/codes",
        "--snapshot-dir",
        "/watcher/snapshots",
        "--state-dir",
        "/var/lib/watcher/filemon",
        "--backend-url",
        url,
        "--node-name",
        "image-test-node",
        name="filemon",
        volumes={workspace: "/watcher/codes:ro", snapshots: "/watcher/snapshots", state: "/var/lib/watcher/filemon"},
        env={
            "WATCHER_INGEST_TOKEN": tok["ingest"],
            "WATCHER_DEBOUNCE_SECONDS": "0.2",
            "WATCHER_METRICS_PORT": str(metrics),
        },
        # the DaemonSet's container: root with only DAC_READ_SEARCH, read-only root filesystem
        options=("--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL", "--cap-add", "DAC_READ_SEARCH"),
    )
    wait_until(
        lambda: httpx.get(f"http://127.0.0.1:{metrics}/healthz", timeout=2).status_code == 200,
        60,
        f"filemon's /healthz\n{fm.logs()[-2000:]}",
    )
    source = '#include <stdio.h>\nint main(void) { puts("hello"); return 0; }\n'
    main_c = student_dir / "main.c"
    main_c.write_text(source)
    # a student file the student alone may read: DAC_READ_SEARCH still reads it
    main_c.chmod(stat.S_IRUSR | stat.S_IWUSR)
    os.chown(main_c, 1000, 1000)

    saves = wait_until(
        lambda: [e for e in timeline(url, tok) if e["type"] == "file.save"],
        60,
        f"the save in the backend\n{fm.logs()[-2000:]}",
    )
    assert saves[0]["path"] == "main.c" and saves[0]["node"] == "image-test-node"
    content = read(url, tok, f"/api/v1/snapshots/{saves[0]['sha256']}")
    assert content.status_code == 200 and content.text == source
    text = httpx.get(f"http://127.0.0.1:{metrics}/metrics", timeout=5).text
    assert "file_events_total" in text
    assert fm.healthcheck().returncode == 0


# --- procmon -----------------------------------------------------------------------------------------

DAEMONSET_PROCMON = (
    "--pid",
    "host",
    "--read-only",
    "--tmpfs",
    "/tmp",
    "--cap-drop",
    "ALL",
    "--cap-add",
    "BPF,PERFMON,SYS_RESOURCE,SYS_PTRACE,NET_ADMIN",
    "--security-opt",
    "seccomp=unconfined",
)


def test_procmon_with_the_daemonset_privileges_records_a_students_compiles_and_runs(images, pods, tmp_path):
    reason = why_no_ebpf()
    if reason:
        pytest.skip(reason)
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    ensure_tracefs()
    tok = tokens()
    _, url, _ = start_backend(pods, images["backend"], tmp_path, tok)
    metrics = free_port()
    state = tmp_path / "procmon-state"
    state.mkdir()
    host_mounts = {
        "/lib/modules": "/lib/modules:ro",
        "/usr/src": "/usr/src:ro",
        "/sys/kernel/tracing": "/sys/kernel/tracing:ro",
        state: "/var/lib/watcher/procmon",
    }
    if Path("/sys/kernel/debug/tracing").exists():
        host_mounts["/sys/kernel/debug"] = "/sys/kernel/debug:ro"
    pm = pods.run(
        images["procmon"],
        "procmon",
        "--workspace-root",
        "/watcher/codes",
        "--state-dir",
        "/var/lib/watcher/procmon",
        "--backend-url",
        url,
        "--node-name",
        "image-test-node",
        "--mode",
        "ebpf",
        "--flush-timeout",
        "2",
        name="procmon",
        volumes=host_mounts,
        env={"WATCHER_INGEST_TOKEN": tok["ingest"], "WATCHER_METRICS_PORT": str(metrics)},
        options=DAEMONSET_PROCMON,
    )
    wait_until(
        lambda: httpx.get(f"http://127.0.0.1:{metrics}/healthz", timeout=2).status_code == 200,
        180,
        f"procmon's /healthz (bcc compiles its programs at start)\n{pm.logs()[-3000:]}",
    )
    assert "ebpf" in pm.logs().lower()

    files = tmp_path / "student-files"
    hw = files / "hw1"
    hw.mkdir(parents=True)
    (hw / "ok.c").write_text("int main(void) { return 3; }\n")
    (hw / "bad.c").write_text("int main(void) { return undefined_name; }\n")
    student = StudentContainer("image-test")
    try:
        # a student pod: its own UTS and mount namespaces, the pod name as hostname and in /etc/hostname
        # (as the kubelet mounts it), the student's folder at /home/coder/project
        proc = student.pod(
            "gcc bad.c -o bad; gcc ok.c -o ok && ./ok; echo done",
            hostname="jcode-os-1-202012345-7d9c8b-x2x4q",
            files=files,
            workdir="hw1",
        )
        assert "done" in proc.stdout, proc.stderr

        def recorded():
            events = [e for e in timeline(url, tok) if e["type"].startswith("process.")]
            compiles = [e for e in events if e["type"] == "process.compile"]
            runs = [e for e in events if e["type"] == "process.run"]
            return (compiles, runs) if len(compiles) >= 2 and runs else None

        compiles, runs = wait_until(recorded, 60, f"the compiles and the run\n{pm.logs()[-3000:]}")
    finally:
        student.remove()
    by_source = {tuple(e["sources"]): e for e in compiles}
    assert by_source[("bad.c",)]["exit_code"] != 0
    assert by_source[("ok.c",)]["exit_code"] == 0
    assert runs[0]["exit_code"] == 3 and runs[0]["kind"] == "binary"
    assert all(e["node"] == "image-test-node" for e in compiles + runs)
    assert pm.healthcheck().returncode == 0


# --- operator ----------------------------------------------------------------------------------------


def test_operator_answers_its_liveness_probe_and_reconciles_a_watcherdeployment(images, pods, kube_binaries, tmp_path):
    kube_dir = tmp_path / "kube"
    with ControlPlane(kube_dir) as cp:
        # the image's user (10001) reads the kubeconfig and the API server's certificate
        for path in (tmp_path, kube_dir, kube_dir / "pki"):
            path.chmod(0o755)
        for path in (kube_dir / "admin.kubeconfig", kube_dir / "pki" / "apiserver.crt"):
            path.chmod(0o644)
        cp.kubectl("apply", "-f", str(ROOT / "crds" / "watcherdeployments.watcher.jcode.io.yaml"))
        cp.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/watcherdeployments.watcher.jcode.io")
        cp.kubectl("create", "namespace", "watcher")
        # what the guide's step 1 and 3 leave behind, as the operator's own system tests set it up
        cp.kubectl("apply", "-f", "-", input=json.dumps(STORAGE_CLASS))
        prepare(cp, "watcher")
        port = free_port()
        op = pods.run(
            images["operator"],
            "operator",
            "--namespace",
            "watcher",
            "--standalone",
            name="operator",
            volumes={kube_dir: f"{kube_dir}:ro"},
            env={"KUBECONFIG": cp.kubeconfig, "WATCHER_OPERATOR_LIVENESS": f"http://127.0.0.1:{port}/healthz"},
            options=("--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL"),
        )
        wait_until(
            lambda: httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200,
            90,
            f"the operator's liveness probe\n{op.logs()[-3000:]}",
        )
        doc = yaml.safe_load((ROOT / "examples" / "watcherdeployment-minimal.yaml").read_text())
        cp.kubectl("apply", "-f", "-", input=json.dumps(doc))
        wait_until(
            lambda: cp.kubectl("-n", "watcher", "get", "deployment", "watcher-backend", check=False).returncode == 0,
            90,
            f"the Deployment the operator creates\n{op.logs()[-3000:]}",
        )
        image = cp.kubectl(
            "-n",
            "watcher",
            "get",
            "daemonset",
            "watcher-procmon",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}",
        ).stdout
        assert image == f"harbor.jbnu.ac.kr/jdevops/watcher-procmon:{doc['spec']['image']['tag']}"
        assert op.healthcheck().returncode == 0
        assert "Traceback" not in op.logs()


# --- the pod sandbox image of the test cluster ------------------------------------------------------


def test_the_pause_image_holds_a_sandbox_and_leaves_on_sigterm(images, pods):
    tag = build_local_image("pause")
    config = image_config(tag)
    assert config["Config"]["Entrypoint"] == ["/pause"] and config["Config"]["User"] == "65535:65535"
    sandbox = pods.run(tag, name="pause", network="none")
    wait_until(sandbox.running, 10, "the pause container running")
    assert sandbox.inspect("{{.Config.User}}") == "65535:65535"
    sandbox.stop()
    # it exits on SIGTERM by itself (0), not by the runtime's SIGKILL after the grace period (137)
    assert sandbox.inspect("{{.State.ExitCode}}") == "0"
