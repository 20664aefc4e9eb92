"""``watcher notebook``: the IPython hook that records notebook cell runs, and the students' tokens for it.

    watcher notebook hook > 00-jcode-watcher.py          # the startup file (for a ConfigMap or a pod image)
    WATCHER_NOTEBOOK_KEY_FILE=key watcher notebook token --course os --section 1 --student 202012345

The token lets that student's kernel post its own notebook.cell events and nothing else
(``watcher_core.cell_tokens``); docs/notebook.md says how the pods get the hook and their token.
"""

from __future__ import annotations

import argparse
import sys
from importlib import resources

from watcher_core import cell_tokens, identity, notebook_hook, settings_spec
from watcher_core.settings_spec import Setting, Subcommand

HOOK_FILE = "notebook_hook.py"

HOOK = Subcommand("notebook hook", "print the IPython startup file (what the operator puts in `<name>-hook-config`)")
TOKEN = Subcommand(
    "notebook token",
    "print one student's notebook token, derived from the backend's notebook key",
    (
        Setting(
            "key",
            env="WATCHER_NOTEBOOK_KEY",
            secret=True,
            required=True,
            parse=settings_spec.min_length(cell_tokens.MIN_KEY_LENGTH),
            doc="the backend's notebook key",
        ),
        Setting(
            "course",
            flag="--course",
            required=True,
            metavar="COURSE",
            doc="the course, as in the workspace folder (`os`)",
        ),
        Setting("section", flag="--section", required=True, metavar="SECTION", doc="the section (`1`)"),
        Setting(
            "student",
            flag="--student",
            required=True,
            metavar="ID",
            doc="the student id as in the workspace folder, leading zeros kept",
        ),
    ),
)
TABLE = (HOOK, TOKEN)
# The hook reads its own environment (it may import nothing of ours); these rows describe its table.
HOOK_TABLE = tuple(
    Setting(argument, env=variable, default=default, default_doc=shown, secret=argument == "token", doc=doc)
    for variable, argument, default, shown, doc in notebook_hook.ENVIRONMENT
)


def hook_source() -> str:
    """The hook as the startup file the pods run (stdlib only; the operator puts it in watcher-hook-config)."""
    return resources.files("watcher_core").joinpath(HOOK_FILE).read_text(encoding="utf-8")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="watcher notebook", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="what", required=True, metavar="{hook,token}")
    settings_spec.add_subcommand(sub, HOOK)
    settings_spec.add_subcommand(sub, TOKEN)
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    if args.what == "hook":
        sys.stdout.write(hook_source())
        return 0
    try:
        opts = settings_spec.resolve(TOKEN.settings, args)
    except settings_spec.SettingsError as exc:
        sys.stderr.write(f"watcher notebook token: {exc}\n")
        return 2
    student = identity.Student(opts.course, opts.section, opts.student)
    for name, value, rule in (
        ("--course", student.course, identity.COURSE_RE),
        ("--section", student.section, identity.SECTION_RE),
        ("--student", student.student_id, identity.STUDENT_ID_RE),
    ):
        if not rule.fullmatch(value):
            sys.stderr.write(f"watcher notebook token: {name} {value!r} is not a valid {name[2:]} name\n")
            return 2
    try:
        print(cell_tokens.derive(opts.key, student))
    except ValueError as exc:
        sys.stderr.write(f"watcher notebook token: WATCHER_NOTEBOOK_KEY: {exc}\n")
        return 2
    return 0
