"""Settings declared once: a flag, an environment variable, a default, a parser and one line of doc.

Every ``watcher`` command reads its settings through this module. A component declares each setting once,
as a field of its typed settings object (or, for a command without one, as a ``Setting`` record)::

    @dataclass(frozen=True)
    class Settings:
        port: int = setting(3000, flag="--port", env="WATCHER_PORT", parse=port(1), metavar="PORT",
                            doc="TCP port of the API")

and the rest derives from the declarations:

* ``add_arguments``: the argparse options; their help names the variable and the default, and
  ``epilog`` lists the settings that are variables only;
* ``resolve``: each value from its flag, else its variable, else its default. An empty value (flag or
  variable) means the default. A bad value is a ``SettingsError`` naming the flag or variable that gave it,
  the value, and the setting's other name: the command prints that one line and exits 2;
* ``build``: the typed object;
* ``table``, ``index``, ``secrets_table``: docs/configuration.md (``watcher_core.settings_docs``).

Secrets (``secret=True``) come from ``NAME`` or from the file named by ``NAME_FILE`` (how Kubernetes mounts a
Secret), never both; their flag, if any, names a file too. A secret's value never appears in an error, nor
does a value declared ``redact`` (a database URL holds a password).

A parser takes the text and returns the value, or raises ValueError with a short reason ("must be ...").
Checks across settings (auth off only on loopback, max-wait >= debounce) stay in the components, which
raise ``Resolved.error`` or ``SettingsError`` themselves. Standard library only.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import textwrap
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

_KEY = "watcher_setting"  # dataclass field metadata: the declaration


class _TakesValue:
    def __repr__(self) -> str:
        return "TAKES_VALUE"


TAKES_VALUE: Any = _TakesValue()


class SettingsError(ValueError):
    """A setting has a bad value. ``setting`` is the flag or variable to fix; ``str()`` is one line."""

    def __init__(self, setting: str, message: str):
        super().__init__(f"{setting}: {message}")
        self.setting = setting
        self.message = message


# --- parsers: text in, value out, or ValueError with a short reason -----------------------------------


def text(raw: str) -> str:
    return raw.strip()


def path(raw: str) -> Path:
    return Path(raw.strip())


def whole_number(low: int | None = None, high: int | None = None) -> Callable[[str], int]:
    if low is not None and high is not None:
        rule = f"a whole number between {low} and {high}"
    elif low is not None:
        rule = f"a whole number >= {low}"
    else:
        rule = "a whole number"

    def parse(raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise ValueError(f"must be {rule}") from None
        if (low is not None and value < low) or (high is not None and value > high):
            raise ValueError(f"must be {rule}")
        return value

    return parse


def port(low: int = 0) -> Callable[[str], int]:
    """A TCP port ``low``..65535 (0: the component's "off", where it has one)."""
    check = whole_number(low, 65535)

    def parse(raw: str) -> int:
        try:
            return check(raw)
        except ValueError:
            raise ValueError(f"must be a TCP port {low}-65535") from None

    return parse


def seconds(*, zero: bool) -> Callable[[str], float]:
    """A duration in seconds (fractions allowed, no unit): finite, and > 0 or, with ``zero``, >= 0."""
    rule = f"must be a number of seconds {'>=' if zero else '>'} 0"

    def parse(raw: str) -> float:
        try:
            value = float(raw.strip())
        except ValueError:
            raise ValueError(rule) from None
        if not math.isfinite(value) or value < 0 or (value == 0 and not zero):
            raise ValueError(rule)
        return value

    return parse


_SIZE = re.compile(r"\s*(\d+)\s*([kKmMgG]?)[iI]?[bB]?\s*")
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def byte_size(raw: str) -> int:
    """``1048576``, ``64k``, ``512M``, ``1G`` (binary units, any case; ``KiB``, ``MB`` read the same)."""
    match = _SIZE.fullmatch(raw)
    if not match:
        raise ValueError("must be a size like 65536, 64k, 512M or 1G")
    return int(match.group(1)) * _UNITS[match.group(2).lower()]


def positive_byte_size(raw: str) -> int:
    value = byte_size(raw)
    if value <= 0:
        raise ValueError("must be a positive size like 65536, 64k, 512M or 1G")
    return value


def csv(raw: str) -> tuple[str, ...]:
    """A comma-separated list; blanks around items are ignored."""
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def regex(raw: str) -> str:
    try:
        re.compile(raw)
    except re.error as exc:
        raise ValueError(f"is not a valid regex ({exc})") from None
    return raw


def http_url(raw: str) -> str:
    """``http(s)://host[:port][/path]`` without a query; the trailing slash is dropped."""
    parts = urlsplit(raw.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host, e.g. http://backend:3000")
    try:
        parts.port  # noqa: B018 (raises ValueError on a bad port)
    except ValueError:
        raise ValueError("has an invalid port") from None
    if parts.query or parts.fragment:
        raise ValueError("must not have a query or fragment")
    return raw.strip().rstrip("/")


def min_length(n: int, hint: str = "") -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip()
        if len(value) < n:
            raise ValueError(f"must be at least {n} characters{f' ({hint})' if hint else ''}")
        return value

    return parse


class Choice:
    """One of a few names, any case; the value is the name itself or what ``values`` maps it to. As a flag
    it is checked by argparse (a usage error listing the names)."""

    def __init__(self, values: Mapping[str, Any] | Sequence[str], case: Callable[[str], str] = str.lower):
        self.values: dict[str, Any] = dict(values) if isinstance(values, Mapping) else {v: v for v in values}
        self.case = case

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.values)

    def normalize(self, raw: str) -> str:
        return self.case(raw.strip())

    def name_of(self, value: Any) -> str | None:
        return next((name for name, v in self.values.items() if v == value), None)

    def __call__(self, raw: str) -> Any:
        name = self.normalize(raw)
        if name not in self.values:
            raise ValueError(f"must be one of {', '.join(self.names)} (any case)")
        return self.values[name]


def one_of(values: Mapping[str, Any] | Sequence[str], case: Callable[[str], str] = str.lower) -> Choice:
    return Choice(values, case)


boolean = one_of(
    {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}
)


# --- the declaration ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    """One setting. ``name`` is the attribute it fills (the field's name when declared with ``setting``).

    ``flag_value``: the flag takes no argument and gives this value (``--no-migrate`` gives False).
    ``repeatable``: the flag may be given several times; ``parse`` returns a tuple and the values add up.
    ``exclusive``: settings with the same key are mutually exclusive flags (required if one is ``required``).
    ``default_doc``: how help and docs show the default, where the value itself would not say it.
    """

    name: str
    doc: str
    flag: str | None = None
    env: str | None = None
    default: Any = None
    parse: Callable[[str], Any] = text
    metavar: str | None = None
    short: str | None = None
    flag_value: Any = TAKES_VALUE
    repeatable: bool = False
    required: bool = False
    exclusive: str | None = None
    secret: bool = False
    redact: bool = False
    default_doc: str | None = None

    def __post_init__(self) -> None:
        if not (self.flag or self.env):
            raise ValueError(f"setting {self.name!r} has neither a flag nor a variable")
        if self.flag is not None and not self.flag.startswith("--"):
            raise ValueError(f"setting {self.name!r}: the flag {self.flag!r} must start with --")
        if self.secret:
            object.__setattr__(self, "redact", True)

    @property
    def takes_value(self) -> bool:
        return self.flag_value is TAKES_VALUE

    @property
    def file_env(self) -> str | None:
        return f"{self.env}_FILE" if self.secret and self.env else None

    def error(self, origin: str | None, reason: str, raw: str | None = None) -> SettingsError:
        """The one-line error: the name that gave the value (else the first name), why, the value unless
        redacted, and the setting's other name."""
        name = origin or self.flag or self.env or self.name
        message = reason
        if raw is not None and not self.redact:
            message += f", got {name}={raw!r}"
        others = []
        if self.flag and origin != self.flag:
            others.append(f"flag {self.flag}")
        if self.env and origin not in (self.env, self.file_env):
            others.append(f"variable {self.env}")
        return SettingsError(name, message + (f" ({', '.join(others)})" if others else ""))


def setting(default: Any = None, **declaration: Any) -> Any:
    """A dataclass field that is a setting; the keywords are ``Setting``'s."""
    spec = Setting(name="", default=default, **declaration)
    return field(default=default, metadata={_KEY: spec})


@dataclass(frozen=True)
class _Derived:
    inputs: tuple[Setting, ...]


def derived(*inputs: Setting, default: Any = MISSING, default_factory: Any = MISSING) -> Any:
    """A dataclass field the component computes from ``inputs`` (passed to ``build``); the inputs are
    declared here, in the field's place, so help and docs list them there."""
    return field(default=default, default_factory=default_factory, metadata={_KEY: _Derived(inputs)})


@dataclass(frozen=True)
class _Group:
    cls: type
    only: tuple[str, ...] | None


def group(cls: type, only: Sequence[str] | None = None) -> Any:
    """A dataclass field holding another settings dataclass (``only``: the subset of its settings used)."""
    return field(default_factory=cls, metadata={_KEY: _Group(cls, tuple(only) if only is not None else None)})


def settings_of(cls: type, **defaults: Any) -> tuple[Setting, ...]:
    """The settings a dataclass declares, in field order (groups and derived inputs in their place);
    ``defaults`` replaces some defaults (an agent's own state directory)."""
    out: list[Setting] = []
    for f in fields(cls):
        meta = f.metadata.get(_KEY)
        if isinstance(meta, Setting):
            out.append(replace(meta, name=f.name))
        elif isinstance(meta, _Group):
            out += [s for s in settings_of(meta.cls) if meta.only is None or s.name in meta.only]
        elif isinstance(meta, _Derived):
            out += meta.inputs
    names = [s.name for s in out]
    if len(set(names)) != len(names) or not set(defaults) <= set(names):
        raise ValueError(f"{cls.__name__}: settings named twice, or defaults for no setting: {names}, {set(defaults)}")
    return tuple(replace(s, default=defaults[s.name]) if s.name in defaults else s for s in out)


def pick(settings: Iterable[Setting], name: str, **changes: Any) -> Setting:
    """Setting ``name`` of ``settings`` as another command that reads the same flag and variable declares it:
    the same names, default and parser; ``changes`` for its own doc line, say."""
    return replace(next(s for s in settings if s.name == name), **changes)


def build(cls: type, values: Mapping[str, Any], only: Sequence[str] | None = None, **computed: Any) -> Any:
    """``cls`` from resolved values; ``computed`` gives the derived fields (and any other field it names).
    ``only``: the settings to take from ``values`` (the others keep their defaults)."""
    kwargs: dict[str, Any] = {}
    missing = []
    for f in fields(cls):
        meta = f.metadata.get(_KEY)
        if f.name in computed or (only is not None and f.name not in only):
            continue
        if isinstance(meta, Setting):
            kwargs[f.name] = values[f.name]
        elif isinstance(meta, _Group):
            kwargs[f.name] = build(meta.cls, values, meta.only)
        elif isinstance(meta, _Derived):
            missing.append(f.name)
    if missing:
        raise TypeError(f"{cls.__name__}: derived fields not given: {', '.join(missing)}")
    return cls(**kwargs, **computed)


@dataclass(frozen=True)
class Subcommand:
    """A subcommand (``name`` after ``watcher``: "db backup") with its own settings, for argparse and docs."""

    name: str
    doc: str
    settings: tuple[Setting, ...] = ()


# --- resolution ---------------------------------------------------------------------------------------


class Resolved(Mapping[str, Any]):
    """The resolved values by setting name (also as attributes), and where each came from."""

    def __init__(self, settings: Sequence[Setting], values: dict[str, Any], origins: dict[str, str | None]):
        self._settings = {s.name: s for s in settings}
        self._values = values
        self._origins = origins

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["_values"][name]
        except KeyError:
            raise AttributeError(name) from None

    def origin(self, name: str) -> str | None:
        """The flag or variable that gave the value; None when it is the default."""
        return self._origins[name]

    def error(self, name: str, message: str) -> SettingsError:
        """A check across settings failed for ``name``: the error names where its value came from."""
        return self._settings[name].error(self._origins[name], message)


def resolve(
    settings: Sequence[Setting], args: argparse.Namespace | None = None, env: Mapping[str, str] | None = None
) -> Resolved:
    """Every setting's value: flag, else variable, else default. The first bad one raises SettingsError."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    origins: dict[str, str | None] = {}
    for s in settings:
        given = getattr(args, s.name, None) if args is not None and s.flag else None
        values[s.name], origins[s.name] = _secret(s, given, env) if s.secret else _value(s, given, env)
        if s.required and values[s.name] is None:  # argparse enforces a required flag without a variable
            names = [n for n in (s.flag, *env_names(s)) if n]
            raise SettingsError(names[0], f"is not set (set {' or '.join(names)})")
    return Resolved(settings, values, origins)


def _parse(s: Setting, raw: str, origin: str) -> Any:
    try:
        return s.parse(raw)
    except ValueError as exc:
        raise s.error(origin, str(exc), raw) from None


def _value(s: Setting, given: Any, env: Mapping[str, str]) -> tuple[Any, str | None]:
    if given is not None:
        if not s.takes_value:
            return given, s.flag
        if s.repeatable:
            items = [item for raw in given for item in _parse(s, raw, str(s.flag))]
            return tuple(items) if items else s.default, s.flag
        if not given.strip():
            return s.default, s.flag
        return _parse(s, given, str(s.flag)), s.flag
    raw = env.get(s.env) if s.env else None
    if raw is not None and raw.strip():
        return _parse(s, raw, str(s.env)), s.env
    return s.default, None


def _secret(s: Setting, given: str | None, env: Mapping[str, str]) -> tuple[Any, str | None]:
    noun = (s.env or s.name).rsplit("_", 1)[-1].lower()  # WATCHER_INGEST_TOKEN -> token
    if given and given.strip():
        return _parse(s, _read(s, given.strip(), str(s.flag), noun), str(s.flag)), s.flag
    value = (env.get(s.env) or "").strip() if s.env else ""
    file_name = (env.get(s.file_env) or "").strip() if s.file_env else ""
    if value and file_name:
        raise SettingsError(str(s.env), f"set either {s.env} or {s.file_env}, not both")
    if file_name:
        return _parse(s, _read(s, file_name, str(s.file_env), noun), str(s.file_env)), s.file_env
    if value:
        return _parse(s, value, str(s.env)), s.env
    return s.default, None


def _read(s: Setting, file_name: str, origin: str, noun: str) -> str:
    try:
        value = Path(file_name).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise s.error(origin, f"cannot read the {noun} file {file_name}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise s.error(origin, f"the {noun} file {file_name} is not UTF-8 text") from None
    if not value:
        raise s.error(origin, f"the {noun} file {file_name} is empty")
    return value


# --- argparse -----------------------------------------------------------------------------------------


def _shown(s: Setting, value: Any) -> str | None:
    """A value as help and docs show it; None: nothing to show."""
    if value is None or (isinstance(value, str | tuple | list) and not value):
        return None
    if isinstance(s.parse, Choice) and (name := s.parse.name_of(value)) is not None:
        return name
    if isinstance(value, tuple | list):
        return ",".join(str(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _plain(markdown: str) -> str:
    """A doc line for the terminal: without markdown's backticks."""
    return markdown.replace("`", "")


def default_text(s: Setting) -> str | None:
    """The default in plain words for ``--help`` (None: none to show)."""
    if s.default_doc is not None:
        return _plain(s.default_doc)
    if s.required or not s.takes_value:
        return None
    return _shown(s, s.default)


def help_text(s: Setting) -> str:
    bits = []
    if s.env:
        bits.append(f"{s.env} or {s.file_env}" if s.secret else s.env)
    shown = default_text(s)
    if shown is not None:
        bits.append(f"default {shown}")
    return _plain(s.doc + (f" [{', '.join(bits)}]" if bits else "")).replace("%", "%%")


def add_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup, settings: Iterable[Setting]) -> None:
    """The flags of ``settings`` (variables only are left out: ``epilog`` lists them). The parser reads no
    environment and converts nothing but the names of a ``Choice``: ``resolve`` does the rest, so
    ``--help`` works whatever the environment holds."""
    settings = list(settings)
    exclusive: dict[str, Any] = {}
    for s in settings:
        if s.flag is None:
            continue
        kwargs: dict[str, Any] = {"dest": s.name, "default": None, "help": help_text(s)}
        if not s.takes_value:
            kwargs.update(action="store_const", const=s.flag_value)
        else:
            if s.metavar or s.secret:
                kwargs["metavar"] = s.metavar or "FILE"
            if isinstance(s.parse, Choice):
                kwargs.update(type=s.parse.normalize, choices=s.parse.names)
            if s.repeatable:
                kwargs["action"] = "append"
        target: Any = parser
        if s.exclusive:
            if s.exclusive not in exclusive:
                required = any(o.required for o in settings if o.exclusive == s.exclusive)
                exclusive[s.exclusive] = parser.add_mutually_exclusive_group(required=required)
            target = exclusive[s.exclusive]
        elif s.required and not s.env:
            kwargs["required"] = True
        target.add_argument(*([s.short] if s.short else []), s.flag, **kwargs)


