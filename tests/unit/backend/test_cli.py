"""`watcher backend`: a bad setting is one line naming it and exit 2 (before anything starts);
`--help` works whatever the environment holds; the log level is accepted in any case."""

from __future__ import annotations

import os

import pytest

from watcher_backend import cli
from watcher_backend.settings import SettingsError, from_env

TOKEN = "t" * 20


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in list(os.environ):
        if name.startswith("WATCHER_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("WATCHER_INGEST_TOKEN", TOKEN)


BAD_VALUES = [
    ("WATCHER_LOG_LEVEL", "verbose"),
    ("WATCHER_LOG_LEVEL", "warn"),
    ("WATCHER_PORT", "http"),
    ("WATCHER_PORT", "70000"),
    ("WATCHER_RETENTION_DAYS", "0"),
    ("WATCHER_RETENTION_INTERVAL_SECONDS", "hourly"),
    ("WATCHER_RETENTION_INTERVAL_SECONDS", "nan"),
    ("WATCHER_DATABASE_WAIT_SECONDS", "inf"),
    ("WATCHER_IDLE_GAP_SECONDS", "5m"),
    ("WATCHER_AUTH", "maybe"),
    ("WATCHER_LEGACY_SNAPSHOT_TZ", "CET"),
    ("WATCHER_LEGACY_NAIVE_TZ", "Europe/Paris"),
    ("WATCHER_DATABASE_URL", "mysql://x"),
]


@pytest.mark.parametrize("name,value", BAD_VALUES)
def test_bad_environment_value_is_one_line_naming_it_and_exit_2(monkeypatch, capsys, tmp_path, name, value):
    monkeypatch.setenv(name, value)
    # a database that would be created if the start went on: it must not be
    db = tmp_path / "w.db"
    argv = [] if name == "WATCHER_DATABASE_URL" else ["--database-url", f"sqlite:///{db}"]
    assert cli.main([*argv, "--snapshot-dir", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"watcher backend: bad setting {name}: "), err
    assert not db.exists()


@pytest.mark.parametrize("name,value", BAD_VALUES)
def test_help_works_with_a_bad_environment_value(monkeypatch, capsys, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    assert "usage: watcher backend" in capsys.readouterr().out


def test_help_lists_every_environment_variable_and_the_reference(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    for name in (
        "WATCHER_RETENTION_INTERVAL_SECONDS",
        "WATCHER_LEGACY_SNAPSHOT_TZ",
        "WATCHER_LEGACY_NAIVE_TZ",
        "WATCHER_LOG_LEVEL",
        "WATCHER_DATABASE_WAIT_SECONDS",
        "docs/configuration.md",
    ):
        assert name in out, name
    assert "docs/backend.md" not in out


@pytest.mark.parametrize("level", ["debug", "Info", "WARNING", "error"])
def test_log_level_any_case_in_flag_and_variable(level):
    assert cli.build_parser().parse_args(["--log-level", level]).log_level == level.upper()
    assert (
        from_env({"WATCHER_LOG_LEVEL": level, "WATCHER_AUTH": "off", "WATCHER_HOST": "127.0.0.1"}).validate().log_level
        == level.upper()
    )


def test_bad_log_level_flag_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--log-level", "verbose"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "--log-level" in err


def test_unknown_log_level_names_the_variable():
    with pytest.raises(SettingsError) as exc:
        from_env({"WATCHER_LOG_LEVEL": "trace", "WATCHER_AUTH": "off"}).validate()
    assert exc.value.setting == "WATCHER_LOG_LEVEL"
