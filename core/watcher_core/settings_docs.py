"""docs/configuration.md's tables, generated from the settings' declarations (watcher_core.settings_spec).

The page's prose is written by hand; each table sits between two marker lines::

    <!-- settings: backend -->
    | Flag | Environment variable | Default | Meaning |
    ...
    <!-- /settings -->

``python -m watcher_core.settings_docs docs/configuration.md`` (``make generate``) rewrites them;
``--check`` exits 1 when the page differs from what the declarations give (a test does the same).
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

from watcher_core import settings_spec

# marker -> (the module attribute holding the section's settings, how the index links to the section). The
# components are imported by name, as the dispatcher does: core imports none of them.
SECTIONS: dict[str, tuple[str, str]] = {
    "backend": ("watcher_backend.settings:SETTINGS", "[backend](#watcher-backend)"),
    "agents": ("watcher_agents.config:TABLE", "[agents](#shared-agent-settings-filemon-and-procmon)"),
    "filemon": ("watcher_agents.filemon.cli:SETTINGS", "[filemon](#watcher-filemon)"),
    "procmon": ("watcher_agents.procmon.cli:SETTINGS", "[procmon](#watcher-procmon)"),
    "operator": ("watcher_operator.cli:SETTINGS", "[operator](#watcher-operator)"),
    "local": ("watcher_local.stack:OPTIONS", "[local](#watcher-local)"),
    "demo": ("watcher_local.demo:OPTIONS", "[demo](#watcher-demo)"),
    "status": ("watcher_local.status:OPTIONS", "[status](#watcher-status)"),
    "export": ("watcher_backend.export.cli:OPTIONS", "[export](#watcher-export-progsnap2)"),
    "import": ("watcher_backend.legacy.importer:OPTIONS", "[import](#watcher-import-legacy)"),
    "db": ("watcher_backend.db_cli:TABLE", "[db](#watcher-db)"),
    "tokens": ("watcher_backend.tokens_cli:TABLE", "[tokens](#watcher-tokens)"),
    "outbox": ("watcher_agents.delivery.outbox_cli:TABLE", "[outbox](#watcher-outbox)"),
    "snapshots": ("watcher_core.snapshots_cli:TABLE", "[snapshots](#watcher-snapshots)"),
    "notebook": ("watcher_core.notebook_cli:TABLE", "[notebook](#watcher-notebook)"),
    "notebook-hook": ("watcher_core.notebook_cli:HOOK_TABLE", "[the notebook hook](#the-notebook-hook)"),
}
INDEX, SECRETS = "index", "secrets"
_BLOCK = re.compile(r"^(<!-- settings: ([\w-]+) -->\n)(.*?)(^<!-- /settings -->$)", re.M | re.S)


def entries(section: str) -> Iterable[settings_spec.Setting | settings_spec.Subcommand]:
    module, attribute = SECTIONS[section][0].split(":")
    return getattr(importlib.import_module(module), attribute)


def block(name: str) -> str:
    """The generated text of the block ``name``."""
    if name in SECTIONS:
        return settings_spec.table(entries(name))
    by_link = {link: entries(section) for section, (_, link) in SECTIONS.items()}
    if name == INDEX:
        return settings_spec.index(by_link)
    if name == SECRETS:
        return settings_spec.secrets_table(by_link)
    raise ValueError(f"unknown settings block {name!r}; known: {', '.join([*SECTIONS, INDEX, SECRETS])}")


def render(page: str) -> str:
    """``page`` with every block regenerated; every section must have its block."""
    found = [m.group(2) for m in _BLOCK.finditer(page)]
    missing = sorted((set(SECTIONS) | {INDEX, SECRETS}) - set(found))
    if missing:
        raise ValueError(f"the page has no block for: {', '.join(missing)}")
    return _BLOCK.sub(lambda m: f"{m.group(1)}{block(m.group(2))}\n{m.group(4)}", page)


def regenerate(
    render_page: Callable[[str], str], prog: str, description: str, page: Path, argv: list[str] | None = None
) -> int:
    """The command line of a page's generator (this one, the CRD's field table): rewrite ``page`` with
    ``render_page``, or with ``--check`` change nothing and exit 1 if it is stale."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("page", type=Path, nargs="?", default=page)
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if the page is stale")
    args = parser.parse_args(argv)
    text = args.page.read_text(encoding="utf-8")
    fresh = render_page(text)
    if args.check:
        if fresh != text:
            sys.stderr.write(f"{args.page} is stale: run make generate\n")
            return 1
        return 0
    if fresh != text:
        args.page.write_text(fresh, encoding="utf-8")
    return 0


def main(argv: list[str] | None = None) -> int:
    description = (__doc__ or "").split("\n")[0]
    return regenerate(render, "python -m watcher_core.settings_docs", description, Path("docs/configuration.md"), argv)


if __name__ == "__main__":
    sys.exit(main())