def add_subcommand(subparsers: Any, sub: Subcommand, *shared: Setting, **parser_options: Any) -> Any:
    """The subparser of ``sub`` (named by its last word) with its settings and ``shared``."""
    help_line = _plain(sub.doc).replace("%", "%%")
    parser = subparsers.add_parser(sub.name.split()[-1], help=help_line, **parser_options)
    add_arguments(parser, (*sub.settings, *shared))
    return parser


def epilog(settings: Iterable[Setting], note: str = "") -> str:
    """For a parser with RawDescriptionHelpFormatter: the settings that are variables only, and the rules."""
    lines = []
    only_env = [s for s in settings if s.env and not s.flag]
    if only_env:
        lines.append("Environment variables without a flag:")
        for s in only_env:
            shown = default_text(s)
            item = f"{s.env}{f' or {s.file_env}' if s.secret else ''}: {_plain(s.doc)}" + (
                f" [default {shown}]" if shown else ""
            )
            lines += textwrap.wrap(item, 100, initial_indent="  ", subsequent_indent="      ", break_on_hyphens=False)
        lines.append("")
    rules = (
        "A flag wins over its variable, the variable over the default; an empty value means the default. "
        "A bad value stops the start with one line naming it (exit 2). " + note + "Every setting: "
        "docs/configuration.md."
    )
    lines += textwrap.wrap(rules, 100, break_on_hyphens=False)
    return "\n".join(lines)


