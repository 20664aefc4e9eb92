"""The deployment guide's step 4 on a real one-node cluster: the operator installed from the Helm chart,
`examples/watcherdeployment-minimal.yaml` applied with only the image tag and pull policy changed, and a
simulated JCode student pod whose saves, compiles and runs reach the backend through its Service.

The tests run in file order and share one installation: each step is the state a user reaches next.
The last test tears the cluster down and checks that nothing is left on the machine.
"""

from __future__ import annotations

import base64
import json
import time
import urllib.request
from pathlib import Path

import pytest

from support.cluster import STUDENT_IMAGE, Cluster, install_watcher
from support.cluster import WATCHER_NS as NS
from support.podman import project_version
from support.waiting import wait_for

# as JCode names a student's code-server pod: jcode-<course>-<section>-<student id>-<hash>-<id>
STUDENT_POD = "jcode-os-1-202012345-7c9d8f6b5-x2k4q"
STUDENT_DIR = "os-1-202012345"
TIMELINE = "/api/v1/courses/os/sections/1/assignments/hw1/students/202012345/timeline"

BAD_C = '#include <stdio.h>\nint main(void) { puts("hi") return 0; }\n'  # missing ';'
MAIN_C = '#include <stdio.h>\nint main(void) { puts("hello"); return 0; }\n'
CRASH_C = "int main(void) { volatile int *p = 0; return *p; }\n"
HELLO_PY = "print('hello from python')\n"


def get(cluster: Cluster, *args: str) -> dict:
    return json.loads(cluster.kubectl(*args, "-o", "json").stdout)


def pods(cluster: Cluster, app: str) -> list[dict]:
    return get(cluster, "-n", NS, "get", "pods", "-l", f"app={app}")["items"]


def ready(pod: dict) -> bool:
    return pod["status"].get("phase") == "Running" and all(
        c.get("ready") for c in pod["status"].get("containerStatuses") or [{}]
    )


