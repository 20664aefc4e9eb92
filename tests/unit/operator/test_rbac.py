"""The operator's RBAC, in every chart variant and in the plain bundle deploy/watcher-operator.yaml as
it is applied (test_chart.py checks the bundle is the chart's rendering and lists the resources of the
default one): no wildcard anywhere, and Secrets only in the namespaces the operator manages, never
cluster-wide unless it is told to watch every namespace."""

from __future__ import annotations

import pytest
import yaml
from unit.operator.test_chart import BUNDLE, VARIANTS, render

ROLE_KINDS = ("Role", "ClusterRole")


def wildcards(docs: list[dict]) -> list[str]:
    found = []
    for d in docs:
        if d["kind"] not in ROLE_KINDS:
            continue
        for rule in d.get("rules") or []:
            for key in ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"):
                if any("*" in value for value in rule.get(key) or []):
                    found.append(f"{d['kind']} {d['metadata']['name']}: {key} {rule[key]}")
        if d.get("aggregationRule"):
            found.append(f"{d['kind']} {d['metadata']['name']}: aggregationRule (grants what others add)")
    return found


def grants_secrets(role: dict) -> bool:
    return any(
        "" in (r.get("apiGroups") or []) and ("secrets" in r.get("resources", []) or "*" in r.get("resources", []))
        for r in role.get("rules") or []
    )


def secret_bindings(docs: list[dict]) -> dict[str, set]:
    """Where Secrets are granted: 'cluster' for a ClusterRoleBinding, else the RoleBindings' namespaces."""
    roles = {(d["kind"], d["metadata"]["name"]): d for d in docs if d["kind"] in ROLE_KINDS}
    out: dict[str, set] = {}
    for b in docs:
        if b["kind"] not in ("RoleBinding", "ClusterRoleBinding"):
            continue
        role = roles.get((b["roleRef"]["kind"], b["roleRef"]["name"]))
        assert role is not None, f"{b['kind']} {b['metadata']['name']} binds a role the chart does not ship"
        if grants_secrets(role):
            where = "cluster" if b["kind"] == "ClusterRoleBinding" else b["metadata"]["namespace"]
            out.setdefault(role["metadata"]["name"], set()).add(where)
    return out


def bundle() -> list[dict]:
    return [d for d in yaml.safe_load_all(BUNDLE.read_text()) if d]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_no_role_of_the_chart_has_a_wildcard(variant):
    assert wildcards(render(VARIANTS[variant])) == []


def test_no_role_of_the_bundle_has_a_wildcard():
    docs = bundle()
    assert any(d["kind"] in ROLE_KINDS for d in docs)
    assert wildcards(docs) == []


def test_secrets_are_granted_only_in_the_watched_namespaces():
    assert secret_bindings(render()) == {"watcher-operator-manager": {"watcher"}}
    assert secret_bindings(render(VARIANTS["two-namespaces-standalone"])) == {
        "watcher-operator-manager": {"course-a", "course-b"}
    }
    # watching every namespace means managing every namespace's Secrets: said so by the value, not by default
    assert secret_bindings(render(VARIANTS["all-namespaces"])) == {"watcher-operator-manager": {"cluster"}}


def test_the_bundle_grants_secrets_in_its_namespace_only():
    assert secret_bindings(bundle()) == {"watcher-operator-manager": {"watcher"}}
