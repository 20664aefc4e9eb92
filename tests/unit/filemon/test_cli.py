"""filemon's own settings: flags and variables, validation, and the start-up errors of `main`."""

import socket

import pytest

from watcher_agents.filemon import cli
from watcher_core import settings_spec


def _fm(argv, env):
    return cli.resolve_filemon(cli.build_parser().parse_args(argv), env=env)


def test_defaults_and_env(tmp_path):
    fm = _fm(
        ["--snapshot-dir", str(tmp_path / "snap")],
        {"WATCHER_DEBOUNCE_SECONDS": "0.5", "WATCHER_EXTENSIONS": ".c, .rs", "WATCHER_MAX_FILE_SIZE": "64k"},
    )
    assert fm.quiet == 0.5 and fm.max_wait == 3.0 and fm.workers == 8
    assert fm.rules.extensions == (".c", ".rs") and fm.rules.max_file_size == 65536
    assert (tmp_path / "snap").is_dir()


@pytest.mark.parametrize(
    "argv, env, words",
    [
        (["--debounce", "-1"], {}, ["--debounce", "WATCHER_DEBOUNCE_SECONDS"]),
        (["--debounce", "2", "--max-wait", "1"], {}, ["--max-wait", "--debounce"]),
        ([], {"WATCHER_EXTENSIONS": "c,py"}, ["extension", "--extensions"]),
        ([], {"WATCHER_ASSIGNMENT_PATTERN": "hw("}, ["regex"]),
        ([], {"WATCHER_WORKERS": "x", "WATCHER_FILEMON_WORKERS": "0"}, ["WATCHER_FILEMON_WORKERS"]),
    ],
)
def test_bad_values_name_the_setting(tmp_path, argv, env, words):
    with pytest.raises(settings_spec.SettingsError) as info:
        _fm(["--snapshot-dir", str(tmp_path / "s"), *argv], env)
    for word in words:
        assert word in str(info.value)


def test_main_reports_a_busy_metrics_port_in_one_line(tmp_path, capsys, monkeypatch):
    for k in list(__import__("os").environ):
        if k.startswith("WATCHER_"):
            monkeypatch.delenv(k)
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        port = busy.getsockname()[1]
        rc = cli.main(
            [
                "--workspace-root",
                str(tmp_path),
                "--state-dir",
                str(tmp_path / "st"),
                "--snapshot-dir",
                str(tmp_path / "snap"),
                "--metrics-port",
                str(port),
                "--backend-url",
                "http://127.0.0.1:9",
            ]
        )
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and any("cannot start" in line and "WATCHER_METRICS_PORT" in line for line in err)
