"""The dashboard's data tests of tests/integration/backend/test_dashboard.py, on PostgreSQL: the hours and
flags kept at ingest (another dialect's upserts), revision 0010's backfill, and the routes over HTTP."""

import secrets

import pytest
from integration.backend.test_dashboard import *  # noqa: F401,F403
from integration.backend.test_dashboard import SERVED_ENV

from support.backend import run_backend


@pytest.fixture(scope="module")
def served(postgres, tmp_path_factory):
    url = postgres.create_database("watcher_dash_" + secrets.token_hex(4))
    handle = run_backend(tmp_path_factory.mktemp("dash-pg"), database_url=url, env=SERVED_ENV)
    yield handle
    handle.stop()