def fill(paragraph: str) -> str:
    """A description paragraph wrapped for RawDescriptionHelpFormatter."""
    return textwrap.fill(" ".join(paragraph.split()), 100, break_on_hyphens=False)


# --- docs/configuration.md ----------------------------------------------------------------------------

TABLE_HEAD = "| Flag | Environment variable | Default | Meaning |\n|---|---|---|---|"


def _cell(markdown: str) -> str:
    return markdown.replace("|", "\\|")


def _flag_cell(s: Setting) -> str:
    if s.flag is None:
        return "–"
    metavar = f" {s.metavar or ('FILE' if s.secret else s.name.upper())}" if s.takes_value else ""
    cell = ", ".join(f"`{name}{metavar}`" for name in (s.short, s.flag) if name)
    return cell + (" (repeatable)" if s.repeatable else "")


def env_names(s: Setting) -> tuple[str, ...]:
    return tuple(n for n in (s.env, s.file_env) if n)


def _default_cell(s: Setting) -> str:
    if s.default_doc is not None:
        return s.default_doc
    if s.required:
        return "required"
    if not s.takes_value:
        return "off"
    shown = _shown(s, s.default)
    return f"`{shown}`" if shown is not None else "–"


def row(s: Setting) -> str:
    env = ", ".join(f"`{n}`" for n in env_names(s)) or "–"
    return f"| {_flag_cell(s)} | {env} | {_cell(_default_cell(s))} | {_cell(s.doc)} |"


