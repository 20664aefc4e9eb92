"""Node-local watching against a real kube-apiserver: Pod objects bound to node names (no kubelet is
needed for a watch), filemon's pod watch with its field and label selectors, 410 Gone and the relist,
API errors, and filemon in node mode with real inotify and the real backend: it watches and records the
folders of its node's student pods only."""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path

import pytest
from integration.filemon.harness import by_path, metric, running_filemon, sha, timeline, wait_until
from prometheus_client import CollectorRegistry

from support.backend import run_backend
from support.kube import ADMIN_TOKEN, RESTRICTED_TOKEN, ControlPlane
from watcher_agents.filemon import pods
from watcher_agents.filemon.metrics import FilemonMetrics

NODE = "test-node"  # the harness's --node-name
STUDENT_LABELS = {"app.kubernetes.io/part-of": "jcode", "role": "student"}
SELECTOR = "app.kubernetes.io/part-of=jcode,role=student"


@pytest.fixture(scope="module")
def cp(kube_binaries):
    with ControlPlane(controller_manager=False) as plane:
        yield plane


class CompactingControlPlane(ControlPlane):
    """Pods watched straight from etcd (no watch cache), which compacts its history every second: a
    resourceVersion expires as it would after a long disconnection in a busy cluster."""

    def _apiserver_flags(self) -> list[str]:
        return ["--watch-cache-sizes=pods#0", "--etcd-compaction-interval=1s"]


@pytest.fixture(scope="module")
def compacting_cp(kube_binaries):
    with CompactingControlPlane(controller_manager=False) as plane:
        yield plane


def new_namespace(cp) -> str:
    name = f"s-{uuid.uuid4().hex[:8]}"
    cp.kubectl("create", "namespace", name)
    # the ServiceAccount admission plugin wants the namespace's default account (no controller makes it here)
    cp.kubectl("-n", name, "create", "serviceaccount", "default", check=False)
    return name


@pytest.fixture
def ns(cp):
    name = new_namespace(cp)
    yield name
    cp.kubectl("delete", "namespace", name, "--wait=false", check=False)


def access(cp, token=ADMIN_TOKEN) -> pods.KubeAccess:
    return pods.KubeAccess(cp.url, token=token, verify=str(Path(cp.dir) / "pki" / "apiserver.crt"))


def make_pod(cp, ns, name, node, labels=STUDENT_LABELS, annotations=None):
    meta = {"name": name, "namespace": ns, "labels": dict(labels)}
    if annotations:
        meta["annotations"] = annotations
    doc = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": {
            "nodeName": node,  # bound at creation: what the scheduler would have done
            "automountServiceAccountToken": False,
            "containers": [{"name": "code", "image": "codercom/code-server:4"}],
        },
    }
    cp.kubectl("apply", "-f", "-", input=json.dumps(doc))


def delete_pod(cp, ns, name):
    # no kubelet confirms the termination: delete at once, as a force delete does
    cp.kubectl("-n", ns, "delete", "pod", name, "--grace-period=0", "--force", "--wait=false")


class Recorder:
    def __init__(self):
        self.changes: list[tuple[bool, str]] = []
        self.lock = threading.Lock()

    def __call__(self, change: pods.Change) -> None:
        with self.lock:
            self.changes.append((change.added, change.workspace))

    def watched(self) -> set[str]:
        out: set[str] = set()
        with self.lock:
            for added, ws in self.changes:
                (out.add if added else out.discard)(ws)
        return out


def new_watch(cp, ns, rec, token=ADMIN_TOKEN, **kw) -> tuple[pods.PodWatch, CollectorRegistry]:
    registry = CollectorRegistry()
    metrics = FilemonMetrics(registry)
    watch = pods.PodWatch(
        access(cp, token),
        NODE,
        pods.PodTable(pods.Mapping()),
        rec,
        namespace=ns,
        selector=SELECTOR,
        metrics=metrics,
        **kw,
    )
    return watch, registry


