"""Property-based fuzzing of every legacy operation (from /openapi.json) with the RIGHT token, so the write
handlers are reached too: never a 5xx, never a traceback in the server log."""

from support.fuzz import fuzz, operations

EXAMPLES = 30


def test_no_legacy_operation_answers_a_server_error(backend):
    legacy = [op for op in operations(backend.url) if op.path.startswith("/api/") and not op.path.startswith("/api/v1")]
    assert len(legacy) == 14, [op.path for op in legacy]
    failures, codes = [], set()
    for operation in legacy:

        def check(case, response):
            codes.add((case.method, response.status_code))
            if response.status_code >= 500:
                failures.append(
                    f"{case.method} {case.formatted_path} {case.body!r} -> {response.status_code}: "
                    f"{response.text[:300]}"
                )

        fuzz(
            backend.url,
            operation,
            backend.headers("ingest" if operation.method.upper() == "POST" else "read"),
            EXAMPLES,
            check,
        )
    assert failures == [], "\n".join(failures[:20])
    assert {("POST", 200), ("POST", 422), ("GET", 200), ("GET", 422)} <= codes, sorted(codes)
    assert "Traceback" not in backend.logs()
