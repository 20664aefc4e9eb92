"""Shared by the system tests: one private PostgreSQL server for the whole session (Debian's postgresql)."""

import pytest

from support.postgres import PostgresServer, find_pg_bin


@pytest.fixture(scope="session")
def postgres():
    if find_pg_bin() is None:
        pytest.skip("PostgreSQL is not installed on this machine (scripts/deps/postgres.sh installs it)")
    with PostgresServer() as server:
        yield server
