"""A throwaway REAL PostgreSQL server for tests (Debian's ``postgresql`` package; scripts/deps/postgres.sh).

Usage::

    from support.postgres import PostgresServer, find_pg_bin

    with PostgresServer(tmp_path) as pg:        # initdb + pg_ctl start on a free loopback port
        url = pg.create_database("watcher")     # postgresql://postgres@127.0.0.1:<port>/watcher
        ...
        pg.stop(); pg.start()                   # e.g. to test behaviour while the database is down

Runs ``initdb``/``pg_ctl`` from ``/usr/lib/postgresql/<newest>/bin``. As root it runs them as the
``postgres`` user (initdb refuses root); otherwise as the current user. Trust authentication, loopback
only, the data directory and socket inside the temp dir. ``find_pg_bin()`` is None when PostgreSQL is not
installed (tests then skip: a missing machine feature).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from support.ports import free_port


def find_pg_bin() -> Path | None:
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if candidates:
        return candidates[-1].parent
    found = shutil.which("initdb")
    return Path(found).parent if found else None


class PostgresServer:
    def __init__(self, base_dir: Path | None = None, port: int | None = None):
        self.bin = find_pg_bin()
        if self.bin is None:
            raise RuntimeError("PostgreSQL is not installed (run scripts/deps/postgres.sh)")
        # A private dir the postgres user can reach even when base_dir is under a root-only tmp path.
        self.root = Path(tempfile.mkdtemp(prefix="watcher-pg-", dir=None))
        self.data = self.root / "data"
        self.socket_dir = self.root / "sock"
        self.log = self.root / "postgres.log"
        self.port = port or free_port()
        self.user = "postgres"
        self._as_postgres = os.geteuid() == 0
        self.socket_dir.mkdir()
        if self._as_postgres:
            pw = pwd.getpwnam("postgres")
            os.chmod(self.root, 0o755)
            for path in (self.root, self.socket_dir):
                os.chown(path, pw.pw_uid, pw.pw_gid)
        else:
            self.user = pwd.getpwuid(os.geteuid()).pw_name
        self._initdb()

    def _run(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
        if self._as_postgres:
            cmd = ("runuser", "-u", "postgres", "--", *cmd)
        return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=120)

    def _initdb(self) -> None:
        self._run(
            str(self.bin / "initdb"),
            "-D",
            str(self.data),
            "-U",
            self.user,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
            "-N",
        )

    def start(self) -> PostgresServer:
        opts = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.socket_dir} -c fsync=off "
            f"-c synchronous_commit=off -c full_page_writes=off -c max_connections=100"
        )
        r = self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-o",
            opts,
            "-w",
            "-t",
            "60",
            "start",
            check=False,
        )
        if r.returncode != 0:
            raise RuntimeError(f"pg_ctl start failed: {r.stdout}{r.stderr}\n{self._log()}")
        self._wait_ready()
        return self

    def _wait_ready(self, timeout: float = 30) -> None:
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self.dsn("postgres"), connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop", check=False)

    def dsn(self, dbname: str) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{dbname}"

    def url(self, dbname: str) -> str:
        """The URL to give ``watcher backend --database-url``."""
        return self.dsn(dbname)

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def _log(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()
