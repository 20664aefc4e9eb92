"""The legacy API and the ProgSnap2 export on a REAL PostgreSQL server (one private server per session)."""
import secrets

import pytest

from support.backend import run_backend
from support.postgres import PostgresServer, find_pg_bin


@pytest.fixture(scope="session")
def legacy_postgres():
    if find_pg_bin() is None:
        pytest.skip("PostgreSQL is not installed on this machine (scripts/deps/postgres.sh installs it)")
    with PostgresServer() as server:
        yield server


@pytest.fixture(scope="module")
def backend(legacy_postgres, tmp_path_factory):
    url = legacy_postgres.create_database("legacy_" + secrets.token_hex(4))
    with run_backend(tmp_path_factory.mktemp("legacy-pg"), database_url=url) as handle:
        yield handle


@pytest.fixture(scope="module")
def export_backend(legacy_postgres):
    def start(workdir):
        url = legacy_postgres.create_database("export_" + secrets.token_hex(4))
        return run_backend(workdir, database_url=url)
    return start
