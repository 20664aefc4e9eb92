"""Property-based fuzzing of every legacy operation (from /openapi.json) with the RIGHT token, so the write
handlers are reached too: never a 5xx, never a traceback in the server log."""

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

EXAMPLES = 30


def test_no_legacy_operation_answers_a_server_error(backend):
    schema = schemathesis.openapi.from_url(backend.url + "/openapi.json")
    operations = [r.ok() for r in schema.get_all_operations()]
    legacy = [op for op in operations if op.path.startswith("/api/") and not op.path.startswith("/api/v1")]
    assert len(legacy) == 14, [op.path for op in legacy]
    failures, codes = [], set()
    for operation in legacy:
        headers = backend.headers("ingest" if operation.method.upper() == "POST" else "read")
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                derandomize=True,
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def fuzz(case):
                case.headers = {**(case.headers or {}), **headers}
                response = case.call(base_url=backend.url, timeout=30)
                codes.add((case.method, response.status_code))
                if response.status_code >= 500:
                    failures.append(
                        f"{case.method} {case.formatted_path} {case.body!r} -> {response.status_code}: "
                        f"{response.text[:300]}"
                    )

            try:
                fuzz()
            except Unsatisfiable:
                pass
    assert failures == [], "\n".join(failures[:20])
    assert {("POST", 200), ("POST", 422), ("GET", 200), ("GET", 422)} <= codes, sorted(codes)
    assert "Traceback" not in backend.logs()
