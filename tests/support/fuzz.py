"""Schemathesis over a live backend, the way every fuzzing test here runs it: each operation of the
published /openapi.json gets valid (positive) and invalid (negative) requests, derandomized and bounded,
sent with the caller's headers; what to check of each answer is the test's."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode


def operations(url: str) -> list[Any]:
    """Every operation the backend at `url` publishes."""
    schema = schemathesis.openapi.from_url(url + "/openapi.json")
    return [result.ok() for result in schema.get_all_operations()]


def fuzz(
    url: str,
    operation: Any,
    headers: dict[str, str] | None,
    examples: int,
    check: Callable[[Any, Any], None],
) -> None:
    """`examples` positive and `examples` negative requests of `operation`, each answer handed to
    `check(case, response)`. `headers` None: no credential at all (a generated Authorization is dropped)."""
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

        @settings(
            max_examples=examples,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(generation_mode=mode))
        def one(case):
            case.headers = {**(case.headers or {}), **(headers or {})}
            if headers is None:
                case.headers.pop("Authorization", None)
            check(case, case.call(base_url=url, timeout=30))

        try:
            one()
        except Unsatisfiable:
            # an operation without inputs has no invalid requests to generate
            assert mode is GenerationMode.NEGATIVE, operation.path