def run_pod(
    cluster: Cluster, name: str, script: str, timeout: float = 90, namespace: str = NS, labels: dict | None = None
) -> str:
    """Run a Python script in a throw-away pod of the student image; its output."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
        "spec": {
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": "probe",
                    "image": STUDENT_IMAGE,
                    "imagePullPolicy": "Never",
                    "command": ["python3", "-c", script],
                }
            ],
        },
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(pod))

    def finished():
        phase = get(cluster, "-n", namespace, "get", "pod", name)["status"].get("phase")
        return phase in ("Succeeded", "Failed") and phase

    phase = wait_for(finished, timeout, f"pod {name} to finish")
    out = cluster.kubectl("-n", namespace, "logs", name).stdout
    cluster.kubectl("-n", namespace, "delete", "pod", name, "--grace-period=0", "--force", check=False)
    assert phase == "Succeeded", out
    return out


def token(cluster: Cluster, which: str) -> str:
    secret = get(cluster, "-n", NS, "get", "secret", "watcher-tokens")
    return base64.b64decode(secret["data"][f"{which}-token"]).decode()


def backend(cluster: Cluster, path: str) -> tuple[int, bytes]:
    """GET through the backend's Service (its ClusterIP, as kube-proxy routes it on the node)."""
    ip = get(cluster, "-n", NS, "get", "service", "watcher-backend-service")["spec"]["clusterIP"]
    req = urllib.request.Request(
        f"http://{ip}:3000{path}", headers={"Authorization": f"Bearer {token(cluster, 'read')}"}
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.fixture(scope="module")
def installed(cluster: Cluster) -> dict:
    return install_watcher(cluster, project_version(), NS)


def test_the_guides_objects_run_and_are_ready(cluster, installed):
    wait = cluster.kubectl(
        "-n",
        NS,
        "wait",
        "--for=condition=Ready",
        "--timeout=300s",
        "watcherdeployment/watcher",
        check=False,
        timeout=320,
    )
    assert wait.returncode == 0, wait.stderr
    listing = cluster.kubectl("-n", NS, "get", "all").stdout
    for name in (
        "deployment.apps/watcher-backend",
        "service/watcher-backend-service",
        "daemonset.apps/watcher-filemon",
        "daemonset.apps/watcher-procmon",
        "service/watcher-filemon",
        "service/watcher-procmon",
        "deployment.apps/watcher-operator",
    ):
        assert name in listing, listing
    services = {
        s["metadata"]["name"]: [p["port"] for p in s["spec"]["ports"]]
        for s in get(cluster, "-n", NS, "get", "services")["items"]
    }
    assert services["watcher-backend-service"] == [3000]
    assert services["watcher-filemon"] == [9090] and services["watcher-procmon"] == [9090]
    for app in ("watcher-backend", "watcher-filemon", "watcher-procmon", "watcher-operator"):
        found = (
            pods(cluster, app)
            if app != "watcher-operator"
            else get(cluster, "-n", NS, "get", "pods", "-l", "app.kubernetes.io/name=watcher-operator")["items"]
        )
        assert found and all(ready(p) for p in found), (app, [p["status"] for p in found])
    claims = {c["metadata"]["name"]: c["status"]["phase"] for c in get(cluster, "-n", NS, "get", "pvc")["items"]}
    assert claims["watcher-backend-pvc"] == "Bound" and claims["watcher-filemon-storage-pvc"] == "Bound", claims

    log = cluster.kubectl("-n", NS, "logs", "deployment/watcher-backend").stdout
    for line in ("Server starting on port 3000", "Database initialized", "API endpoints ready"):
        assert line in log, log[-2000:]

    columns = cluster.kubectl("-n", NS, "get", "wd").stdout.splitlines()
    assert columns[0].split() == ["NAME", "READY", "BACKEND", "FILEMON", "PROCMON", "AGE"], columns
    assert columns[1].split()[:5] == ["watcher", "True", "1/1", "1/1", "1/1"], columns


def test_health_through_the_service_from_a_pod_and_filemon_metrics(cluster, installed):
    out = run_pod(
        cluster,
        "probe-health",
        (
            "import json, urllib.request\n"
            "h = urllib.request.urlopen('http://watcher-backend-service.watcher.svc.cluster.local:3000/health').read()\n"
            "m = urllib.request.urlopen('http://watcher-filemon.watcher.svc.cluster.local:9090/metrics').read()\n"
            "print(json.dumps({'health': json.loads(h), 'metrics': m.decode()}))\n"
        ),
    )
    answer = json.loads(out.strip().splitlines()[-1])
    assert answer["health"]["status"] == "healthy", answer["health"]
    assert "file_events_total" in answer["metrics"]


def student_pod(cluster: Cluster) -> None:
    """A code-server pod as JCode makes it: its folder of the workspace claim at /home/coder/project."""
    # the platform creates the student's folder when it makes the pod
    pv = get(cluster, "-n", NS, "get", "pvc", "jcode-vol-pvc")["spec"]["volumeName"]
    root = Path(get(cluster, "get", "pv", pv)["spec"]["hostPath"]["path"])
    (root / STUDENT_DIR / "hw1").mkdir(parents=True, exist_ok=True)
    for path in (root / STUDENT_DIR, root / STUDENT_DIR / "hw1"):
        path.chmod(0o777)
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": STUDENT_POD, "namespace": NS, "labels": {"app": "jcode-student"}},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "securityContext": {"runAsUser": 1000, "runAsGroup": 1000},
            "containers": [
                {
                    "name": "code-server",
                    "image": STUDENT_IMAGE,
                    "imagePullPolicy": "Never",
                    "command": ["sleep", "infinity"],
                    "workingDir": "/home/coder/project",
                    "volumeMounts": [{"name": "jcode-vol", "mountPath": "/home/coder/project", "subPath": STUDENT_DIR}],
                }
            ],
            "volumes": [{"name": "jcode-vol", "persistentVolumeClaim": {"claimName": "jcode-vol-pvc"}}],
        },
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(pod))
    cluster.kubectl("-n", NS, "wait", "--for=condition=Ready", "--timeout=90s", f"pod/{STUDENT_POD}", timeout=100)


def in_student_pod(cluster: Cluster, script: str) -> None:
    cluster.kubectl(
        "-n", NS, "exec", STUDENT_POD, "--", "sh", "-c", f"cd /home/coder/project/hw1 && {script}", check=False
    )


def save(cluster: Cluster, name: str, content: str) -> None:
    cluster.kubectl(
        "-n", NS, "exec", "-i", STUDENT_POD, "--", "sh", "-c", f"cat > /home/coder/project/hw1/{name}", input=content
    )
    time.sleep(1.5)  # past filemon's debounce: one save, one snapshot


