"""Shared agent settings: flag over env over default, and one clear line for each bad value."""

import argparse

import pytest

from watcher_agents import config
from watcher_agents.filemon.cli import FilemonSettings
from watcher_agents.procmon.cli import ProcmonSettings
from watcher_core import identity, settings_spec


def _resolve(argv, env, **kw):
    parser = argparse.ArgumentParser()
    config.add_agent_arguments(parser, agent="filemon")
    return config.resolve(parser.parse_args(argv), agent="filemon", env=env, **kw)


def test_defaults_and_env(tmp_path):
    env = {
        "WATCHER_WORKSPACE_ROOT": str(tmp_path),
        "WATCHER_STATE_DIR": str(tmp_path / "st"),
        "WATCHER_INGEST_TOKEN": "tok",
        "WATCHER_NODE_NAME": "node-1",
    }
    s = _resolve([], env)
    assert s.workspace_root == tmp_path and s.state_dir.is_dir()
    assert s.backend_url == config.DEFAULT_BACKEND_URL
    assert s.token == "tok" and s.metrics_port == 9090 and s.node_name == "node-1"
    assert s.batch_size == 500 and s.outbox_sync == "normal"


def test_flag_beats_env(tmp_path):
    env = {"WATCHER_WORKSPACE_ROOT": "/nonexistent", "WATCHER_METRICS_PORT": "1"}
    s = _resolve(
        [
            "--workspace-root",
            str(tmp_path),
            "--state-dir",
            str(tmp_path / "s"),
            "--metrics-port",
            "9999",
            "--outbox-max-bytes",
            "64M",
        ],
        env,
    )
    assert s.workspace_root == tmp_path and s.metrics_port == 9999 and s.outbox_max_bytes == 64 * 1024**2


def test_token_file(tmp_path):
    (tmp_path / "tok").write_text("secret\n")
    s = _resolve(
        ["--state-dir", str(tmp_path / "s")],
        {"WATCHER_WORKSPACE_ROOT": str(tmp_path), "WATCHER_INGEST_TOKEN_FILE": str(tmp_path / "tok")},
    )
    assert s.token == "secret" and "file" in s.token_source


@pytest.mark.parametrize(
    "argv, env, words",
    [
        (
            [],
            {"WATCHER_WORKSPACE_ROOT": "/no/such/dir"},
            ["workspace root", "does not exist", "WATCHER_WORKSPACE_ROOT"],
        ),
        (["--backend-url", "ftp://x"], {}, ["--backend-url", "http"]),
        (["--backend-url", "not a url"], {}, ["WATCHER_BACKEND_URL"]),
        ([], {"WATCHER_INGEST_TOKEN_FILE": "/no/such/token"}, ["token file", "WATCHER_INGEST_TOKEN_FILE"]),
        (["--metrics-port", "70000"], {}, ["--metrics-port", "port"]),
        ([], {"WATCHER_BATCH_SIZE": "5000"}, ["WATCHER_BATCH_SIZE", "1000"]),
        ([], {"WATCHER_NODE_NAME": "bad name!"}, ["node name", "WATCHER_NODE_NAME"]),
    ],
)
def test_errors_are_one_line_naming_the_setting(tmp_path, argv, env, words):
    env = {"WATCHER_WORKSPACE_ROOT": str(tmp_path), "WATCHER_STATE_DIR": str(tmp_path / "s"), **env}
    with pytest.raises(settings_spec.SettingsError) as info:
        _resolve(argv, env)
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message


def test_unwritable_state_dir(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(settings_spec.SettingsError, match="state dir"):
        _resolve(["--state-dir", str(blocker / "sub")], {"WATCHER_WORKSPACE_ROOT": str(tmp_path)})


def test_byte_size():
    assert settings_spec.byte_size("64k") == 65536
    assert settings_spec.byte_size("1G") == 1024**3
    assert settings_spec.byte_size("100") == 100
    with pytest.raises(ValueError):
        settings_spec.byte_size("lots")


LAYOUT = {s.name for s in settings_spec.settings_of(identity.LayoutRules)}


def _layout(argv, env, *, with_files):
    """The layout rules and the flush timeout as filemon (with files) or procmon declares them."""
    settings = [
        s
        for s in settings_spec.settings_of(FilemonSettings if with_files else ProcmonSettings)
        if s.name in LAYOUT or s.name == "flush_timeout"
    ]
    parser = argparse.ArgumentParser()
    settings_spec.add_arguments(parser.add_argument_group("agent"), settings)
    values = settings_spec.resolve(settings, parser.parse_args(argv), env)
    names = [s.name for s in settings if s.name in LAYOUT]
    return settings_spec.build(identity.LayoutRules, values, only=names), values["flush_timeout"]


def test_layout_and_flush_timeout_flag_over_env_over_default():
    rules, flush = _layout([], {}, with_files=True)
    assert rules == identity.LayoutRules() and flush == 10.0
    env = {
        "WATCHER_EXTENSIONS": ".c, .rs",
        "WATCHER_MAX_FILE_SIZE": "64k",
        "WATCHER_IGNORE_DIRS": "venv",
        "WATCHER_ASSIGNMENT_PATTERN": r"lab\d+",
        "WATCHER_FLUSH_TIMEOUT_SECONDS": "3",
    }
    rules, flush = _layout(["--assignment-pattern", r"hw\d+", "--flush-timeout", "0"], env, with_files=True)
    assert rules.extensions == (".c", ".rs") and rules.max_file_size == 65536 and rules.ignore_dirs == ("venv",)
    assert rules.is_assignment("hw1") and not rules.is_assignment("lab1") and flush == 0.0


def test_layout_without_files_has_no_file_flags_and_ignores_their_variables():
    # procmon has no --extensions/--max-file-size: a stray (even bad) variable must not stop it
    rules, _ = _layout(
        ["--ignore-dirs", "a,b"], {"WATCHER_EXTENSIONS": "c", "WATCHER_MAX_FILE_SIZE": "x"}, with_files=False
    )
    assert rules.ignore_dirs == ("a", "b") and rules.extensions == identity.DEFAULT_EXTENSIONS
    with pytest.raises(SystemExit):
        _layout(["--extensions", ".c"], {}, with_files=False)


@pytest.mark.parametrize(
    "argv, env, words",
    [
        (["--assignment-pattern", "hw("], {}, ["--assignment-pattern=", "regex", "WATCHER_ASSIGNMENT_PATTERN"]),
        ([], {"WATCHER_EXTENSIONS": "c,py"}, ["extension 'c'", "--extensions", "WATCHER_EXTENSIONS"]),
        (["--max-file-size", "0"], {}, ["--max-file-size", "positive", "WATCHER_MAX_FILE_SIZE"]),
        ([], {"WATCHER_MAX_FILE_SIZE": "huge"}, ["WATCHER_MAX_FILE_SIZE", "--max-file-size"]),
        ([], {"WATCHER_FLUSH_TIMEOUT_SECONDS": "-1"}, ["WATCHER_FLUSH_TIMEOUT_SECONDS", "--flush-timeout", ">= 0"]),
    ],
)
def test_layout_errors_are_one_line_naming_flag_and_variable(argv, env, words):
    with pytest.raises(settings_spec.SettingsError) as info:
        _layout(argv, env, with_files=True)
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message
