"""A NetworkPolicy simulator: which pods may open a TCP connection to which pod and port, by the
Kubernetes semantics (networking.k8s.io/v1), for the one-node test cluster whose CNI enforces none.

Usage::

    from support.netpol import Pod, allowed

    backend = Pod("watcher", {"app": "watcher-backend"}, ports={"http": 3000})
    student = Pod("watcher", {"app": "jcode-student"})
    allowed(policies, student, backend, 3000)          # False: the policy admits only its peers

What it implements (ingress only; the operator renders no egress rules):

* a pod is isolated for ingress once any policy of ITS namespace selects it (``podSelector``) and lists
  ``Ingress`` in ``policyTypes`` (or has no ``policyTypes`` and any ``ingress``: the API server's
  default); an isolated pod admits a connection that at least one rule of one such policy allows,
  a pod no policy selects admits everything;
* a rule with no ``from`` admits every source, with no ``ports`` every port; ``ports`` entries match
  by protocol (TCP by default), number, a named container port of the destination, and ``endPort``;
* a peer with only ``podSelector`` means pods of the policy's namespace; with only
  ``namespaceSelector`` every pod of the matching namespaces; with both, pods matching both; an
  ``ipBlock`` matches the source pod's IP (``cidr`` minus ``except``);
* label selectors: ``matchLabels`` and ``matchExpressions`` (In, NotIn, Exists, DoesNotExist); an empty
  selector matches everything. Namespaces carry ``kubernetes.io/metadata.name`` (set by the API server).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Pod:
    namespace: str
    labels: Mapping[str, str]
    namespace_labels: Mapping[str, str] = field(default_factory=dict)
    ip: str | None = None
    ports: Mapping[str, int] = field(default_factory=dict)  # named container ports

    def ns_labels(self) -> dict[str, str]:
        return {**self.namespace_labels, "kubernetes.io/metadata.name": self.namespace}


def selects(selector: Mapping | None, labels: Mapping[str, str]) -> bool:
    """A LabelSelector against labels; None (absent) is the caller's business, {} matches all."""
    selector = selector or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
        if op not in ("In", "NotIn", "Exists", "DoesNotExist"):
            raise ValueError(f"unknown selector operator {op!r}")
    return True


def _policy_types(policy: Mapping) -> list[str]:
    spec = policy["spec"]
    if "policyTypes" in spec:
        return list(spec["policyTypes"])
    return ["Ingress", *(["Egress"] if spec.get("egress") else [])]


def _peer_matches(peer: Mapping, policy_ns: str, source: Pod) -> bool:
    if "ipBlock" in peer:
        if source.ip is None:
            return False
        address = ipaddress.ip_address(source.ip)
        block = peer["ipBlock"]
        if address not in ipaddress.ip_network(block["cidr"], strict=False):
            return False
        return not any(address in ipaddress.ip_network(c, strict=False) for c in block.get("except") or [])
    if "namespaceSelector" in peer:
        if not selects(peer["namespaceSelector"], source.ns_labels()):
            return False
    elif source.namespace != policy_ns:
        return False
    return "podSelector" not in peer or selects(peer["podSelector"], source.labels)


def _port_matches(entry: Mapping, destination: Pod, port: int, protocol: str) -> bool:
    if entry.get("protocol", "TCP") != protocol:
        return False
    if "port" not in entry:
        return True
    want = entry["port"]
    if isinstance(want, str):
        return destination.ports.get(want) == port
    return want <= port <= entry.get("endPort", want)


def ingress_policies(policies: Iterable[Mapping], destination: Pod) -> list[Mapping]:
    """The policies that isolate ``destination`` for ingress."""
    return [
        p
        for p in policies
        if p.get("kind") == "NetworkPolicy"
        and p["metadata"].get("namespace", "default") == destination.namespace
        and selects(p["spec"].get("podSelector"), destination.labels)
        and "Ingress" in _policy_types(p)
    ]


def allowed(policies: Iterable[Mapping], source: Pod, destination: Pod, port: int, protocol: str = "TCP") -> bool:
    """May ``source`` connect to ``destination`` on ``port``?"""
    isolating = ingress_policies(policies, destination)
    if not isolating:
        return True
    for policy in isolating:
        ns = policy["metadata"].get("namespace", "default")
        for rule in policy["spec"].get("ingress") or []:
            ports = rule.get("ports")
            if ports and not any(_port_matches(e, destination, port, protocol) for e in ports):
                continue
            peers = rule.get("from")
            if not peers or any(_peer_matches(peer, ns, source) for peer in peers):
                return True
    return False
