"""``watcher notebook``: the IPython hook that records notebook cell runs, and the students' tokens for it.

    watcher notebook hook > 00-jcode-watcher.py          # the startup file (for a ConfigMap or a pod image)
    WATCHER_NOTEBOOK_KEY_FILE=key watcher notebook token --course os --section 1 --student 202012345

The token lets that student's kernel post its own notebook.cell events and nothing else
(``watcher_core.cell_tokens``); docs/notebook.md says how the pods get the hook and their token.
"""

from __future__ import annotations

import argparse
import os
import sys
from importlib import resources

from watcher_core import cell_tokens, identity, secret_settings

HOOK_FILE = "notebook_hook.py"


def hook_source() -> str:
    """The hook as the startup file the pods run (stdlib only; the operator puts it in watcher-hook-config)."""
    return resources.files("watcher_core").joinpath(HOOK_FILE).read_text(encoding="utf-8")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="watcher notebook", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="what", required=True, metavar="{hook,token}")
    sub.add_parser("hook", help="print the IPython startup file")
    t = sub.add_parser("token", help="print a student's notebook token (key from WATCHER_NOTEBOOK_KEY[_FILE])")
    t.add_argument("--course", required=True)
    t.add_argument("--section", required=True)
    t.add_argument("--student", required=True, help="the student id as in the workspace folder (leading zeros kept)")
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
        key = secret_settings.read_secret(os.environ, "WATCHER_NOTEBOOK_KEY")
    except secret_settings.SecretSettingError as exc:
        sys.stderr.write(f"watcher notebook token: {exc}\n")
        return 2
    if not key:
        sys.stderr.write(
            "watcher notebook token: set WATCHER_NOTEBOOK_KEY or WATCHER_NOTEBOOK_KEY_FILE to the "
            "backend's notebook key\n"
        )
        return 2
    student = identity.Student(args.course, args.section, args.student)
    for name, value, rule in (
        ("--course", student.course, identity.COURSE_RE),
        ("--section", student.section, identity.SECTION_RE),
        ("--student", student.student_id, identity.STUDENT_ID_RE),
    ):
        if not rule.fullmatch(value):
            sys.stderr.write(f"watcher notebook token: {name} {value!r} is not a valid {name[2:]} name\n")
            return 2
    try:
        print(cell_tokens.derive(key, student))
    except ValueError as exc:
        sys.stderr.write(f"watcher notebook token: WATCHER_NOTEBOOK_KEY: {exc}\n")
        return 2
    return 0