def test_a_students_saves_compiles_and_runs_reach_the_backend(cluster, installed):
    student_pod(cluster)
    save(cluster, "bad.c", BAD_C)
    in_student_pod(cluster, "gcc bad.c -o bad")  # fails: exit 1
    save(cluster, "main.c", MAIN_C)
    in_student_pod(cluster, "gcc main.c -o main && ./main")
    save(cluster, "crash.c", CRASH_C)
    in_student_pod(cluster, "gcc crash.c -o crash && ./crash")  # SIGSEGV
    save(cluster, "hello.py", HELLO_PY)
    in_student_pod(cluster, "python3 hello.py")

    expected = sorted(
        [
            ("file.save", "bad.c", None, None),
            ("file.save", "main.c", None, None),
            ("file.save", "crash.c", None, None),
            ("file.save", "hello.py", None, None),
            ("process.compile", "bad.c", 1, None),
            ("process.compile", "main.c", 0, None),
            ("process.compile", "crash.c", 0, None),
            ("process.run", "main", 0, None),
            ("process.run", "crash", None, 11),
            ("process.run", "hello.py", 0, None),
        ],
        key=repr,
    )

    def recorded():
        status, body = backend(cluster, TIMELINE)
        if status != 200:
            return None
        events = json.loads(body)
        events = events.get("events", events) if isinstance(events, dict) else events
        return events if len(events) >= len(expected) else None

    wait_for(recorded, 90, "the student's ten events in the backend")
    time.sleep(3)  # anything more (a duplicate, a stray process) would arrive by now
    events = recorded()
    got = sorted(
        (
            (
                e["type"],
                e["path"],
                e.get("exit_code") if e["type"] != "file.save" else None,
                e.get("signal") if e["type"] != "file.save" else None,
            )
            for e in events
        ),
        key=repr,
    )
    assert got == expected, f"recorded {got}\nexpected {expected}"
    runs = {e["path"]: e for e in events if e["type"] == "process.run"}
    assert runs["hello.py"]["kind"] == "python" and runs["main"]["kind"] == "binary"
    contents = {"bad.c": BAD_C, "main.c": MAIN_C, "crash.c": CRASH_C, "hello.py": HELLO_PY}
    for e in events:
        if e["type"] == "file.save":
            status, body = backend(cluster, f"/api/v1/snapshots/{e['sha256']}")
            assert status == 200 and body.decode() == contents[e["path"]], e


# the platform backend's 11 reads of the old API, as it sends them: no token, the integer student number,
# LocalDateTime.toString() times (../shared/reference/jcode-platform-clients.md)
PLATFORM_READS = (
    "/api/os-1/hw1/202012345",
    "/api/os-1/hw1/202012345/main.c",
    "/api/snapshot_avg/os-1/hw1/202012345/main.c",
    "/api/assignments/snapshot_avg/os-1/hw1/202012345",
    "/api/graph_data/os-1/hw1/202012345/5",
    "/api/os-1/hw1/202012345/logs/build",
    "/api/os-1/hw1/202012345/logs/run",
    "/api/assignment/os-1/hw1",
    "/api/total_graph_data/os-1/hw1/2020-01-01T00:00/2099-12-31T23:59:59",
    "/api/build_avg/os-1/hw1",
    "/api/run_avg/os-1/hw1",
)


