"""examples/watcherdeployment-cloudnativepg.yaml: PostgreSQL from CloudNativePG, two backend replicas."""

from pathlib import Path

import yaml
from unit.operator.test_builders import INPUTS, by_key
from unit.operator.test_crd import VALIDATOR, spec_with_defaults

from watcher_operator.builders import build_children

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "watcherdeployment-cloudnativepg.yaml"


def documents() -> dict[str, dict]:
    return {doc["kind"]: doc for doc in yaml.safe_load_all(EXAMPLE.read_text())}


def test_the_example_is_a_valid_watcherdeployment_beside_a_cloudnativepg_cluster():
    docs = documents()
    assert docs["Cluster"]["apiVersion"] == "postgresql.cnpg.io/v1"
    wd = docs["WatcherDeployment"]
    assert sorted(e.message for e in VALIDATOR.iter_errors(wd)) == []
    assert list(VALIDATOR.iter_errors(dict(wd, spec=spec_with_defaults(wd["spec"])))) == []
    # CloudNativePG names the Secret <cluster>-app and puts a postgresql:// URL under `uri`
    ref = wd["spec"]["backend"]["database"]["secretRef"]
    assert ref == {"name": docs["Cluster"]["metadata"]["name"] + "-app", "key": "uri"}


def test_replicas_on_postgresql_get_the_url_from_the_secret_and_no_claim_to_fight_over():
    wd = documents()["WatcherDeployment"]
    wd["metadata"].update(uid="00000000-0000-0000-0000-00000000c9e9", generation=1)
    objs = by_key(build_children(wd, INPUTS))
    deployment = objs[("Deployment", "watcher-backend")]
    assert deployment["spec"]["replicas"] == 2
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["WATCHER_DATABASE_URL"]["valueFrom"] == {"secretKeyRef": {"name": "watcher-db-app", "key": "uri"}}
    assert "--database-url" not in container["args"]
    # a ReadWriteOnce claim would keep the second replica from starting on another node
    assert ("PersistentVolumeClaim", "watcher-backend-pvc") not in objs
    volumes = deployment["spec"]["template"]["spec"]["volumes"]
    assert all("persistentVolumeClaim" not in v for v in volumes if v["name"] == "data")
