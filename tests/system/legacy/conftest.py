"""The legacy API and the ProgSnap2 export on a REAL PostgreSQL server (the session's private server, tests/system/conftest.py)."""

import secrets

import pytest

from support.backend import run_backend


@pytest.fixture(scope="module")
def backend(postgres, tmp_path_factory):
    url = postgres.create_database("legacy_" + secrets.token_hex(4))
    with run_backend(tmp_path_factory.mktemp("legacy-pg"), database_url=url) as handle:
        yield handle


@pytest.fixture(scope="module")
def export_backend(postgres):
    def start(workdir):
        url = postgres.create_database("export_" + secrets.token_hex(4))
        return run_backend(workdir, database_url=url)

    return start