def test_the_platform_reads_the_old_api_without_a_token(cluster, installed):
    """spec.platform names the platform's pods: they read the old API without a token, and nothing else.
    (A student pod is kept out by the NetworkPolicy, which this test cluster's CNI does not enforce.)"""
    cluster.kubectl("create", "namespace", "jcode")
    # set by Kubernetes itself from 1.21 on; this cluster is 1.20
    cluster.kubectl("label", "namespace", "jcode", "kubernetes.io/metadata.name=jcode")
    script = (
        "import json, urllib.request, urllib.error\n"
        "out = {}\n"
        f"for path in {PLATFORM_READS!r}:\n"
        "    try:\n"
        "        with urllib.request.urlopen('http://watcher-backend-service.watcher.svc.cluster.local:3000'"
        " + path) as r:\n"
        "            out[path] = [r.status, json.loads(r.read())]\n"
        "    except urllib.error.HTTPError as e:\n"
        "        out[path] = [e.code, json.loads(e.read())]\n"
        "print(json.dumps(out))\n"
    )
    platform = {"app": "jcode-backend"}

    def platform_reads() -> dict:
        out = run_pod(cluster, "jcode-backend-probe", script, namespace="jcode", labels=platform)
        return json.loads(out.strip().splitlines()[-1])

    refused = platform_reads()
    assert all(status == 401 for status, _ in refused.values()), refused
    assert "WATCHER_LEGACY_READS_FROM is not set" in refused[PLATFORM_READS[0]][1]["detail"]

    patch_spec(
        cluster, {"platform": {"namespaceSelector": {"kubernetes.io/metadata.name": "jcode"}, "podSelector": platform}}
    )
    policy = wait_for(
        lambda: next(
            (
                p
                for p in get(cluster, "-n", NS, "get", "networkpolicy", "watcher-backend")["spec"]["ingress"][0]["from"]
                if p.get("podSelector", {}).get("matchLabels") == platform
            ),
            None,
        ),
        60,
        "the platform admitted by the NetworkPolicy",
    )
    assert policy["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": "jcode"}}
    cluster.kubectl("-n", NS, "rollout", "status", "deployment/watcher-backend", "--timeout=120s", timeout=130)
    answers = platform_reads()
    assert {path: status for path, (status, _) in answers.items()} == {path: 200 for path in PLATFORM_READS}, answers
    assert answers["/api/os-1/hw1/202012345"][1] == sorted(["bad.c", "main.c", "crash.c", "hello.py"])
    builds = answers["/api/os-1/hw1/202012345/logs/build"][1]
    assert sorted(b["exit_code"] for b in builds) == [0, 0, 1]
    # the exception is the old API's reads: a write or /api/v1 from the platform still needs a token
    write = run_pod(
        cluster,
        "jcode-backend-write",
        (
            "import urllib.request, urllib.error\n"
            "base = 'http://watcher-backend-service.watcher.svc.cluster.local:3000'\n"
            "for req in (urllib.request.Request(base + '/api/os-1/hw1/202012345/a.c/20261203_100000', "
            "data=b'{\"bytes\": 1}', headers={'Content-Type': 'application/json'}), "
            "urllib.request.Request(base + '/api/v1/courses')):\n"
            "    try:\n"
            "        print(urllib.request.urlopen(req).status)\n"
            "    except urllib.error.HTTPError as e:\n"
            "        print(e.code)\n"
        ),
        namespace="jcode",
        labels=platform,
    )
    assert write.split() == ["401", "401"], write


def test_editing_the_resource_reaches_the_running_pods(cluster, installed):
    patch_spec(cluster, {"procmon": {"enabled": False}, "filemon": {"debounceMs": 700}, "backend": {"workers": 2}})

    def rolled():
        fm = pods(cluster, "watcher-filemon")
        envs = [{e["name"]: e.get("value") for e in p["spec"]["containers"][0]["env"]} for p in fm]
        return (
            not pods(cluster, "watcher-procmon")
            and len(fm) == 1
            and ready(fm[0])
            and envs[0].get("WATCHER_DEBOUNCE_SECONDS") == "0.7"
            and fm[0]
        )

    pod = wait_for(rolled, 180, "procmon gone and filemon restarted with the new debounce")
    env = cluster.kubectl(
        "-n", NS, "exec", pod["metadata"]["name"], "--", "printenv", "WATCHER_DEBOUNCE_SECONDS"
    ).stdout.strip()
    assert env == "0.7"
    assert cluster.kubectl("-n", NS, "get", "daemonset", "watcher-procmon", check=False).returncode != 0

    # the backend pod now runs two server processes on its port (the tests after this one use it)
    def backend_env() -> dict:
        deployment = get(cluster, "-n", NS, "get", "deployment", "watcher-backend")
        return {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}

    wait_for(lambda: backend_env().get("WATCHER_WORKERS") == "2", 60, "the backend Deployment with two workers")
    cluster.kubectl("-n", NS, "rollout", "status", "deployment/watcher-backend", "--timeout=120s", timeout=130)
    logs = cluster.kubectl("-n", NS, "logs", "deployment/watcher-backend").stdout
    assert "Starting 2 workers on port 3000" in logs and logs.count("API endpoints ready") == 2, logs
    status, body = backend(cluster, "/api/v1/status")
    assert status == 200 and json.loads(body)["events_total"] > 0, body
    cluster.kubectl(
        "-n", NS, "wait", "--for=condition=Ready", "--timeout=120s", "watcherdeployment/watcher", timeout=130
    )


def patch_spec(cluster: Cluster, spec: dict) -> None:
    """What a user's `kubectl patch wd watcher --type=merge` does: merge ``spec`` into the resource's."""
    cluster.kubectl("-n", NS, "patch", "wd", "watcher", "--type=merge", "-p", json.dumps({"spec": spec}))


