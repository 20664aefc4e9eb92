"""Apply the CRD's schema defaults in Python, exactly as the API server does.

The API server defaults every stored WatcherDeployment, but the pure builders are also fed hand-written
examples (the golden tests), and an object created before a new default existed
lacks it. Walking the same schema that `crd.build_crd()` publishes keeps one source of truth.
"""

from __future__ import annotations

import copy
from typing import Any

from watcher_operator.crd import spec_schema


def apply_schema_defaults(schema: dict, value: Any) -> Any:
    """Return a copy of `value` with the schema's defaults filled in (recursively, like the apiserver)."""
    value = copy.deepcopy(value)
    return _walk(schema, value)


def _walk(schema: dict, value: Any) -> Any:
    if isinstance(value, dict) and schema.get("type") == "object":
        props = schema.get("properties") or {}
        for key, sub in props.items():
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                value[key] = _walk(sub, value[key])
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for key in list(value):
                if key not in props:
                    value[key] = _walk(extra, value[key])
        return value
    if isinstance(value, list) and schema.get("type") == "array" and isinstance(schema.get("items"), dict):
        return [_walk(schema["items"], item) for item in value]
    return value


def spec_with_defaults(spec: dict | None) -> dict:
    return apply_schema_defaults(spec_schema(), spec or {})
