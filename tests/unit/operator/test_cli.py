"""`watcher operator`: a bad setting is one line naming it and exit 2, before kopf starts; `--help`
works whatever the environment holds; log levels are accepted in any case; without the kopf peering CRD
it runs standalone with one warning instead of waiting silently."""

from __future__ import annotations

import argparse
import dataclasses
import logging

import pytest

from watcher_operator import cli


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    import os

    for name in list(os.environ):
        if name.startswith("WATCHER_"):
            monkeypatch.delenv(name)


BAD_VALUES = [
    ("WATCHER_OPERATOR_PRIORITY", "high"),
    ("WATCHER_OPERATOR_PRIORITY", "1.5"),
    ("WATCHER_OPERATOR_RESYNC_SECONDS", "1m"),
    ("WATCHER_OPERATOR_RESYNC_SECONDS", "0"),
    ("WATCHER_OPERATOR_RESYNC_SECONDS", "nan"),
    ("WATCHER_OPERATOR_RETRY_SECONDS", "soon"),
    ("WATCHER_OPERATOR_RETRY_SECONDS", "-3"),
    ("WATCHER_OPERATOR_RETRY_SECONDS", "inf"),
    ("WATCHER_LOG_LEVEL", "verbose"),
    ("WATCHER_OPERATOR_STANDALONE", "maybe"),
    ("WATCHER_OPERATOR_METRICS_PORT", "http"),
    ("WATCHER_OPERATOR_METRICS_PORT", "-1"),
    ("WATCHER_OPERATOR_METRICS_PORT", "70000"),
]