def test_the_watch_follows_the_student_pods_of_its_node_only(cp, ns):
    make_pod(cp, ns, "jcode-os-1-1001-5d4f8b7c9f-aaaaa", NODE)
    make_pod(cp, ns, "jcode-os-1-1002", "other-node")  # another node's student
    make_pod(cp, ns, "jcode-os-1-1003", NODE, labels={"app": "grader"})  # not a student pod
    rec = Recorder()
    watch, metrics = new_watch(cp, ns, rec, watch_timeout=5)
    watch.start()
    try:
        assert watch.synced.wait(30)
        assert rec.watched() == {"os-1-1001"}
        make_pod(cp, ns, "jcode-data-structure-2-1004", NODE)
        make_pod(cp, ns, "lab-helper", NODE, annotations={pods.DEFAULT_ANNOTATION: "os-1-1005"})
        make_pod(cp, ns, "jupyter", NODE)  # a student pod with no folder: counted, not watched
        wait_until(lambda: rec.watched() == {"os-1-1001", "data-structure-2-1004", "os-1-1005"}, 30)
        wait_until(lambda: metric_value(metrics, "filemon_unmapped_pods") == 1, 30)
        # a rolling update of one student's Deployment: both pods map to the folder, it stays watched
        make_pod(cp, ns, "jcode-os-1-1001-7c9f5d4f8b-bbbbb", NODE)
        delete_pod(cp, ns, "jcode-os-1-1001-5d4f8b7c9f-aaaaa")
        delete_pod(cp, ns, "lab-helper")
        wait_until(lambda: rec.watched() == {"os-1-1001", "data-structure-2-1004"}, 30)
        assert (False, "os-1-1001") not in rec.changes
        assert metric_value(metrics, "filemon_student_pods") == 2
        # the server ends each watch after watch_timeout: the watch goes on from the last version seen
        time.sleep(6)
        delete_pod(cp, ns, "jcode-data-structure-2-1004")
        wait_until(lambda: rec.watched() == {"os-1-1001"}, 30)
        assert metric_value(metrics, "filemon_pod_relists_total") == 0
    finally:
        watch.stop()


def metric_value(registry: CollectorRegistry, name: str, labels: dict | None = None) -> float:
    return registry.get_sample_value(name, labels or {}) or 0.0


def test_an_expired_resource_version_relists_and_applies_what_changed_meanwhile(compacting_cp):
    cp = compacting_cp
    ns = new_namespace(cp)
    make_pod(cp, ns, "jcode-os-1-2001", NODE)
    make_pod(cp, ns, "jcode-os-1-2002", NODE)
    rec = Recorder()
    watch, metrics = new_watch(cp, ns, rec, watch_timeout=3)
    try:
        watch_rv = watch.sync()
        assert rec.watched() == {"os-1-2001", "os-1-2002"}
        # while nobody watched: one pod went, another came
        delete_pod(cp, ns, "jcode-os-1-2001")
        make_pod(cp, ns, "jcode-os-1-2003", NODE)
        # the list's version is compacted away within seconds: following from it is 410 Gone
        old = watch_rv

        def expired() -> bool:
            try:
                watch.follow(old)
            except pods.Gone:
                return True
            return False

        wait_until(expired, 30, message="410 Gone")
        rv = watch.cycle(old)
        assert int(rv) > int(old)
        assert rec.watched() == {"os-1-2002", "os-1-2003"}
        assert sorted(rec.changes[-2:]) == [(False, "os-1-2001"), (True, "os-1-2003")]
        assert metric_value(metrics, "filemon_pod_relists_total") == 1
    finally:
        watch.stop()


def test_api_errors_are_counted_and_retried_and_the_table_stays(cp, ns):
    rec = Recorder()
    # a user with no rights: 403 on every list, counted by reason, retried with a backoff, never a crash
    watch, metrics = new_watch(cp, ns, rec, token=RESTRICTED_TOKEN, backoff_cap=0.5)
    watch.start()
    try:
        wait_until(lambda: metric_value(metrics, "filemon_pod_watch_errors_total", {"reason": "forbidden"}) >= 2, 30)
        assert watch.alive() and not watch.synced.is_set() and rec.changes == []
    finally:
        watch.stop()
    # an API server that does not answer: connection errors, same handling
    watch, metrics = new_watch(cp, ns, rec, backoff_cap=0.5)
    watch.access = pods.KubeAccess("https://127.0.0.1:9", token="x", verify=False)
    watch.start()
    try:
        wait_until(lambda: metric_value(metrics, "filemon_pod_watch_errors_total", {"reason": "ConnectError"}) >= 2, 30)
        assert watch.alive()
    finally:
        watch.stop()


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    with run_backend(tmp_path_factory.mktemp("backend")) as b:
        yield b


