"""PostgreSQL fixtures for the backend's system tests: one private PostgreSQL server per session."""
import secrets

import pytest

from support.backend import run_backend
from support.postgres import PostgresServer, find_pg_bin


@pytest.fixture(scope="session")
def postgres():
    if find_pg_bin() is None:
        pytest.skip("PostgreSQL is not installed on this machine (scripts/deps/postgres.sh installs it)")
    with PostgresServer() as server:
        yield server


@pytest.fixture(scope="module")
def backend(postgres, tmp_path_factory):
    url = postgres.create_database("watcher_" + secrets.token_hex(4))
    handle = run_backend(tmp_path_factory.mktemp("backend-pg"), database_url=url)
    yield handle
    handle.stop()


@pytest.fixture
def ident():
    return {
        "course": "c" + secrets.token_hex(4),
        "section": "1",
        "student_id": str(secrets.randbelow(10**9)).zfill(9),
        "assignment": "hw1",
    }


@pytest.fixture
def database_url(postgres):
    return postgres.create_database("watcher_mig_" + secrets.token_hex(4))