@pytest.mark.parametrize("name,value", BAD_VALUES)
def test_bad_environment_value_is_one_line_naming_it_and_exit_2(monkeypatch, capsys, name, value):
    monkeypatch.setenv(name, value)
    assert cli.main(["--namespace", "jcode"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"watcher operator: bad setting {name}: "), err
    assert repr(value) in lines[0]


@pytest.mark.parametrize("name,value", BAD_VALUES)
def test_help_works_with_a_bad_environment_value(monkeypatch, capsys, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    assert "usage: watcher operator" in capsys.readouterr().out


def test_help_names_every_environment_variable(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    for name in (
        "WATCHER_OPERATOR_NAMESPACE",
        "WATCHER_OPERATOR_PEERING",
        "WATCHER_OPERATOR_STANDALONE",
        "WATCHER_OPERATOR_PRIORITY",
        "WATCHER_OPERATOR_LIVENESS",
        "WATCHER_OPERATOR_RESYNC_SECONDS",
        "WATCHER_OPERATOR_RETRY_SECONDS",
        "WATCHER_LOG_LEVEL",
        "docs/configuration.md",
    ):
        assert name in out, name


def test_bad_resync_flag_is_one_line_naming_the_flag(capsys):
    assert cli.main(["-n", "jcode", "--resync-seconds", "0"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("watcher operator: bad setting --resync-seconds: ")


def test_bad_log_level_flag_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["-n", "jcode", "--log-level", "verbose"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "--log-level" in err


def _resolve(argv: list[str], env: dict[str, str]) -> cli.OperatorSettings:
    return cli.resolve(cli.build_parser().parse_args(argv), env)


@pytest.mark.parametrize("level", ["debug", "Warning", "ERROR", " info "])
def test_log_level_any_case_in_variable_and_flag(level):
    want = level.strip().upper()
    assert _resolve(["-A"], {"WATCHER_LOG_LEVEL": level}).log_level == want
    assert _resolve(["-A", "--log-level", level.strip()], {}).log_level == want


def test_flags_win_over_variables_and_values_are_parsed():
    env = {
        "WATCHER_OPERATOR_PRIORITY": "7",
        "WATCHER_OPERATOR_RESYNC_SECONDS": "12.5",
        "WATCHER_OPERATOR_RETRY_SECONDS": "2",
        "WATCHER_LOG_LEVEL": "error",
        "WATCHER_OPERATOR_NAMESPACE": "a, b,",
        "WATCHER_OPERATOR_PEERING": "p",
        "WATCHER_OPERATOR_STANDALONE": "TRUE",
        "WATCHER_OPERATOR_LIVENESS": "http://0.0.0.0:8080/healthz",
    }
    s = _resolve([], env)
    assert (s.priority, s.resync_seconds, s.retry_seconds, s.log_level) == (7, 12.5, 2.0, "ERROR")
    assert (s.namespaces, s.peering, s.standalone, s.liveness) == (("a", "b"), "p", True, "http://0.0.0.0:8080/healthz")
    s = _resolve(
        [
            "-n",
            "x",
            "--priority",
            "3",
            "--resync-seconds",
            "5",
            "--log-level",
            "debug",
            "--peering",
            "q",
            "--liveness",
            "",
        ],
        env,
    )
    assert (s.namespaces, s.priority, s.resync_seconds, s.log_level, s.peering, s.liveness) == (
        ("x",),
        3,
        5.0,
        "DEBUG",
        "q",
        "",
    )


def test_defaults():
    s = _resolve(["-A"], {})
    assert (s.priority, s.resync_seconds, s.retry_seconds, s.log_level, s.peering, s.standalone, s.liveness) == (
        None,
        60.0,
        30.0,
        "INFO",
        "watcher-operator",
        False,
        "",
    )


def test_metrics_port_default_flag_variable_and_off():
    assert _resolve(["-A"], {}).metrics_port == 9090
    assert _resolve(["-A"], {"WATCHER_OPERATOR_METRICS_PORT": "9100"}).metrics_port == 9100
    assert _resolve(["-A", "--metrics-port", "9200"], {"WATCHER_OPERATOR_METRICS_PORT": "9100"}).metrics_port == 9200
    assert _resolve(["-A", "--metrics-port", "0"], {}).metrics_port == 0  # off
    with pytest.raises(cli.SettingsError, match="--metrics-port"):
        _resolve(["-A", "--metrics-port", "99999"], {})


def test_parser_reads_no_environment(monkeypatch):
    monkeypatch.setenv("WATCHER_OPERATOR_PRIORITY", "oops")
    monkeypatch.setenv("WATCHER_LOG_LEVEL", "oops")
    args = cli.build_parser().parse_args([])
    assert isinstance(args, argparse.Namespace) and args.priority is None and args.log_level is None


# --- the peering CRD: without it kopf waits for ever, so the operator runs standalone and says why -----


def test_missing_peering_crd_means_standalone_with_one_warning_naming_the_fix():
    settings = _resolve(["-n", "jcode"], {})
    assert not settings.standalone and settings.peering == "watcher-operator"
    out, warning = cli.peering_fallback(settings, crd_present=False)
    assert out.standalone is True
    assert out == dataclasses.replace(settings, standalone=True)  # nothing else changes
    assert warning == (
        "peering CRD kopfpeerings.kopf.dev not found: install the chart's CRDs "
        "(charts/watcher-operator/crds) or run with --standalone / WATCHER_OPERATOR_STANDALONE=1; "
        "running standalone"
    )


def test_all_namespaces_needs_the_cluster_peering_crd():
    out, warning = cli.peering_fallback(_resolve(["-A"], {}), crd_present=False)
    assert out.standalone and warning.startswith("peering CRD clusterkopfpeerings.kopf.dev not found: ")


def test_present_crd_or_explicit_standalone_changes_nothing():
    peered = _resolve(["-n", "jcode"], {})
    assert cli.peering_fallback(peered, crd_present=True) == (peered, None)
    alone = _resolve(["-n", "jcode"], {"WATCHER_OPERATOR_STANDALONE": "1"})
    assert cli.peering_fallback(alone, crd_present=False) == (alone, None)


def test_a_failed_check_keeps_peering_but_says_how_to_get_out():
    settings = _resolve(["-n", "jcode", "--peering", "p"], {})
    out, warning = cli.peering_fallback(settings, crd_present=None, error="403 Forbidden: no")
    assert out == settings  # two replicas must not both turn standalone because one API call failed
    assert "kopfpeerings.kopf.dev" in warning and "403 Forbidden: no" in warning and "--standalone" in warning


def test_check_peering_asks_for_the_scopes_crd_and_logs_one_line(caplog):
    caplog.set_level(logging.DEBUG, logger="watcher_operator")
    asked = []
    out = cli.check_peering(_resolve(["-A"], {}), lambda name: asked.append(name) or False)
    assert asked == ["clusterkopfpeerings.kopf.dev"] and out.standalone
    records = [r for r in caplog.records if r.name == "watcher_operator"]
    assert [r.levelno for r in records] == [logging.WARNING] and "\n" not in records[0].getMessage()

    caplog.clear()

    def unreachable(name):
        raise ConnectionError("Max retries exceeded\n  [Errno 111] Connection refused")

    out = cli.check_peering(_resolve(["-n", "jcode"], {}), unreachable)
    assert not out.standalone
    records = [r for r in caplog.records if r.name == "watcher_operator"]
    assert len(records) == 1 and "Connection refused" in records[0].getMessage()
    assert "\n" not in records[0].getMessage()


def test_check_peering_asks_nothing_when_standalone_was_chosen():
    def must_not_be_called(name):
        raise AssertionError("asked the API")

    settings = _resolve(["-n", "jcode", "--standalone"], {})
    assert cli.check_peering(settings, must_not_be_called) == settings
