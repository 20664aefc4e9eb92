"""docs/configuration.md is the one configuration reference; these tests keep it from going stale.

Its tables must be what the settings' declarations generate (``make generate``). Every long flag a
command's parser offers must be documented in that command's section, and every ``WATCHER_*`` environment
variable the code reads must be documented somewhere in the page. A new flag or variable without its line
in the reference fails here, in seconds, with the names to add.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import re
from pathlib import Path

import pytest

from watcher_core import cli, settings_docs

ROOT = Path(__file__).resolve().parents[3]
DOC = ROOT / "docs" / "configuration.md"
CODE_DIRS = ("core", "backend", "agents", "operator", "local")

# command line -> the headings (of docs/configuration.md) whose sections must document its flags
COMMAND_SECTIONS: dict[tuple[str, ...], tuple[str, ...]] = {
    ("backend",): ("`watcher backend`",),
    ("filemon",): ("Shared agent settings (filemon and procmon)", "`watcher filemon`"),
    ("procmon",): ("Shared agent settings (filemon and procmon)", "`watcher procmon`"),
    ("operator",): ("`watcher operator`",),
    ("local",): ("`watcher local`",),
    ("demo",): ("`watcher demo`",),
    ("status",): ("`watcher status`",),
    ("export", "progsnap2"): ("`watcher export progsnap2`",),
    ("import", "legacy"): ("`watcher import legacy`",),
    ("notebook", "token"): ("`watcher notebook`", "The notebook hook"),
    ("db", "backup"): ("`watcher db`",),
    ("db", "restore"): ("`watcher db`",),
    ("tokens", "create"): ("`watcher tokens`",),
    ("tokens", "list"): ("`watcher tokens`",),
    ("tokens", "revoke"): ("`watcher tokens`",),
    ("outbox", "dead-letters", "list"): ("`watcher outbox`",),
    ("outbox", "dead-letters", "requeue"): ("`watcher outbox`",),
    ("snapshots", "migrate"): ("`watcher snapshots`",),
}

_ENV_LITERAL = re.compile(r"""["'](WATCHER_[A-Z0-9_]+)["']""")


def _sections(text: str) -> dict[str, str]:
    """``## heading`` -> the text up to the next ``## `` heading (``###`` subsections stay inside)."""
    parts = re.split(r"^## +(.+?)\s*$", text, flags=re.M)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def _mentions(text: str, name: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text) is not None


def _parser_of(command: tuple[str, ...]) -> argparse.ArgumentParser:
    """The parser ``watcher <command>`` uses: the module's ``build_parser``, descending into subcommands."""
    module = importlib.import_module(cli.COMMANDS[command[0]][0])
    parser = module.build_parser()
    for sub in command[1:]:
        actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        parser = actions[0].choices[sub]
    return parser


def _long_flags(parser: argparse.ArgumentParser) -> set[str]:
    return {s for a in parser._actions for s in a.option_strings if s.startswith("--") and s != "--help"}


def _help_text(command: tuple[str, ...]) -> str:
    """``watcher <command> --help`` through the real dispatcher: argparse exits (SystemExit), or the
    command catches that and returns its status (``watcher export``)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            status = cli.main([*command, "--help"])
        except SystemExit as exc:
            status = exc.code
    assert status in (0, None), f"watcher {' '.join(command)} --help exited {status}"
    return out.getvalue()


def code_env_vars() -> set[str]:
    found: set[str] = set()
    for folder in CODE_DIRS:
        for path in (ROOT / folder).rglob("*.py"):
            found.update(_ENV_LITERAL.findall(path.read_text(encoding="utf-8")))
    # The backend builds its token variables from the scope names (f"WATCHER_{SCOPE}_TOKEN" and "..._FILE").
    from watcher_backend.settings import SCOPES

    for scope in SCOPES:
        found |= {f"WATCHER_{scope.upper()}_TOKEN", f"WATCHER_{scope.upper()}_TOKEN_FILE"}
    return found


@pytest.fixture(scope="module")
def doc() -> str:
    return DOC.read_text(encoding="utf-8")


def test_every_command_of_the_dispatcher_has_a_section(doc):
    sections = _sections(doc)
    commands = {c[0] for c in COMMAND_SECTIONS}
    assert commands == set(cli.COMMANDS), "add the new command to COMMAND_SECTIONS and to docs/configuration.md"
    for headings in COMMAND_SECTIONS.values():
        for heading in headings:
            assert heading in sections, f"docs/configuration.md has no section '## {heading}'"


@pytest.mark.parametrize("command", list(COMMAND_SECTIONS), ids=" ".join)
def test_every_long_flag_is_documented_in_its_section(doc, command):
    help_text = _help_text(command)
    flags = _long_flags(_parser_of(command))
    assert flags, f"watcher {' '.join(command)} offers no flags? the parser lookup is broken"
    # The parser we inspect is the one `watcher <command> --help` prints.
    assert all(_mentions(help_text, f) for f in flags), help_text

    sections = _sections(doc)
    text = "\n".join(sections.get(h, "") for h in COMMAND_SECTIONS[command])
    missing = sorted(f for f in flags if not _mentions(text, f))
    assert not missing, (
        f"docs/configuration.md does not document these flags of 'watcher {' '.join(command)}' "
        f"in {COMMAND_SECTIONS[command]}: {missing}"
    )


def test_every_environment_variable_read_by_the_code_is_documented(doc):
    variables = code_env_vars()
    # Guard against a broken scan passing vacuously: these are read by the backend and the agents.
    assert {"WATCHER_DATABASE_URL", "WATCHER_INGEST_TOKEN_FILE", "WATCHER_PROCMON_MODE"} <= variables
    missing = sorted(v for v in variables if not _mentions(doc, v))
    assert not missing, f"docs/configuration.md does not document these environment variables: {missing}"


def test_the_tables_are_what_the_declarations_generate(doc):
    assert settings_docs.render(doc) == doc, "docs/configuration.md is stale: run make generate"


def test_the_generated_check_catches_a_stale_table(doc):
    stale = doc.replace("| `--port PORT` | `WATCHER_PORT` |", "| `--port PORT` | `WATCHER_PORT_X` |", 1)
    assert stale != doc and settings_docs.render(stale) == doc
    with pytest.raises(ValueError, match="no block for: backend"):
        settings_docs.render(doc.replace("<!-- settings: backend -->", "<!-- removed -->"))


def test_the_check_catches_an_undocumented_name(doc):
    assert not _mentions(doc, "WATCHER_NOT_A_SETTING")
    assert not _mentions(doc, "--not-a-flag")
    # '--port' must not count as documented just because '--procmon-metrics-port' or '--port-x' is.
    assert not _mentions("`--procmon-metrics-port`, --port-x", "--port")


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_links_into_the_reference_point_at_its_sections(doc):
    anchors = {_slug(h) for h in re.findall(r"^#{2,3} +(.+?)\s*$", doc, flags=re.M)}
    links = re.findall(r"\]\((#[\w-]+)\)", doc)
    for page in (ROOT / "docs").glob("*.md"):
        links += [f"#{a}" for a in re.findall(r"\]\(configuration\.md#([\w-]+)\)", page.read_text(encoding="utf-8"))]
    assert len(links) > 10
    broken = sorted({link for link in links if link[1:] not in anchors})
    assert not broken, f"links to missing sections of docs/configuration.md: {broken}"
