"""The one settings machinery: a setting declared once gives its flag, its resolution (flag, variable,
default), its one-line error, its help and its row in docs/configuration.md."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from watcher_core import settings_spec as spec
from watcher_core.settings_spec import Setting, setting

PORT = Setting("port", flag="--port", env="X_PORT", default=3000, parse=spec.port(1), metavar="PORT", doc="the port")
MODE = Setting("mode", flag="--mode", env="X_MODE", default="auto", parse=spec.one_of(("auto", "off")), doc="mode")
TOKEN = Setting("token", flag="--token-file", env="X_TOKEN", secret=True, parse=spec.min_length(4), doc="a token")
URL = Setting("url", env="X_URL", default="sqlite:///x", redact=True, parse=lambda raw: raw, doc="holds a password")


def resolve(settings, argv=(), env=None):
    parser = argparse.ArgumentParser()
    spec.add_arguments(parser, settings)
    return spec.resolve(settings, parser.parse_args(list(argv)), env or {})


def test_flag_wins_over_variable_wins_over_default_and_empty_means_the_default():
    assert resolve([PORT]).port == 3000 and resolve([PORT]).origin("port") is None
    assert resolve([PORT], env={"X_PORT": "8080"}).port == 8080
    values = resolve([PORT], ["--port", "9090"], {"X_PORT": "8080"})
    assert values["port"] == 9090 and values.origin("port") == "--port"
    assert resolve([PORT], env={"X_PORT": "  "}).port == 3000
    assert resolve([PORT], ["--port", ""], {"X_PORT": "8080"}).port == 3000  # an empty flag still wins


def test_a_bad_value_is_one_line_naming_where_it_came_from_the_value_and_the_other_name():
    with pytest.raises(spec.SettingsError) as err:
        resolve([PORT], env={"X_PORT": "http"})
    assert err.value.setting == "X_PORT"
    assert str(err.value) == "X_PORT: must be a TCP port 1-65535, got X_PORT='http' (flag --port)"
    with pytest.raises(spec.SettingsError) as err:
        resolve([PORT], ["--port", "0"], {"X_PORT": "1"})
    assert str(err.value) == "--port: must be a TCP port 1-65535, got --port='0' (variable X_PORT)"


def test_a_redacted_or_secret_value_never_appears_in_an_error(tmp_path):
    bad_url = Setting("url", env="X_URL", redact=True, parse=spec.one_of(("a",)), doc="d")
    with pytest.raises(spec.SettingsError) as err:
        resolve([bad_url], env={"X_URL": "postgresql://u:hunter2@db/w"})
    assert "hunter2" not in str(err.value)
    with pytest.raises(spec.SettingsError) as err:
        resolve([TOKEN], env={"X_TOKEN": "abc"})
    assert "abc" not in str(err.value) and str(err.value).startswith("X_TOKEN: must be at least 4 characters")


def test_a_secret_comes_from_its_variable_or_its_file_never_both_and_the_flag_file_wins(tmp_path):
    (tmp_path / "t").write_text(" from-file\n")
    assert resolve([TOKEN], env={"X_TOKEN": " value "}).token == "value"
    values = resolve([TOKEN], env={"X_TOKEN_FILE": str(tmp_path / "t")})
    assert values.token == "from-file" and values.origin("token") == "X_TOKEN_FILE"
    with pytest.raises(spec.SettingsError, match="set either X_TOKEN or X_TOKEN_FILE, not both"):
        resolve([TOKEN], env={"X_TOKEN": "value", "X_TOKEN_FILE": str(tmp_path / "t")})
    both = {"X_TOKEN": "value", "X_TOKEN_FILE": "/nowhere"}
    assert resolve([TOKEN], ["--token-file", str(tmp_path / "t")], both).token == "from-file"
    with pytest.raises(spec.SettingsError) as err:
        resolve([TOKEN], env={"X_TOKEN_FILE": str(tmp_path / "missing")})
    assert err.value.setting == "X_TOKEN_FILE" and "cannot read the token file" in str(err.value)
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(spec.SettingsError, match=r"^--token-file: the token file .* is empty \(variable X_TOKEN\)$"):
        resolve([TOKEN], ["--token-file", str(tmp_path / "empty")])
    assert resolve([TOKEN]).token is None


def test_choices_are_checked_by_argparse_as_a_flag_and_read_in_any_case_from_the_variable(capsys):
    assert resolve([MODE], env={"X_MODE": " OFF "}).mode == "off"
    assert resolve([MODE], ["--mode", "Off"]).mode == "off"
    with pytest.raises(SystemExit) as exc:
        resolve([MODE], ["--mode", "sometimes"])
    assert exc.value.code == 2 and "--mode" in capsys.readouterr().err
    with pytest.raises(spec.SettingsError, match=r"must be one of auto, off \(any case\), got X_MODE='x'"):
        resolve([MODE], env={"X_MODE": "x"})
    on_off = Setting("f", flag="--f", default=True, parse=spec.one_of({"on": True, "off": False}), doc="d")
    assert resolve([on_off], ["--f", "off"]).f is False and spec.row(on_off).split(" | ")[2] == "`on`"


def test_switches_repeatable_flags_and_exclusive_groups():
    switch = Setting("all", flag="--all", flag_value=True, default=False, exclusive="which", required=True, doc="d")
    many = Setting(
        "ids", flag="--id", env="X_IDS", parse=spec.csv, repeatable=True, exclusive="which", default=(), doc="d"
    )
    assert resolve([switch, many], ["--all"]).all is True
    assert resolve([switch, many], ["--id", "a", "--id", "b,c"]).ids == ("a", "b", "c")
    for argv in ([], ["--all", "--id", "a"]):  # one of the group is required, and only one
        with pytest.raises(SystemExit):
            resolve([switch, many], argv)


def test_a_required_variable_says_how_to_set_it():
    key = Setting("key", env="X_KEY", secret=True, required=True, doc="d")
    with pytest.raises(spec.SettingsError, match="X_KEY: is not set \\(set X_KEY or X_KEY_FILE\\)"):
        resolve([key])
    root = Setting("root", flag="--root", env="X_ROOT", parse=spec.path, required=True, doc="d")
    assert resolve([root], env={"X_ROOT": "/r"}).root == Path("/r")  # the variable will do: not argparse's to refuse
    with pytest.raises(spec.SettingsError, match=r"^--root: is not set \(set --root or X_ROOT\)$"):
        resolve([root])


@pytest.mark.parametrize(
    "parse, raw, value",
    [
        (spec.seconds(zero=True), "0", 0.0),
        (spec.seconds(zero=False), "0.25", 0.25),
        (spec.whole_number(1, 10), " 10 ", 10),
        (spec.byte_size, "64k", 65536),
        (spec.byte_size, "1GiB", 1024**3),
        (spec.csv, " a, ,b ", ("a", "b")),
        (spec.http_url, "http://backend:3000/", "http://backend:3000"),
        (spec.boolean, "Yes", True),
        (spec.regex, r"hw\d+", r"hw\d+"),
    ],
)
def test_parsers_read_good_values(parse, raw, value):
    assert parse(raw) == value


@pytest.mark.parametrize(
    "parse, raw",
    [
        (spec.seconds(zero=True), "-1"),
        (spec.seconds(zero=True), "nan"),
        (spec.seconds(zero=True), "1e999"),
        (spec.seconds(zero=False), "0"),
        (spec.seconds(zero=False), "10s"),
        (spec.whole_number(1, 10), "11"),
        (spec.whole_number(), "1.5"),
        (spec.port(), "65536"),
        (spec.byte_size, "1.5M"),
        (spec.positive_byte_size, "0"),
        (spec.http_url, "ftp://x"),
        (spec.http_url, "http://x:99999"),
        (spec.http_url, "http://x/?q=1"),
        (spec.boolean, "maybe"),
        (spec.regex, "hw("),
    ],
)
def test_parsers_refuse_bad_values_with_a_reason(parse, raw):
    with pytest.raises(ValueError) as err:
        parse(raw)
    assert str(err.value) and "\n" not in str(err.value)


@dataclass(frozen=True)
class Inner:
    a: int = setting(1, flag="--a", env="X_A", parse=spec.whole_number(), doc="a")
    b: int = setting(2, flag="--b", env="X_B", parse=spec.whole_number(), doc="b")


SECRET = Setting("secret", env="X_SECRET", secret=True, doc="s")


@dataclass(frozen=True)
class Outer:
    where: Path = setting(Path("/x"), flag="--where", env="X_WHERE", parse=spec.path, doc="where")
    inner: Inner = spec.group(Inner, only=("b",))
    secrets: dict = spec.derived(SECRET, default_factory=dict)
    note: str = field(default="")


def test_a_dataclass_declares_its_settings_in_field_order_and_is_built_from_them():
    assert [s.name for s in spec.settings_of(Outer)] == ["where", "b", "secret"]
    assert spec.settings_of(Outer, where=Path("/y"))[0].default == Path("/y")
    settings = spec.settings_of(Outer)
    values = resolve(settings, ["--b", "5"], {"X_A": "9", "X_SECRET": "s3"})
    built = spec.build(Outer, values, secrets={"s": values.secret})
    assert built == Outer(where=Path("/x"), inner=Inner(a=1, b=5), secrets={"s": "s3"})  # a: not procmon's
    with pytest.raises(TypeError, match="derived fields not given: secrets"):
        spec.build(Outer, values)
    with pytest.raises(ValueError, match="defaults for no setting"):
        spec.settings_of(Outer, nothing=1)


def test_help_names_the_variable_and_the_default_and_reads_no_environment(monkeypatch, capsys):
    monkeypatch.setenv("X_PORT", "not a port")
    parser = argparse.ArgumentParser(prog="x", epilog=spec.epilog([PORT, URL]))
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    spec.add_arguments(parser, [PORT, URL])
    with pytest.raises(SystemExit) as exc:
        parser.parse_args(["--help"])
    out = capsys.readouterr().out
    assert exc.value.code == 0 and "the port [X_PORT, default 3000]" in " ".join(out.split())
    assert "X_URL: holds a password [default sqlite:///x]" in out and "docs/configuration.md" in out
    assert parser.parse_args([]).port is None  # the parser converts nothing: resolve does


def test_docs_rows_subcommands_index_and_secrets():
    assert spec.row(PORT) == "| `--port PORT` | `X_PORT` | `3000` | the port |"
    assert spec.row(TOKEN) == "| `--token-file FILE` | `X_TOKEN`, `X_TOKEN_FILE` | – | a token |"
    piped = Setting("p", env="X_P", default_doc="`a|b`", doc="x | y")
    assert spec.row(piped) == "| – | `X_P` | `a\\|b` | x \\| y |"
    sub = spec.Subcommand("tool run", "run it", (PORT,))
    table = spec.table([sub, MODE]).splitlines()
    assert table[2] == "| `watcher tool run` | – | – | run it |" and table[3] == spec.row(PORT)
    index = spec.index({"[a](#a)": [PORT, TOKEN], "[b](#b)": [sub]})
    assert "| `X_PORT` | [a](#a), [b](#b) |" in index and "| `X_TOKEN_FILE` | [a](#a) |" in index
    assert "| `X_TOKEN` | `X_TOKEN_FILE` or `--token-file FILE` | [a](#a) |" in spec.secrets_table({"[a](#a)": [TOKEN]})
