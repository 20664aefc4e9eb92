"""The CRD: generated files in sync, accepted by the Kubernetes schema, examples valid, bad specs refused."""

from __future__ import annotations

import copy
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from watcher_operator import crd, crd_docs
from watcher_operator.defaults import spec_with_defaults

ROOT = Path(__file__).resolve().parents[3]
CRD_FILE = ROOT / "crds" / "watcherdeployments.watcher.jcode.io.yaml"
CHART_CRD_FILE = ROOT / "charts" / "watcher-operator" / "crds" / "watcherdeployments.watcher.jcode.io.yaml"
INVALID = yaml.safe_load((Path(__file__).parent / "golden" / "invalid-specs.yaml").read_text())


def _to_jsonschema(schema):
    """OpenAPI v3 subset -> JSON Schema: drop the x-kubernetes-* markers and int64 formats."""
    if isinstance(schema, dict):
        return {k: _to_jsonschema(v) for k, v in schema.items() if not k.startswith("x-kubernetes")}
    if isinstance(schema, list):
        return [_to_jsonschema(x) for x in schema]
    return schema


OPENAPI = crd.build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
VALIDATOR = jsonschema.Draft7Validator(_to_jsonschema(OPENAPI))


def merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


def example(name: str) -> dict:
    return yaml.safe_load((ROOT / "examples" / name).read_text())


def test_crd_files_are_generated_from_crd_py():
    assert yaml.safe_load(CRD_FILE.read_text()) == crd.build_crd()
    assert CRD_FILE.read_text() == crd.crd_yaml(), "run: python -m watcher_operator.crd > " + str(CRD_FILE)


def test_chart_ships_the_same_crd():
    assert CHART_CRD_FILE.read_text() == CRD_FILE.read_text()


@pytest.mark.parametrize("version", ["1.25", kubernetes_validate.latest_version()])
def test_crd_passes_the_kubernetes_schema(version):
    kubernetes_validate.validate(crd.build_crd(), version, strict=True)


def test_crd_is_what_kubernetes_1_20_accepts():
    c = crd.build_crd()
    assert c["apiVersion"] == "apiextensions.k8s.io/v1"
    text = CRD_FILE.read_text()
    assert "x-kubernetes-validations" not in text  # CEL needs 1.25+
    version = c["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    assert [col["name"] for col in version["additionalPrinterColumns"] if not col.get("priority")] == [
        "Ready",
        "Backend",
        "Filemon",
        "Procmon",
        "Age",
    ]
    assert c["spec"]["names"]["shortNames"] == ["wd"] and c["spec"]["scope"] == "Namespaced"
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    assert status["kopf"]["x-kubernetes-preserve-unknown-fields"] is True


