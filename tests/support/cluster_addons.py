"""The two services a real cluster gets from add-ons, for the one-node test cluster (support.cluster):

- **cluster DNS**: `<service>.<namespace>.svc.cluster.local` -> the Service's ClusterIP (A records), as
  CoreDNS answers it; every other name is NXDOMAIN: nothing is forwarded off this machine.
- **a volume provisioner standing in for Longhorn**: a PVC of a StorageClass whose provisioner is
  `driver.longhorn.io` gets a hostPath PV of the requested size and access modes (RWX works on one node);
  a released PV is deleted with its directory, as Longhorn's reclaim policy Delete does.

Both follow the API by polling once a second (a throw-away cluster has a few dozen objects).
    python tests/support/cluster_addons.py --kubeconfig K --dns 10.203.0.1:53 --volumes DIR
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import ssl
import struct
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

PROVISIONERS = {"driver.longhorn.io"}
DOMAIN = "svc.cluster.local"
A, AAAA, IN = 1, 28, 1


class Api:
    def __init__(self, kubeconfig: str):
        config = json.loads(Path(kubeconfig).read_text())
        self.server = config["clusters"][0]["cluster"]["server"]
        self.token = config["users"][0]["user"]["token"]
        self.ctx = ssl.create_default_context(cafile=config["clusters"][0]["cluster"]["certificate-authority"])
        self.ctx.check_hostname = False  # the self-signed serving certificate names the bridge address

    def call(self, method: str, path: str, body: dict | None = None) -> dict:
        req = urllib.request.Request(
            self.server + path,
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, context=self.ctx, timeout=10) as resp:
            return json.loads(resp.read() or b"{}")


# --- DNS ------------------------------------------------------------------------------------------------
def parse_question(packet: bytes) -> tuple[int, str, int, int, int]:
    """(id, name, qtype, qclass, offset after the question) of a standard query."""
    qid = struct.unpack("!H", packet[:2])[0]
    labels, i = [], 12
    while packet[i]:
        n = packet[i]
        labels.append(packet[i + 1 : i + 1 + n].decode("ascii", "replace"))
        i += 1 + n
    qtype, qclass = struct.unpack("!HH", packet[i + 1 : i + 5])
    return qid, ".".join(labels).lower(), qtype, qclass, i + 5


def answer(packet: bytes, records: dict[str, str]) -> bytes:
    qid, name, qtype, qclass, end = parse_question(packet)
    known = name in records
    # flags: response, recursion desired copied, recursion available; rcode NXDOMAIN for unknown names
    flags = 0x8180 | (packet[2] & 0x01) << 8 | (0 if known else 3)
    question = packet[12:end]
    if known and qtype == A and qclass == IN:
        rdata = socket.inet_aton(records[name])
        rr = b"\xc0\x0c" + struct.pack("!HHIH", A, IN, 5, len(rdata)) + rdata
        return struct.pack("!HHHHHH", qid, flags, 1, 1, 0, 0) + question + rr
    # known name, other type (AAAA): NOERROR with no answer, so resolvers use the A record
    return struct.pack("!HHHHHH", qid, flags, 1, 0, 0, 0) + question


def serve_dns(address: str, table: list[dict[str, str]]) -> None:
    host, port = address.rsplit(":", 1)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, int(port)))
    while True:
        packet, peer = sock.recvfrom(4096)
        try:
            sock.sendto(answer(packet, table[0]), peer)
        except (IndexError, struct.error, UnicodeError):
            continue  # not a query we understand: a resolver retries or gives up


def service_records(api: Api) -> dict[str, str]:
    records = {}
    for svc in api.call("GET", "/api/v1/services")["items"]:
        ip = svc["spec"].get("clusterIP")
        if ip and ip != "None":
            meta = svc["metadata"]
            records[f"{meta['name']}.{meta['namespace']}.{DOMAIN}"] = ip
    return records


# --- volumes --------------------------------------------------------------------------------------------
def provision(api: Api, volumes: Path) -> None:
    classes = {
        sc["metadata"]["name"]: sc
        for sc in api.call("GET", "/apis/storage.k8s.io/v1/storageclasses")["items"]
        if sc.get("provisioner") in PROVISIONERS
    }
    for pvc in api.call("GET", "/api/v1/persistentvolumeclaims")["items"]:
        spec, meta = pvc["spec"], pvc["metadata"]
        sc = classes.get(spec.get("storageClassName") or "")
        if sc is None or spec.get("volumeName") or pvc.get("status", {}).get("phase") == "Bound":
            continue
        path = volumes / f"{meta['namespace']}-{meta['name']}-{meta['uid'][:8]}"
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(0o777)  # Longhorn's volumes take the pod's fsGroup; a hostPath cannot, so anyone may write
        pv = {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {
                "name": f"pvc-{meta['uid']}",
                "annotations": {"pv.kubernetes.io/provisioned-by": sc["provisioner"]},
            },
            "spec": {
                "capacity": {"storage": spec["resources"]["requests"]["storage"]},
                "accessModes": spec["accessModes"],
                "storageClassName": sc["metadata"]["name"],
                "persistentVolumeReclaimPolicy": sc.get("reclaimPolicy", "Delete"),
                "volumeMode": spec.get("volumeMode", "Filesystem"),
                "hostPath": {"path": str(path), "type": "Directory"},
                "claimRef": {
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "namespace": meta["namespace"],
                    "name": meta["name"],
                    "uid": meta["uid"],
                },
            },
        }
        try:
            api.call("POST", "/api/v1/persistentvolumes", pv)
            print(f"provisioned {pv['metadata']['name']} for {meta['namespace']}/{meta['name']}", flush=True)
        except urllib.error.HTTPError as exc:
            if exc.code != 409:  # already made in an earlier round
                raise
    for pv in api.call("GET", "/api/v1/persistentvolumes")["items"]:
        meta, spec = pv["metadata"], pv["spec"]
        if (
            meta.get("annotations", {}).get("pv.kubernetes.io/provisioned-by") in PROVISIONERS
            and pv.get("status", {}).get("phase") == "Released"
            and spec.get("persistentVolumeReclaimPolicy") == "Delete"
        ):
            api.call("DELETE", f"/api/v1/persistentvolumes/{meta['name']}")
            shutil.rmtree(spec["hostPath"]["path"], ignore_errors=True)
            print(f"deleted {meta['name']}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--dns", required=True, help="address:port to answer DNS on")
    parser.add_argument("--volumes", required=True, type=Path, help="directory for the hostPath volumes")
    args = parser.parse_args(argv)
    api = Api(args.kubeconfig)
    table: list[dict[str, str]] = [{}]  # replaced whole, so a lookup sees the old names or the new ones
    threading.Thread(target=serve_dns, args=(args.dns, table), daemon=True).start()
    failures = 0
    while True:
        try:
            table[0] = service_records(api)
            provision(api, args.volumes)
            failures = 0
        except (OSError, urllib.error.URLError, KeyError) as exc:
            failures += 1
            if failures in (1, 10, 100):  # the API server restarting or stopping: say so, keep trying
                print(f"cluster-addons: API call failed ({failures}x): {exc}", file=sys.stderr, flush=True)
        time.sleep(1)


if __name__ == "__main__":
    sys.exit(main())
