import subprocess
import sys

import pytest

from watcher_core import cli, snapshots


def test_snapshot_store_is_content_addressed_and_written_once(tmp_path):
    sha, written = snapshots.write_snapshot(tmp_path, b"int main(){}\n")
    assert written and sha == snapshots.sha256_of(b"int main(){}\n")
    assert snapshots.snapshot_path(tmp_path, sha) == tmp_path / sha[:2] / sha
    assert snapshots.write_snapshot(tmp_path, b"int main(){}\n") == (sha, False)
    assert snapshots.read_snapshot(tmp_path, sha) == b"int main(){}\n"
    assert snapshots.read_snapshot(tmp_path, "0" * 64) is None
    assert not [p for p in tmp_path.rglob(".tmp-*")]
    with pytest.raises(ValueError):
        snapshots.snapshot_path(tmp_path, "../../etc/passwd")


def test_cli_lists_every_component(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in ["backend", "filemon", "procmon", "operator", "local", "export", "demo", "status"]:
        assert f"  {name}" in out


def test_cli_unknown_command_is_a_clear_error(capsys):
    assert cli.main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err


def test_console_script_runs():
    out = subprocess.run([sys.executable, "-m", "watcher_core", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("watcher ")


def test_every_command_names_the_extra_that_brings_its_dependencies():
    import tomllib
    from pathlib import Path

    from watcher_core import cli

    extras = tomllib.loads((Path(__file__).resolve().parents[3] / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert set(cli.EXTRAS) == set(cli.COMMANDS)
    assert all(extra in extras for extra in cli.EXTRAS.values() if extra is not None)
    # a command without an extra runs on the standard library alone: it imports nothing outside it
    for name in (n for n, extra in cli.EXTRAS.items() if extra is None):
        assert cli.COMMANDS[name][0].startswith("watcher_core.")


def test_a_command_whose_dependencies_are_missing_says_which_extra_to_install(monkeypatch, capsys):
    import importlib

    from watcher_core import cli

    real = importlib.import_module

    def without_fastapi(name, *args):
        if name == "watcher_backend.cli":
            raise ModuleNotFoundError("No module named 'fastapi'", name="fastapi")
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", without_fastapi)
    assert cli.main(["backend", "--help"]) == 2
    err = capsys.readouterr().err
    assert "pip install 'jcode-watcher[backend]'" in err and "fastapi" in err
    assert "Traceback" not in err
