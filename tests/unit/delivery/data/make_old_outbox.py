"""Writes outbox-e6082c3.sqlite3: an outbox made by the outbox code of commit e6082c3 (one FIFO, before the
outbox served students in turn), for the test that a newer agent reads it after an upgrade.

    .venv/bin/python tests/unit/delivery/data/make_old_outbox.py

It holds 14 queued events (three students interleaved, one event of no student) and two dead letters.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path

REVISION = "e6082c3"
HERE = Path(__file__).resolve().parent
OUT = HERE / f"outbox-{REVISION}.sqlite3"

# (student_id or None, path): the order in which the old agent queued them
QUEUED = [
    ("1001", "a0.c"),
    ("1001", "a1.c"),
    ("1001", "a2.c"),
    ("1001", "a3.c"),
    ("1001", "a4.c"),
    ("1002", "b0.c"),
    ("1001", "a5.c"),
    (None, "node.c"),
    ("1002", "b1.c"),
    ("1003", "c0.c"),
    ("1001", "a6.c"),
    ("1001", "a7.c"),
    ("1003", "c1.c"),
    ("1002", "b2.c"),
]
DEAD = [("1002", "dead0.c"), ("1004", "dead1.c")]


def event(student_id: str | None, path: str) -> dict:
    ev = {
        "type": "file.save",
        "event_id": f"old-outbox-{path}",
        "timestamp": "2026-11-30T10:00:00+00:00",
        "node": "n1",
        "source": "filemon",
        "assignment": "hw1",
        "path": path,
        "sha256": "c" * 64,
        "size": 3,
    }
    if student_id is not None:
        ev.update(course="os", section="1", student_id=student_id)
    return ev


def main() -> int:
    root = Path(subprocess.check_output(["git", "rev-parse", "--show-toplevel"], cwd=HERE, text=True).strip())
    source = subprocess.check_output(
        ["git", "show", f"{REVISION}:agents/watcher_agents/delivery/outbox.py"], cwd=root, text=True
    )
    with tempfile.TemporaryDirectory() as tmp:
        module_path = Path(tmp) / "old_outbox.py"
        module_path.write_text(source)
        spec = importlib.util.spec_from_file_location("old_outbox", module_path)
        old = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(old)
        OUT.unlink(missing_ok=True)
        box = old.Outbox(OUT)
        box.put([event(s, p) for s, p in DEAD])
        for rowid, _ in box.peek_batch(len(DEAD)):
            box.dead_letter(rowid, "422 made for the upgrade test")
        for s, p in QUEUED:
            box.put([event(s, p)])
        box.close()  # the last connection: SQLite checkpoints the WAL into the file and removes it
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
