"""Shared agent settings: flag over env over default, and one clear line for each bad value."""
import argparse

import pytest

from watcher_agents import config


def _resolve(argv, env, **kw):
    parser = argparse.ArgumentParser()
    config.add_agent_arguments(parser, agent="filemon")
    return config.resolve(parser.parse_args(argv), agent="filemon", env=env, **kw)


def test_defaults_and_env(tmp_path):
    env = {"WATCHER_WORKSPACE_ROOT": str(tmp_path), "WATCHER_STATE_DIR": str(tmp_path / "st"),
           "WATCHER_INGEST_TOKEN": "tok", "WATCHER_NODE_NAME": "node-1"}
    s = _resolve([], env)
    assert s.workspace_root == tmp_path and s.state_dir.is_dir()
    assert s.backend_url == config.DEFAULT_BACKEND_URL
    assert s.token == "tok" and s.metrics_port == 9090 and s.node_name == "node-1"
    assert s.batch_size == 500 and s.outbox_sync == "normal"


def test_flag_beats_env(tmp_path):
    env = {"WATCHER_WORKSPACE_ROOT": "/nonexistent", "WATCHER_METRICS_PORT": "1"}
    s = _resolve(["--workspace-root", str(tmp_path), "--state-dir", str(tmp_path / "s"), "--metrics-port", "9999",
                  "--outbox-max-bytes", "64M"], env)
    assert s.workspace_root == tmp_path and s.metrics_port == 9999 and s.outbox_max_bytes == 64 * 1024**2


def test_token_file(tmp_path):
    (tmp_path / "tok").write_text("secret\n")
    s = _resolve(["--state-dir", str(tmp_path / "s")],
                 {"WATCHER_WORKSPACE_ROOT": str(tmp_path), "WATCHER_INGEST_TOKEN_FILE": str(tmp_path / "tok")})
    assert s.token == "secret" and "file" in s.token_source


@pytest.mark.parametrize("argv, env, words", [
    ([], {"WATCHER_WORKSPACE_ROOT": "/no/such/dir"}, ["workspace root", "does not exist", "WATCHER_WORKSPACE_ROOT"]),
    (["--backend-url", "ftp://x"], {}, ["--backend-url", "http"]),
    (["--backend-url", "not a url"], {}, ["WATCHER_BACKEND_URL"]),
    ([], {"WATCHER_INGEST_TOKEN_FILE": "/no/such/token"}, ["token file", "WATCHER_INGEST_TOKEN_FILE"]),
    (["--metrics-port", "70000"], {}, ["--metrics-port", "port"]),
    ([], {"WATCHER_BATCH_SIZE": "5000"}, ["WATCHER_BATCH_SIZE", "1000"]),
    ([], {"WATCHER_NODE_NAME": "bad name!"}, ["node name", "WATCHER_NODE_NAME"]),
])
def test_errors_are_one_line_naming_the_setting(tmp_path, argv, env, words):
    env = {"WATCHER_WORKSPACE_ROOT": str(tmp_path), "WATCHER_STATE_DIR": str(tmp_path / "s"), **env}
    with pytest.raises(config.ConfigError) as info:
        _resolve(argv, env)
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message


def test_unwritable_state_dir(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(config.ConfigError, match="state dir"):
        _resolve(["--state-dir", str(blocker / "sub")], {"WATCHER_WORKSPACE_ROOT": str(tmp_path)})


def test_byte_size():
    assert config.byte_size("64k") == 65536
    assert config.byte_size("1G") == 1024**3
    assert config.byte_size("100") == 100
    with pytest.raises(ValueError):
        config.byte_size("lots")