def filemon_metrics(cluster: Cluster, probe: str) -> dict[str, float]:
    """filemon's unlabelled gauges and counters, read from a pod through its Service."""
    out = run_pod(
        cluster,
        probe,
        "import urllib.request\n"
        "print(urllib.request.urlopen('http://watcher-filemon.watcher.svc.cluster.local:9090/metrics').read().decode())\n",
    )
    values = {}
    for line in out.splitlines():
        name, _, value = line.partition(" ")
        if name.startswith("filemon_") and "{" not in name and value:
            values[name] = float(value)
    return values


def test_node_scope_watches_only_the_student_pods_on_its_node(cluster, installed):
    """Issue 14: filemon in node scope (spec.filemon.scope) watches the folders of the student pods the
    kubelet runs on its node, found by a pod watch through the Role the operator grants, and nothing else of
    the shared volume."""
    patch_spec(cluster, {"filemon": {"scope": "node", "studentPods": {"labels": {"app": "jcode-student"}}}})

    def rolled():
        fm = pods(cluster, "watcher-filemon")
        envs = [{e["name"]: e.get("value") for e in p["spec"]["containers"][0]["env"]} for p in fm]
        return len(fm) == 1 and ready(fm[0]) and envs[0].get("WATCHER_FILEMON_SCOPE") == "node" and fm[0]

    wait_for(rolled, 180, "filemon restarted in node scope")
    role = get(cluster, "-n", NS, "get", "role", "watcher-filemon-pods")
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]

    # a classmate's folder on the same volume, with no pod on this node: never watched
    pv = get(cluster, "-n", NS, "get", "pvc", "jcode-vol-pvc")["spec"]["volumeName"]
    root = Path(get(cluster, "get", "pv", pv)["spec"]["hostPath"]["path"])
    (root / "os-1-202099999" / "hw1").mkdir(parents=True, exist_ok=True)

    def watching():
        m = filemon_metrics(cluster, f"probe-scope-{int(time.monotonic() * 1000) % 100000}")
        return m.get("filemon_student_pods") == 1 and m.get("filemon_workspaces_watched") == 1 and m

    wait_for(watching, 90, "filemon watching the one student pod's folder")
    (root / "os-1-202099999" / "hw1" / "other.c").write_text("int main(void) { return 0; }\n")
    node_c = "int node(void) { return 14; }\n"
    save(cluster, "node.c", node_c)

    def node_c_saved():
        status, body = backend(cluster, TIMELINE)
        events = json.loads(body) if status == 200 else {}
        events = events.get("events", events) if isinstance(events, dict) else events
        return [e for e in events if e["type"] == "file.save" and e["path"] == "node.c"]

    (event,) = wait_for(node_c_saved, 90, "the student's save in node scope")
    status, body = backend(cluster, f"/api/v1/snapshots/{event['sha256']}")
    assert status == 200 and body.decode() == node_c
    time.sleep(3)  # the classmate's file, written first, would be recorded by now
    status, body = backend(cluster, TIMELINE.replace("202012345", "202099999"))
    assert status == 200 and json.loads(body)["events"] == [], f"a folder with no pod on the node was watched: {body!r}"


def test_deleting_the_resource_removes_its_children_but_not_the_data(cluster, installed):
    cluster.kubectl("-n", NS, "delete", "pod", STUDENT_POD, "--wait=false", check=False)
    cluster.kubectl("-n", NS, "delete", "wd", "watcher", "--timeout=120s", timeout=130)
    for kind, name in (
        ("deployment", "watcher-backend"),
        ("daemonset", "watcher-filemon"),
        ("service", "watcher-backend-service"),
        ("service", "watcher-filemon"),
        ("secret", "watcher-harbor-registry-secret"),
        ("networkpolicy", "watcher-backend"),
    ):
        wait_for(
            lambda: cluster.kubectl("-n", NS, "get", kind, name, check=False).returncode != 0,
            60,
            f"{kind}/{name} removed with its WatcherDeployment",
        )
    wait_for(
        lambda: not pods(cluster, "watcher-backend") and not pods(cluster, "watcher-filemon"),
        90,
        "the children's pods gone",
    )
    claims = {c["metadata"]["name"]: c["status"]["phase"] for c in get(cluster, "-n", NS, "get", "pvc")["items"]}
    assert claims.get("watcher-backend-pvc") == "Bound" and claims.get("watcher-filemon-storage-pvc") == "Bound"


def test_the_cluster_goes_down_leaving_nothing_behind(cluster):
    cluster.down()
    assert not cluster.running()
    assert cluster.leftovers() == []
