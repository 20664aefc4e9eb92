"""The rollout order (pure): agents at another version wait until the backend runs the new one."""

from __future__ import annotations

from pathlib import Path

import yaml

from watcher_operator.builders import Inputs, agents_held, image, target_from_resource
from watcher_operator.conditions import get_condition
from watcher_operator.rollout import BackendRollout
from watcher_operator.rollout import agents_held as decide
from watcher_operator.status import WAIT_REASON, compute_status

ROOT = Path(__file__).resolve().parents[3]


def resource(tag: str = "1.1.0") -> dict:
    doc = yaml.safe_load((ROOT / "examples" / "watcherdeployment-minimal.yaml").read_text())
    doc["metadata"].update(uid="u", generation=2)
    doc["spec"]["image"]["tag"] = tag
    return doc


def deployment(image: str, *, gen=2, observed=2, replicas=1, updated=1, total=1, available=1) -> dict:
    return {
        "metadata": {"generation": gen},
        "spec": {"replicas": replicas, "template": {"spec": {"containers": [{"name": "backend", "image": image}]}}},
        "status": {
            "observedGeneration": observed,
            "updatedReplicas": updated,
            "replicas": total,
            "availableReplicas": available,
            "readyReplicas": available,
        },
    }


def test_a_rollout_is_complete_only_when_observed_updated_without_old_pods_and_available():
    img = "r/watcher-backend:1.1.0"
    assert BackendRollout.from_deployment(deployment(img)).complete
    assert not BackendRollout.from_deployment(deployment(img, observed=1)).complete
    assert not BackendRollout.from_deployment(deployment(img, replicas=2, updated=1, total=2, available=2)).complete
    # surge: the new pod is up but the old one is still there
    assert not BackendRollout.from_deployment(deployment(img, updated=1, total=2, available=2)).complete
    assert not BackendRollout.from_deployment(deployment(img, available=0)).complete
    assert BackendRollout.from_deployment(deployment(img)).image == img


def test_agents_behind_wait_for_the_backend_and_are_released_once_it_has_rolled_out():
    t = target_from_resource(resource("1.1.0"))
    new = image(t, "backend")
    old = new.replace(":1.1.0", ":1.0.0")
    live = {"filemon": "1.0.0", "procmon": "1.0.0"}
    # the backend Deployment still has the old image (it was read before this reconcile applied it)
    hold = agents_held(t, Inputs(backend_rollout=BackendRollout.from_deployment(deployment(old)), agent_versions=live))
    assert hold is not None and hold.components == ("filemon", "procmon")
    assert "still runs" in hold.message and "filemon at 1.0.0" in hold.message
    # new image, still rolling out
    rolling = BackendRollout.from_deployment(deployment(new, updated=0, available=1))
    hold = agents_held(t, Inputs(backend_rollout=rolling, agent_versions=live))
    assert hold is not None and "rolling out" in hold.message and "0/1 replicas updated" in hold.message
    # rolled out: the agents go
    done = BackendRollout.from_deployment(deployment(new))
    assert agents_held(t, Inputs(backend_rollout=done, agent_versions=live)) is None


def test_agents_at_the_wanted_version_or_not_yet_created_are_never_held():
    t = target_from_resource(resource("1.1.0"))
    old = image(t, "backend").replace(":1.1.0", ":1.0.0")
    rolling = BackendRollout.from_deployment(deployment(old))
    # drift repair of an agent already at 1.1.0 goes on while the backend is behind
    assert agents_held(t, Inputs(backend_rollout=rolling, agent_versions={"filemon": "1.1.0"})) is None
    # a fresh install: no DaemonSet yet, nothing to hold
    assert agents_held(t, Inputs(backend_rollout=None, agent_versions={})) is None
    # an agent without a version label (an older operator made it) counts as behind
    hold = decide("img:2", None, {"procmon": None}, {"procmon": "2"}, "b")
    assert hold is not None and hold.components == ("procmon",) and "does not exist yet" in hold.message
    assert "procmon at its old version" in hold.message


def test_a_component_tag_override_is_compared_per_component():
    r = resource("1.1.0")
    r["spec"]["procmon"] = {"image": {"tag": "1.1.0-debug"}}
    t = target_from_resource(r)
    done = BackendRollout.from_deployment(deployment(image(t, "backend"), observed=1))  # not observed yet
    hold = agents_held(t, Inputs(backend_rollout=done, agent_versions={"filemon": "1.1.0", "procmon": "1.1.0"}))
    assert hold is not None and hold.components == ("procmon",)


def test_progressing_says_the_agents_wait_and_flips_back_when_released():
    t = target_from_resource(resource())
    dep = deployment(image(t, "backend"))
    ds = {
        "metadata": {"generation": 1},
        "status": {"observedGeneration": 1, "desiredNumberScheduled": 2, "numberReady": 2, "updatedNumberScheduled": 2},
    }
    work = {"backend": dep, "filemon": ds, "procmon": ds}
    hold = decide("x", None, {"filemon": "1.0.0"}, {"filemon": "1.1.0"}, "watcher-backend")
    st = compute_status(t, work, [], None, "T1", hold=hold)
    c = get_condition(st["conditions"], "Progressing")
    assert (c["status"], c["reason"]) == ("True", WAIT_REASON) and "filemon at 1.0.0" in c["message"]
    # a hold is not a fault: Degraded stays False
    assert get_condition(st["conditions"], "Degraded")["status"] == "False"
    st = compute_status(t, work, [], st, "T2")
    c = get_condition(st["conditions"], "Progressing")
    assert (c["status"], c["reason"], c["lastTransitionTime"]) == ("False", "RolloutComplete", "T2")
    assert [x["type"] for x in st["conditions"]] == [
        "Ready",
        "BackendReady",
        "FilemonReady",
        "ProcmonReady",
        "Progressing",
        "Degraded",
    ]
