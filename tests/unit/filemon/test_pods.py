"""Node-local watching, the pure part: which folder a pod maps to, and the changes its events make."""

import pytest

from watcher_agents.filemon import cli, pods
from watcher_core import settings_spec


def pod(name, *, ns="jcode", phase="Running", annotations=None):
    meta = {"name": name, "namespace": ns}
    if annotations:
        meta["annotations"] = annotations
    return {"metadata": meta, "status": {"phase": phase}}


@pytest.mark.parametrize(
    "name, folder",
    [
        ("jcode-os-1-202012345", "os-1-202012345"),
        # a Deployment's pod: -{rs-hash}-{suffix} is not part of the folder
        ("jcode-os-1-202012345-866cbc896c-lrx9d", "os-1-202012345"),
        # a course with '-' in its name
        ("jcode-data-structure-2-202012345", "data-structure-2-202012345"),
        ("jcode-data-structure-2-202012345-5d4f8b7c9-x2x7q", "data-structure-2-202012345"),
        ("coredns-558bd4d5db-abcde", None),
        ("jcode-admin", None),
    ],
)
def test_the_pod_name_maps_to_the_platforms_folder(name, folder):
    assert pods.Mapping().workspace(pod(name)) == folder


def test_an_annotation_wins_and_a_folder_that_is_a_path_is_refused():
    m = pods.Mapping()
    assert m.workspace(pod("anything", annotations={pods.DEFAULT_ANNOTATION: "os-2-7"})) == "os-2-7"
    for bad in ("../etc", "os-1-2/hw1", "", "notastudent"):
        assert m.workspace(pod("jcode-os-1-2", annotations={pods.DEFAULT_ANNOTATION: bad})) is None
    # a pattern of the platform's own: the first group is the folder
    assert pods.Mapping(pattern=r"^student-(\w+-\d+-\d+)$").workspace(pod("student-os-1-9")) == "os-1-9"


def test_a_folder_is_watched_while_any_pod_maps_to_it():
    t = pods.PodTable(pods.Mapping())
    [c] = t.apply("ADDED", pod("jcode-os-1-1-aaaaaaaaaa-bbbbb"))
    assert (c.added, c.workspace, c.pod) == (True, "os-1-1", "jcode/jcode-os-1-1-aaaaaaaaaa-bbbbb")
    # a rolling update: the new pod arrives before the old one goes; the folder stays watched throughout
    assert t.apply("ADDED", pod("jcode-os-1-1-cccccccccc-ddddd")) == []
    assert t.apply("DELETED", pod("jcode-os-1-1-aaaaaaaaaa-bbbbb")) == []
    [c] = t.apply("DELETED", pod("jcode-os-1-1-cccccccccc-ddddd"))
    assert (c.added, c.workspace) == (False, "os-1-1")
    assert t.workspaces() == set()


def test_a_finished_pod_drops_its_folder_and_unmapped_pods_are_counted():
    t = pods.PodTable(pods.Mapping())
    t.apply("ADDED", pod("jcode-os-1-1"))
    [c] = t.apply("MODIFIED", pod("jcode-os-1-1", phase="Succeeded"))
    assert not c.added
    assert t.apply("ADDED", pod("jupyter-helper")) == [] and t.unmapped == {"jcode/jupyter-helper"}
    # an annotation added later re-maps the pod
    changes = t.apply("MODIFIED", pod("jcode-os-1-1", annotations={pods.DEFAULT_ANNOTATION: "os-9-9"}))
    assert [(c.added, c.workspace) for c in changes] == [(True, "os-9-9")]
    changes = t.apply("MODIFIED", pod("jcode-os-1-1", annotations={pods.DEFAULT_ANNOTATION: "os-8-8"}))
    assert [(c.added, c.workspace) for c in changes] == [(False, "os-9-9"), (True, "os-8-8")]


def test_a_relist_applies_only_the_difference():
    t = pods.PodTable(pods.Mapping())
    t.replace([pod("jcode-os-1-1"), pod("jcode-os-1-2"), pod("other")])
    assert t.workspaces() == {"os-1-1", "os-1-2"}
    changes = t.replace([pod("jcode-os-1-2"), pod("jcode-os-1-3")])
    assert sorted((c.added, c.workspace) for c in changes) == [(False, "os-1-1"), (True, "os-1-3")]
    assert t.unmapped == set()


def _fm(tmp_path, argv=(), env=None):
    return cli.resolve_filemon(cli.build_parser().parse_args(["--snapshot-dir", str(tmp_path), *argv]), env=env or {})


def test_node_mode_settings(tmp_path):
    fm = _fm(tmp_path)
    assert fm.scope == "volume" and fm.pod_namespace == "" and fm.workspace_pattern == pods.DEFAULT_PATTERN
    fm = _fm(
        tmp_path,
        ["--scope", "node", "--pod-namespace", "jcode", "--pod-selector", "app in (jcode),tier!=db"],
    )
    assert (fm.scope, fm.pod_namespace, fm.pod_selector) == ("node", "jcode", "app in (jcode),tier!=db")
    for argv, env, word in [
        ([], {"WATCHER_FILEMON_SCOPE": "cluster"}, "WATCHER_FILEMON_SCOPE"),
        ([], {"WATCHER_POD_WORKSPACE_PATTERN": "^jcode-"}, "WATCHER_POD_WORKSPACE_PATTERN"),
        ([], {"WATCHER_POD_WORKSPACE_PATTERN": "("}, "regex"),
        (["--pod-selector", "app=x;rm"], {}, "--pod-selector"),
    ]:
        with pytest.raises(settings_spec.SettingsError, match=word):
            _fm(tmp_path, argv, env)


def test_node_mode_outside_a_pod_says_what_is_missing(tmp_path):
    with pytest.raises(pods.ApiFailure, match="KUBERNETES_SERVICE_HOST"):
        pods.KubeAccess.in_cluster(tmp_path, env={})
    (tmp_path / "token").write_text("t\n")
    with pytest.raises(pods.ApiFailure, match="ca.crt"):
        pods.KubeAccess.in_cluster(tmp_path, env={"KUBERNETES_SERVICE_HOST": "10.96.0.1"})
    (tmp_path / "ca.crt").write_text("")
    access = pods.KubeAccess.in_cluster(tmp_path, env={"KUBERNETES_SERVICE_HOST": "10.96.0.1"})
    assert access.url == "https://10.96.0.1:443" and access.headers() == {"Authorization": "Bearer t"}
    # the kubelet rotates the token file: it is read again for each request
    (tmp_path / "token").write_text("t2")
    assert access.headers() == {"Authorization": "Bearer t2"}


def test_main_in_node_scope_outside_a_pod_exits_with_one_line(tmp_path, capsys, monkeypatch):
    import os

    for k in list(os.environ):
        if k.startswith("WATCHER_") or k.startswith("KUBERNETES_"):
            monkeypatch.delenv(k)
    monkeypatch.setenv("WATCHER_SERVICE_ACCOUNT_DIR", str(tmp_path / "no-account"))
    rc = cli.main(
        [
            "--workspace-root",
            str(tmp_path),
            "--state-dir",
            str(tmp_path / "st"),
            "--snapshot-dir",
            str(tmp_path / "snap"),
            "--metrics-port",
            "0",
            "--backend-url",
            "http://127.0.0.1:9",
            "--scope",
            "node",
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and any("--scope node" in line and "KUBERNETES_SERVICE_HOST" in line for line in err), err
