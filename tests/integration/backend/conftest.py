"""Fixtures for the backend's integration tests: one real server (SQLite) per test module.

tests/system/backend reuses the same test modules with a ``backend`` fixture on PostgreSQL.
"""
import secrets

import pytest

from support.backend import run_backend


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    handle = run_backend(tmp_path_factory.mktemp("backend"))
    yield handle
    handle.stop()


@pytest.fixture
def ident():
    """A fresh course/section/student for each test, so tests sharing a server never see each other's data."""
    return {
        "course": "c" + secrets.token_hex(4),
        "section": "1",
        "student_id": str(secrets.randbelow(10**9)).zfill(9),
        "assignment": "hw1",
    }


@pytest.fixture
def database_url(tmp_path):
    """An empty database (SQLite file here; PostgreSQL in tests/system/backend)."""
    return f"sqlite:///{tmp_path / 'migrations.db'}"
