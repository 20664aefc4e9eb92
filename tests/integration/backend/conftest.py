"""Fixtures for the backend's integration tests: one real server (SQLite) per test module.

tests/system/backend reuses the same test modules with a ``backend`` fixture on PostgreSQL.
"""

import pytest

from support.backend import (
    ident,  # noqa: F401  (fixture: a fresh course/section/student per test)
    run_backend,
)


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    handle = run_backend(tmp_path_factory.mktemp("backend"))
    yield handle
    handle.stop()


@pytest.fixture
def database_url(tmp_path):
    """An empty database (SQLite file here; PostgreSQL in tests/system/backend)."""
    return f"sqlite:///{tmp_path / 'migrations.db'}"
