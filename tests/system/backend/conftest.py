"""The backend's integration test modules again, on PostgreSQL (the session's server, tests/system/conftest.py):
these ``backend`` and ``database_url`` fixtures replace the SQLite ones of tests/integration/backend."""

import secrets

import pytest

from support.backend import (
    ident,  # noqa: F401  (fixture: a fresh course/section/student per test)
    run_backend,
)


@pytest.fixture(scope="module")
def backend(postgres, tmp_path_factory):
    url = postgres.create_database("watcher_" + secrets.token_hex(4))
    handle = run_backend(tmp_path_factory.mktemp("backend-pg"), database_url=url)
    yield handle
    handle.stop()


@pytest.fixture
def database_url(postgres):
    return postgres.create_database("watcher_mig_" + secrets.token_hex(4))
