"""``watcher db backup|restore`` on PostgreSQL (pg_dump and pg_restore): the restored database gives a new
backend the same answers. The session's real PostgreSQL (tests/system/conftest.py)."""

from __future__ import annotations

import secrets

from integration.backend.test_db_cli import answers, fill, watcher_db

from support.backend import run_backend


def test_a_postgres_backup_restores_to_the_same_answers(postgres, tmp_path):
    old_url = postgres.create_database("watcher_old_" + secrets.token_hex(4))
    new_url = postgres.create_database("watcher_new_" + secrets.token_hex(4))
    with run_backend(tmp_path / "a", database_url=old_url) as old:
        fill(old)
        before = answers(old)
        r = watcher_db("backup", "--database-url", old_url, "--output", str(tmp_path / "backup.pgdump"))
        assert r.returncode == 0 and "backed up the PostgreSQL database" in r.stderr, r.stderr
    r = watcher_db("restore", "--database-url", new_url, "--input", str(tmp_path / "backup.pgdump"))
    assert r.returncode == 0, r.stderr
    with run_backend(tmp_path / "b", database_url=new_url) as new:
        after = answers(new)
        # a second restore over data is refused unless forced
        again = watcher_db("restore", "--database-url", new_url, "--input", str(tmp_path / "backup.pgdump"))
        assert again.returncode == 1 and "--force" in again.stderr
    assert after == before