def test_filemon_in_node_mode_records_only_its_nodes_students(cp, ns, backend, tmp_path):
    root = tmp_path / "workspace"
    here, elsewhere = ("os", "3", "3001"), ("os", "3", "3002")
    for student in (here, elsewhere):
        (root / "-".join(student) / "hw1").mkdir(parents=True)
        (root / "-".join(student) / "hw1" / "old.c").write_text("int old;\n")
    make_pod(cp, ns, "jcode-os-3-3001-5d4f8b7c9f-aaaaa", NODE)
    make_pod(cp, ns, "jcode-os-3-3002", "other-node")
    extra = ["--scope", "node", "--pod-namespace", ns, "--pod-selector", SELECTOR]
    with running_filemon(root, tmp_path / "state", backend, extra=extra, kube=access(cp)) as agent:
        wait_until(lambda: metric(agent, "filemon_workspaces_watched") == 1, 30, message="one workspace")
        # the folder's existing files were scanned when its pod appeared
        wait_until(lambda: by_path(timeline(backend, here), "file.save").get("old.c"), 30, message="old.c")
        watches_one = metric(agent, "filemon_watches")
        assert watches_one == 3  # the root, os-3-3001, its hw1
        data = b"int main(void) { return 0; }\n"
        (root / "-".join(here) / "hw1" / "main.c").write_bytes(data)
        (root / "-".join(elsewhere) / "hw1" / "main.c").write_bytes(data)
        wait_until(
            lambda: [
                e for e in by_path(timeline(backend, here), "file.save").get("main.c", []) if e["sha256"] == sha(data)
            ],
            30,
            message="the node's student's save",
        )
        # the other node's student: never read here (that node's filemon records it)
        assert timeline(backend, elsewhere) == []

        # the student's pod moves here: its folder is watched and scanned
        make_pod(cp, ns, "jcode-os-3-3002-7c9f5d4f8b-bbbbb", NODE)
        wait_until(lambda: metric(agent, "filemon_workspaces_watched") == 2, 30, message="second workspace")
        wait_until(lambda: by_path(timeline(backend, elsewhere), "file.save").get("main.c"), 30, message="scan")
        assert metric(agent, "filemon_watches") == 5

        # the first pod goes: its watches go, and later saves there are not this node's
        delete_pod(cp, ns, "jcode-os-3-3001-5d4f8b7c9f-aaaaa")
        wait_until(lambda: metric(agent, "filemon_workspaces_watched") == 1, 30, message="dropped")
        assert metric(agent, "filemon_watches") == 3
        (root / "-".join(here) / "hw1" / "late.c").write_text("int late;\n")
        later = b"int x;\n"
        (root / "-".join(elsewhere) / "hw1" / "x.c").write_bytes(later)
        wait_until(lambda: by_path(timeline(backend, elsewhere), "file.save").get("x.c"), 30, message="x.c")
        assert "late.c" not in by_path(timeline(backend, here))
        # dropping a folder is not deleting its files
        assert by_path(timeline(backend, here), "file.delete") == {}
        assert metric(agent, "filemon_student_pods") == 1

        # a pod whose folder does not exist yet: the folder is watched as soon as it appears
        newcomer = ("os", "3", "3003")
        make_pod(cp, ns, "jcode-os-3-3003", NODE)
        wait_until(lambda: metric(agent, "filemon_workspaces_watched") == 2, 30, message="newcomer's pod")
        (root / "-".join(newcomer) / "hw1").mkdir(parents=True)
        (root / "-".join(newcomer) / "hw1" / "first.c").write_text("int first;\n")
        wait_until(lambda: by_path(timeline(backend, newcomer), "file.save").get("first.c"), 30, message="first.c")
