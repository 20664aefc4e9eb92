"""Property-based fuzzing of every operation in the OpenAPI schema against a live backend on PostgreSQL:
no 5xx, ever (the database's own errors: types, lengths, constraints, which SQLite lets through).

Schemathesis generates valid (positive) and invalid (negative) requests for each operation from
/openapi.json; each is sent with a token of the scope the operation needs. On SQLite, the same fuzzing with
every credential and the response schema checked too is tests/security/test_api_schema.py.
"""

import secrets

import pytest

from support.backend import run_backend
from support.fuzz import fuzz, operations

EXAMPLES = 25


def token_scope(method: str, path: str) -> str:
    # admin implies read; the old API's writes are open like before unless the router says otherwise
    return "ingest" if (method, path) == ("POST", "/api/v1/events") else "admin"


@pytest.fixture(scope="module")
def live(postgres, tmp_path_factory):
    url = postgres.create_database("watcher_fuzz_" + secrets.token_hex(3))
    with run_backend(
        tmp_path_factory.mktemp("fuzz-pg"), database_url=url, env={"WATCHER_RETENTION_DAYS": "3650"}
    ) as handle:
        yield handle


def test_no_operation_answers_a_server_error(live):
    failures, codes = [], set()
    ops = operations(live.url)
    assert len(ops) >= 10
    for operation in ops:

        def check(case, response, operation=operation):
            codes.add((case.method, operation.path, response.status_code))
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:300]}")

        fuzz(live.url, operation, live.headers(token_scope(operation.method.upper(), operation.path)), EXAMPLES, check)
    assert failures == [], "\n".join(failures[:20])
    # the fuzzing reached the handlers, not only the validation layer
    assert ("POST", "/api/v1/events", 200) in codes
    assert ("GET", "/api/v1/courses", 200) in codes
    assert "Traceback" not in live.logs()
