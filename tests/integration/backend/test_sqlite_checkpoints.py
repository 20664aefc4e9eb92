"""SQLite's write-ahead log under writers that never pause: the backend's checkpoints keep it bounded.

The backend copies the log into the database file in the background (``db.checkpoint``, once a second),
never inside a commit. Only a log copied whole is started over; a writer in another process (a second
``--workers`` worker) adds frames during every copy, so a copy that never pauses the writers never
finishes the log, and it grew without end (1.1 GB in 40 s of single-event requests). Real SQLite, a real
second process, the real file lock.
"""

from __future__ import annotations

import functools
import subprocess
import sys
import time

from watcher_backend import db, store

ROW_BYTES = 8192
# Enough copies that the log's high-water mark (the most written between two copies, however long the test
# process waited for a core) stays far below the whole run: never started over, the log holds every row
# and more (pages and frame headers): 114 MB for 55 MB written.
CHECKPOINTS = 40

# Another worker: commits rows of ROW_BYTES, one after another, each under the writers' lock, until told
# to stop; then prints how many it wrote.
WRITER = f"""
import pathlib, sys
from watcher_backend import db, store
engine = db.make_engine("sqlite:///" + sys.argv[1], background_checkpoints=True)
stop, rows = pathlib.Path(sys.argv[2]), 0
while not stop.exists():
    with store.write_lock(engine), engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO t (body) VALUES (randomblob({ROW_BYTES}))")
    rows += 1
print(rows)
"""


def test_checkpoints_keep_the_log_bounded_while_another_process_writes_without_pause(tmp_path):
    path = tmp_path / "w.db"
    engine = db.make_engine(f"sqlite:///{path}", background_checkpoints=True)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (id INTEGER PRIMARY KEY, body BLOB)")
    stop = tmp_path / "stop"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(stop)], stdout=subprocess.PIPE, text=True)
    try:
        results = []
        for _ in range(CHECKPOINTS):
            time.sleep(0.1)
            results.append(db.checkpoint(engine, functools.partial(store.write_lock, engine)))
    finally:
        stop.touch()
        out, _ = writer.communicate(timeout=60)
    rows = int(out)
    written = rows * ROW_BYTES
    log_bytes = (tmp_path / "w.db-wal").stat().st_size
    assert rows >= 200, f"the writer wrote only {rows} rows: too few to tell"
    # Started over again and again: the file holds the most written between two copies, not the whole run.
    # (CI once saw a quarter of a 20-copy run: the test process waited ~0.5 s for a core under a busy suite.)
    assert log_bytes < written / 2, (log_bytes, written, results)
    assert all(r is not None and r[0] == r[1] for r in results), results  # each copy took the whole log
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM t").scalar() == rows  # and nothing was lost
    engine.dispose()
