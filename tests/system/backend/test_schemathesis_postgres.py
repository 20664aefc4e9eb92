"""Property-based fuzzing of every operation in the OpenAPI schema against a live backend on PostgreSQL:
no 5xx, ever (the database's own errors: types, lengths, constraints, which SQLite lets through).

Schemathesis generates valid (positive) and invalid (negative) requests for each operation from
/openapi.json; each is sent with a token of the scope the operation needs. On SQLite, the same fuzzing with
every credential and the response schema checked too is tests/security/test_api_schema.py.
"""

import secrets

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from support.backend import run_backend

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
    schema = schemathesis.openapi.from_url(live.url + "/openapi.json")
    failures, ran, codes = [], [], set()
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10
    for operation in operations:
        scope = token_scope(operation.method.upper(), operation.path)
        headers = live.headers(scope)
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            strategy = operation.as_strategy(generation_mode=mode)

            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                derandomize=True,
                suppress_health_check=list(HealthCheck),
            )
            @given(case=strategy)
            def fuzz(case):
                case.headers = {**(case.headers or {}), **headers}
                response = case.call(base_url=live.url, timeout=30)
                codes.add((case.method, operation.path, response.status_code))
                if response.status_code >= 500:
                    failures.append(
                        f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:300]}"
                    )

            try:
                fuzz()
            except Unsatisfiable:
                # an operation without inputs has no invalid requests to generate
                assert mode is GenerationMode.NEGATIVE, operation.path
            ran.append((operation.method, operation.path, mode))
    assert failures == [], "\n".join(failures[:20])
    # the fuzzing reached the handlers, not only the validation layer
    assert ("POST", "/api/v1/events", 200) in codes
    assert ("GET", "/api/v1/courses", 200) in codes
    assert "Traceback" not in live.logs()
