"""The schemathesis run of tests/integration/backend/test_schemathesis.py against a backend on PostgreSQL."""

import secrets

import pytest
from integration.backend.test_schemathesis import test_no_operation_answers_a_server_error  # noqa: F401

from support.backend import run_backend


@pytest.fixture(scope="module")
def live(postgres, tmp_path_factory):
    url = postgres.create_database("watcher_fuzz_" + secrets.token_hex(3))
    with run_backend(
        tmp_path_factory.mktemp("fuzz-pg"), database_url=url, env={"WATCHER_RETENTION_DAYS": "3650"}
    ) as handle:
        yield handle
