"""Node-local watching: inotify watches and memory of one node's filemon, whole volume vs node scope.

A class of S students spread over N nodes (round robin): every student's folder is on the shared volume
(5 directories and 2 source files each, as in filemon_idle.py), every student has a pod bound to its node
on a real kube-apiserver (no kubelet: the pods are objects, which is all a watch sees). The same
`watcher filemon` process is started twice against the real backend, once per scope, for one node, and
measured after its startup settled: inotify watches in use and resident memory. In node scope, watches
follow the node's S/N students; in volume scope, the whole class.

    .venv/bin/python bench/filemon_nodelocal.py [--students 1000 --nodes 20]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from filemon_common import Filemon, machine, run_and_clean, write_section

from support.backend import run_backend  # noqa: E402
from support.kube import ADMIN_TOKEN, ControlPlane, missing_binaries  # noqa: E402

PREFIX = "filemon-nodelocal-"
NAMESPACE = "jcode"


def make_pods(cp: ControlPlane, students: list[str], nodes: int) -> None:
    cp.kubectl("create", "namespace", NAMESPACE)
    cp.kubectl("-n", NAMESPACE, "create", "serviceaccount", "default", check=False)
    items = [
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": f"jcode-{s}-5d4f8b7c9f-{i:05d}",
                "namespace": NAMESPACE,
                "labels": {"role": "student"},
            },
            "spec": {
                "nodeName": f"node-{i % nodes}",
                "automountServiceAccountToken": False,
                "containers": [{"name": "code", "image": "codercom/code-server:4"}],
            },
        }
        for i, s in enumerate(students)
    ]
    for start in range(0, len(items), 200):
        doc = {"apiVersion": "v1", "kind": "List", "items": items[start : start + 200]}
        cp.kubectl("apply", "-f", "-", input=json.dumps(doc), timeout=300)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="bench/filemon_nodelocal.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--students", type=int, default=1000)
    ap.add_argument("--nodes", type=int, default=20)
    ap.add_argument("--idle-seconds", type=float, default=5.0, help="memory sampled over this window")
    ap.add_argument("--no-write", action="store_true", help="do not update bench/results/filemon.md")
    args = ap.parse_args(argv)
    if missing_binaries():
        print(f"needs the Kubernetes binaries ({', '.join(missing_binaries())}): scripts/deps/kube.sh")
        return 2

    tmp = Path(tempfile.mkdtemp(prefix=PREFIX))
    ws = tmp / "ws"
    students = [f"os-1-{2024000000 + i}" for i in range(args.students)]
    for s in students:
        for hw in ("hw1", "hw2"):
            (ws / s / hw / "src").mkdir(parents=True)  # 5 directories per student
            (ws / s / hw / "main.c").write_text("int main(void){return 0;}\n")
    on_node = [s for i, s in enumerate(students) if i % args.nodes == 0]  # node-0's students
    print(f"nodelocal: {len(students)} students on {args.nodes} nodes ({len(on_node)} on node-0); {machine()}")
    rows = {}
    with ControlPlane(tmp / "kube", controller_manager=False) as cp, run_backend(tmp) as backend:
        make_pods(cp, students, args.nodes)
        sa = tmp / "serviceaccount"
        sa.mkdir()
        (sa / "token").write_text(ADMIN_TOKEN)
        shutil.copy(Path(cp.dir) / "pki" / "apiserver.crt", sa / "ca.crt")
        for scope, files in (("volume", 2 * len(students)), ("node", 2 * len(on_node))):
            extra = ["--scope", scope, "--pod-namespace", NAMESPACE, "--pod-selector", "role=student"]
            fm = Filemon(ws, tmp / f"state-{scope}", backend, tmp / f"filemon-{scope}.log", extra=extra)
            fm.argv[fm.argv.index("bench-node")] = "node-0"
            fm.env.update(
                KUBERNETES_SERVICE_HOST="127.0.0.1",
                KUBERNETES_SERVICE_PORT=str(cp.port),
                WATCHER_SERVICE_ACCOUNT_DIR=str(sa),
            )
            fm.start(timeout=300)
            try:
                startup = fm.settle(files)
                idle = fm.idle(args.idle_seconds, every=0.5)
                rows[scope] = {
                    "watches": fm.metric("filemon_watches "),
                    "workspaces": fm.metric("filemon_workspaces_watched"),
                    "rss": idle.rss,
                    "peak": idle.peak,
                    "startup": startup,
                    "files": files,
                }
            finally:
                fm.stop()
            print(scope, rows[scope])
    v, n = rows["volume"], rows["node"]
    body = "\n".join(
        [
            f"A class of {len(students):,} students on {args.nodes} nodes, {len(on_node)} of them on the measured "
            f"node: {len(students) * 5:,} student directories on the volume, one pod per student on a real "
            "kube-apiserver, `watcher filemon` with the real backend, once per scope, measured after its startup "
            "settled.",
            f"Machine: {machine()}.",
            f"Command: `.venv/bin/python bench/filemon_nodelocal.py --students {args.students} --nodes {args.nodes}`",
            "",
            "| figure | whole volume (`--scope volume`) | node-local (`--scope node`) |",
            "|---|---|---|",
            f"| student folders watched | {v['workspaces']:,.0f} | **{n['workspaces']:,.0f}** |",
            f"| inotify watches in use | {v['watches']:,.0f} | **{n['watches']:,.0f}** |",
            f"| resident memory (RSS) | {v['rss']:.1f} MB (peak {v['peak']:.1f}) | **{n['rss']:.1f} MB** "
            f"(peak {n['peak']:.1f}) |",
            f"| files recorded at startup (time to settle after the startup scan) | {v['files']:,} "
            f"({v['startup']:.1f} s) | {n['files']:,} ({n['startup']:.1f} s) |",
            "",
            f"Node scope watches the root plus 5 directories per student of the node: {1 + 5 * len(on_node):,} "
            f"expected; the whole volume {1 + 5 * len(students):,}. Watches per node follow the node's students "
            "(class / nodes), not the class. RSS is filemon's user space; the kernel's memory for the watches "
            "themselves (about 1 KB each on 64-bit) is not in it and shrinks with them.",
        ]
    )
    print(body)
    if not args.no_write:
        write_section("nodelocal", "Node-local watching (bench/filemon_nodelocal.py)", body)
    return 0


if __name__ == "__main__":
    sys.exit(run_and_clean(main, PREFIX))
