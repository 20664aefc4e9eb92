"""``watcher``: one command, a subcommand per component.

Each subcommand lives in its own package and is imported only when used, so ``watcher filemon`` on a
node never imports FastAPI or kopf. A component's entry point is ``main(argv: list[str]) -> int`` and
owns its own argparse parser (so ``watcher <component> --help`` is the component's help).
"""

from __future__ import annotations

import importlib
import sys

from watcher_core import __version__

# name -> (module, one-line description)
COMMANDS: dict[str, tuple[str, str]] = {
    "backend": ("watcher_backend.cli", "run the central API server (FastAPI, port 3000)"),
    "filemon": ("watcher_agents.filemon.cli", "run the per-node file monitor (inotify, metrics on 9090)"),
    "procmon": ("watcher_agents.procmon.cli", "run the per-node process monitor (eBPF, metrics on 9090)"),
    "operator": ("watcher_operator.cli", "run the Kubernetes operator for WatcherDeployment resources"),
    "local": ("watcher_local.stack", "run backend, filemon and procmon together on this machine"),
    "demo": ("watcher_local.demo", "simulate two students and print what Watcher recorded"),
    "status": ("watcher_local.status", "show what a running backend has stored and which agents report"),
    "export": ("watcher_backend.export.cli", "export research datasets (ProgSnap2)"),
    "import": (
        "watcher_backend.legacy.importer",
        "bring the old Watcher's data over (its database and snapshot folder)",
    ),
    "db": ("watcher_backend.db_cli", "back up and restore the backend's database; its schema revision and migrations"),
    "tokens": ("watcher_backend.tokens_cli", "named read and admin tokens: create, list, revoke"),
    "outbox": (
        "watcher_agents.delivery.outbox_cli",
        "an agent's outbox: what waits, what was refused; requeue dead letters",
    ),
    "notebook": ("watcher_core.notebook_cli", "the IPython hook for notebook cell runs, and students' tokens for it"),
    "snapshots": ("watcher_core.snapshots_cli", "the snapshot store: compress a store written before compression"),
}
# The pyproject extra that brings each command's dependencies (each image installs only its own); None: the
# standard library is enough (every image has the command).
EXTRAS: dict[str, str | None] = {
    "backend": "backend",
    "filemon": "agents",
    "procmon": "agents",
    "operator": "operator",
    "local": "all",
    "demo": "all",
    "status": "all",
    "export": "backend",
    "import": "backend",
    "outbox": "agents",
    "db": "backend",
    "tokens": "backend",
    "notebook": None,
    "snapshots": "agents",
}


def _usage() -> str:
    width = max(len(n) for n in COMMANDS)
    lines = [
        "usage: watcher <command> [options]",
        "",
        "JCode Watcher records how students work: saved versions, compiles and runs.",
        "",
        "commands:",
    ]
    lines += [f"  {name:<{width}}  {desc}" for name, (_, desc) in COMMANDS.items()]
    lines += ["", "Run 'watcher <command> --help' for a command's options.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        sys.stdout.write(_usage())
        return 0
    if argv[0] in ("-V", "--version"):
        print(f"watcher {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        sys.stderr.write(f"watcher: unknown command {name!r}; choose one of: {', '.join(COMMANDS)}\n")
        return 2
    module_name = COMMANDS[name][0]
    try:
        module = importlib.import_module(module_name)
        # commands import their heavy dependencies when they run (so `--help` works everywhere)
        return int(module.main(rest) or 0)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            sys.stderr.write(f"watcher: the '{name}' command is not available in this installation ({exc})\n")
        elif exc.name and not exc.name.startswith("watcher_"):  # a dependency of the command's extra
            extra = "postgres" if exc.name.split(".")[0].startswith("psycopg") else (EXTRAS[name] or "all")
            sys.stderr.write(
                f"watcher: '{name}' needs packages this installation lacks ({exc}): "
                f"pip install 'jcode-watcher[{extra}]'\n"
            )
        else:
            raise
        return 2


if __name__ == "__main__":
    sys.exit(main())
