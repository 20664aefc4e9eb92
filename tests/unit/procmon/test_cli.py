"""procmon's settings: one clear line and exit code 2 for a bad value."""

import pytest

from watcher_agents.procmon import cli


@pytest.mark.parametrize(
    "flag,value,needle",
    [
        ("--argv-max-bytes", "1000", "--argv-max-bytes"),
        ("--argv-max-args", "0", "--argv-max-args"),
        ("--ring-buffer-pages", "3", "--ring-buffer-pages"),
        ("--cgroup-learn-seconds", "-1", "--cgroup-learn-seconds"),
        ("--assignment-pattern", "hw(", "assignment"),
    ],
)
def test_bad_values_name_the_setting(tmp_path, capsys, flag, value, needle):
    rc = cli.main(["--workspace-root", str(tmp_path), "--state-dir", str(tmp_path / "s"), flag, value])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0] and "config error" in err[0]


def test_env_variables(tmp_path, monkeypatch):
    monkeypatch.setenv("WATCHER_PROCMON_MODE", "proc-connector")
    monkeypatch.setenv("WATCHER_PROCMON_COMPILERS", "tcc, gcc")
    monkeypatch.setenv("WATCHER_PROCMON_KERNEL_FILTER", "off")
    args = cli.build_parser().parse_args([])
    ps = cli.resolve_procmon(args)
    assert ps.mode == "proc-connector" and ps.classes.compilers == ("tcc", "gcc") and not ps.kernel_filter
    args = cli.build_parser().parse_args(["--mode", "ebpf"])
    assert cli.resolve_procmon(args).mode == "ebpf"  # the flag wins


def test_help_mentions_every_setting(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    for name in (
        "--mode",
        "--compilers",
        "--interpreters",
        "--argv-max-bytes",
        "--kernel-filter",
        "--workspace-root",
        "--backend-url",
        "--metrics-port",
        "--node-name",
    ):
        assert name in out


def test_capture_stderr_is_on_by_default_and_can_be_turned_off(monkeypatch, tmp_path, capsys):
    assert cli.resolve_procmon(cli.build_parser().parse_args([])).capture_stderr is True
    monkeypatch.setenv("WATCHER_CAPTURE_STDERR", "off")
    assert cli.resolve_procmon(cli.build_parser().parse_args([])).capture_stderr is False
    assert cli.resolve_procmon(cli.build_parser().parse_args(["--capture-stderr", "on"])).capture_stderr is True
    monkeypatch.setenv("WATCHER_CAPTURE_STDERR", "maybe")
    rc = cli.main(["--workspace-root", str(tmp_path), "--state-dir", str(tmp_path / "s")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "WATCHER_CAPTURE_STDERR" in err[0]