def table(entries: Iterable[Setting | Subcommand]) -> str:
    """A section's table: a row per setting; a subcommand's row is followed by its settings' rows."""
    rows = [TABLE_HEAD]
    for entry in entries:
        if isinstance(entry, Subcommand):
            rows.append(f"| `watcher {entry.name}` | – | – | {_cell(entry.doc)} |")
            rows += [row(s) for s in entry.settings]
        else:
            rows.append(row(entry))
    return "\n".join(rows)


def flatten(entries: Iterable[Setting | Subcommand]) -> list[Setting]:
    out: list[Setting] = []
    for entry in entries:
        out += entry.settings if isinstance(entry, Subcommand) else [entry]
    return out


def index(sections: Mapping[str, Iterable[Setting | Subcommand]]) -> str:
    """Every variable, and the sections (by their link) that read it."""
    readers: dict[str, list[str]] = {}
    for link, entries in sections.items():
        for s in flatten(entries):
            for name in env_names(s):
                if link not in readers.setdefault(name, []):
                    readers[name].append(link)
    lines = ["| Variable | Read by |", "|---|---|"]
    lines += [f"| `{name}` | {', '.join(readers[name])} |" for name in sorted(readers)]
    return "\n".join(lines)


def secrets_table(sections: Mapping[str, Iterable[Setting | Subcommand]]) -> str:
    """Every secret: its value variable, its file variable (and flag), who reads it."""
    found: dict[tuple[str, str], list[str]] = {}
    for link, entries in sections.items():
        for s in flatten(entries):
            if s.secret and s.env:
                files = f"`{s.file_env}`" + (f" or `{s.flag} FILE`" if s.flag else "")
                readers = found.setdefault((s.env, files), [])
                if link not in readers:
                    readers.append(link)
    lines = ["| Value variable | File variable (or flag) | Read by |", "|---|---|---|"]
    lines += [f"| `{env}` | {files} | {', '.join(found[env, files])} |" for env, files in sorted(found)]
    return "\n".join(lines)