def _structural_problems(schema, path="$"):
    """The structural-schema rules that bite in practice: every node has a type (or int-or-string /
    preserve-unknown-fields), and every default validates against its own node."""
    problems = []
    if not (
        schema.get("type")
        or schema.get("x-kubernetes-int-or-string")
        or schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        problems.append(f"{path}: no type")
    if "default" in schema:
        errs = list(jsonschema.Draft7Validator(_to_jsonschema(schema)).iter_errors(schema["default"]))
        problems += [f"{path}: default invalid: {e.message}" for e in errs]
    for k, sub in (schema.get("properties") or {}).items():
        problems += _structural_problems(sub, f"{path}.{k}")
    if isinstance(schema.get("items"), dict):
        problems += _structural_problems(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        problems += _structural_problems(schema["additionalProperties"], f"{path}{{}}")
    return problems


def test_schema_is_structural_and_defaults_are_valid():
    assert _structural_problems(OPENAPI) == []


@pytest.mark.parametrize("name", ["watcherdeployment.yaml", "watcherdeployment-minimal.yaml"])
def test_examples_are_valid(name):
    doc = example(name)
    errors = sorted(e.message for e in VALIDATOR.iter_errors(doc))
    assert errors == []
    defaulted = dict(doc, spec=spec_with_defaults(doc["spec"]))
    assert list(VALIDATOR.iter_errors(defaulted)) == []


def test_defaults_are_the_deployment_guide():
    s = spec_with_defaults(example("watcherdeployment-minimal.yaml")["spec"])
    assert s["image"]["registry"] == "harbor.jbnu.ac.kr/jdevops"
    assert s["storageClassName"] == "longhorn"
    assert s["workspace"]["claimName"] == "jcode-vol-pvc"
    assert s["backend"]["port"] == 3000 and s["backend"]["replicas"] == 1
    assert s["backend"]["storage"] == {"size": "10Gi", "accessMode": "ReadWriteOnce"}
    assert s["filemon"]["storage"] == {"size": "30Gi", "accessMode": "ReadWriteMany"}
    assert s["filemon"]["metricsPort"] == 9090 and s["procmon"]["metricsPort"] == 9090
    assert s["filemon"]["enabled"] and s["procmon"]["enabled"]
    assert s["deleteClaimsOnDelete"] is False
    # kube-prometheus-stack's Prometheus may scrape the backend through the default NetworkPolicy
    assert s["monitoring"]["prometheusPeer"] == {
        "namespaceSelector": {"kubernetes.io/metadata.name": "monitoring"},
        "podSelector": {"app.kubernetes.io/name": "prometheus"},
    }
    # privacy: nothing is purged unless asked; erased contents are collected every 10 min after a day's grace
    assert "retentionDays" not in s["backend"]
    assert (s["filemon"]["snapshotGcIntervalSeconds"], s["filemon"]["snapshotGcGraceSeconds"]) == (600, 86400)


@pytest.mark.parametrize("case", INVALID, ids=[c["why"] for c in INVALID])
def test_invalid_specs_are_rejected(case):
    doc = example("watcherdeployment-minimal.yaml")
    doc["spec"] = merge(doc["spec"], case["spec"])
    assert list(VALIDATOR.iter_errors(doc)), case["why"]


def test_resource_name_is_bounded_so_children_names_fit():
    doc = example("watcherdeployment-minimal.yaml")
    doc["metadata"]["name"] = "a" * 47
    assert list(VALIDATOR.iter_errors(doc)) == []
    assert len(doc["metadata"]["name"] + "-backend-service") == 63
    doc["metadata"]["name"] = "a" * 48
    assert list(VALIDATOR.iter_errors(doc))


def _field_paths(schema: dict, prefix: str = "spec") -> list[str]:
    out = []
    for key, sub in (schema.get("properties") or {}).items():
        path = f"{prefix}.{key}"
        out.append(path)
        if key != "resources" and sub.get("type") == "object" and "properties" in sub:
            out += _field_paths(sub, path)
    return out


def test_every_spec_field_is_documented():
    doc = (ROOT / "docs" / "operator.md").read_text()
    missing = [p for p in _field_paths(crd.spec_schema()) if f"`{p}`" not in doc]
    assert missing == []


def test_the_field_table_of_docs_operator_md_is_the_schemas():
    doc = (ROOT / "docs" / "operator.md").read_text()
    assert crd_docs.render(doc) == doc, "docs/operator.md's field table is stale: run make generate"


def test_the_field_table_says_each_fields_type_default_bounds_and_values(tmp_path):
    table = crd_docs.table().splitlines()
    row = {line.split(" | ")[0].removeprefix("| "): line for line in table[2:]}
    assert row["`spec.backend.workers`"].startswith("| `spec.backend.workers` | integer |  | Server processes")
    assert row["`spec.backend.workers`"].endswith("(1..64) |")
    assert row["`spec.image.tag` (required)"].split(" | ")[1:3] == ["string", ""]
    assert "(one of `Always`, `IfNotPresent`, `Never`)" in row["`spec.image.pullPolicy`"]
    assert row["`spec.monitoring.labels`"].split(" | ")[1:3] == ["map[string]string", '`{"release": "prometheus"}`']
    assert row["`spec.networkPolicy.allowFrom[].podSelector`"].split(" | ")[1] == "map[string]string"
    assert "`spec.backend.resources.limits`" not in row  # Kubernetes' own types are one row
    # a new field shows up, and a stale page is refused
    schema = crd.spec_schema()
    schema["properties"]["backend"]["properties"]["newField"] = {
        "type": "boolean",
        "default": True,
        "description": "X.",
    }
    assert "| `spec.backend.newField` | boolean | `true` | X. |" in crd_docs.table(schema)
    stale = tmp_path / "operator.md"
    stale.write_text((ROOT / "docs" / "operator.md").read_text().replace("(1..64)", "(1..32)"))
    assert crd_docs.main([str(stale), "--check"]) == 1
    assert crd_docs.main([str(stale)]) == 0 and crd_docs.main([str(stale), "--check"]) == 0  # rewritten


def _undescribed(schema: dict, path: str) -> list[str]:
    out = [] if schema.get("description") else [path]
    for key, sub in (schema.get("properties") or {}).items():
        out += _undescribed(sub, f"{path}.{key}")
    if "items" in schema:
        out += _undescribed(schema["items"], f"{path}[]")
    return out


def test_every_status_field_is_described_for_kubectl_explain():
    # kubectl explain wd.status.conditions.reason printed nothing before
    assert _undescribed(crd.status_schema(), "status") == []


def test_kubectl_get_wide_shows_why_it_is_not_ready():
    wide = {c["name"]: c for c in crd.printer_columns() if c.get("priority") == 1}
    assert set(wide) == {"Reason", "Message"}
    assert all('?(@.type=="Ready")' in c["jsonPath"] for c in wide.values())
    assert [c["name"] for c in crd.printer_columns() if not c.get("priority")] == [
        "Ready",
        "Backend",
        "Filemon",
        "Procmon",
        "Age",
    ]  # the guide's columns stay first
