"""The snapshot collector's settings: --snapshot-gc-interval / --snapshot-gc-grace and their variables."""

from __future__ import annotations

import os

import pytest

from watcher_agents.filemon import cli
from watcher_core import settings_spec


def _fm(tmp_path, argv=(), env=None):
    args = cli.build_parser().parse_args(["--snapshot-dir", str(tmp_path / "snap"), *argv])
    return cli.resolve_filemon(args, env=env or {})


def test_defaults_ten_minutes_and_one_day(tmp_path):
    fm = _fm(tmp_path)
    assert fm.snapshot_gc_interval == 600 and fm.snapshot_gc_grace == 86400


def test_variables_and_flags_win_over_them(tmp_path):
    env = {"WATCHER_SNAPSHOT_GC_INTERVAL_SECONDS": "60", "WATCHER_SNAPSHOT_GC_GRACE_SECONDS": "3600"}
    assert (_fm(tmp_path, env=env).snapshot_gc_interval, _fm(tmp_path, env=env).snapshot_gc_grace) == (60, 3600)
    fm = _fm(tmp_path, ["--snapshot-gc-interval", "0", "--snapshot-gc-grace", "7200"], env)
    assert (fm.snapshot_gc_interval, fm.snapshot_gc_grace) == (0, 7200)  # 0: collector off


@pytest.mark.parametrize(
    "argv, env, flag, variable",
    [
        (["--snapshot-gc-interval", "-1"], {}, "--snapshot-gc-interval", "WATCHER_SNAPSHOT_GC_INTERVAL_SECONDS"),
        (
            [],
            {"WATCHER_SNAPSHOT_GC_INTERVAL_SECONDS": "10m"},
            "--snapshot-gc-interval",
            "WATCHER_SNAPSHOT_GC_INTERVAL_SECONDS",
        ),
        (
            [],
            {"WATCHER_SNAPSHOT_GC_INTERVAL_SECONDS": "inf"},
            "--snapshot-gc-interval",
            "WATCHER_SNAPSHOT_GC_INTERVAL_SECONDS",
        ),
        (["--snapshot-gc-grace", "nan"], {}, "--snapshot-gc-grace", "WATCHER_SNAPSHOT_GC_GRACE_SECONDS"),
        ([], {"WATCHER_SNAPSHOT_GC_GRACE_SECONDS": "-5"}, "--snapshot-gc-grace", "WATCHER_SNAPSHOT_GC_GRACE_SECONDS"),
        (
            [],
            {"WATCHER_SNAPSHOT_GC_GRACE_SECONDS": "1e999"},
            "--snapshot-gc-grace",
            "WATCHER_SNAPSHOT_GC_GRACE_SECONDS",
        ),
    ],
)
def test_a_bad_value_names_its_flag_and_variable(tmp_path, argv, env, flag, variable):
    with pytest.raises(settings_spec.SettingsError) as info:
        _fm(tmp_path, argv, env)
    assert flag in str(info.value) and variable in str(info.value)


def test_main_stops_with_one_line_and_exit_2(tmp_path, capsys, monkeypatch):
    for name in list(os.environ):
        if name.startswith("WATCHER_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("WATCHER_SNAPSHOT_GC_GRACE_SECONDS", "a day")
    rc = cli.main(
        [
            "--workspace-root",
            str(tmp_path),
            "--state-dir",
            str(tmp_path / "st"),
            "--snapshot-dir",
            str(tmp_path / "snap"),
            "--backend-url",
            "http://127.0.0.1:9",
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert "--snapshot-gc-grace" in err[0] and "WATCHER_SNAPSHOT_GC_GRACE_SECONDS" in err[0]


def test_help_lists_both_settings(capsys):
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["--help"])
    out = capsys.readouterr().out
    for word in (
        "--snapshot-gc-interval",
        "WATCHER_SNAPSHOT_GC_INTERVAL_SECONDS",
        "--snapshot-gc-grace",
        "WATCHER_SNAPSHOT_GC_GRACE_SECONDS",
    ):
        assert word in out
