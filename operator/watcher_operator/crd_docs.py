"""docs/operator.md's WatcherDeployment field table, generated from the CRD's schema (``crd.spec_schema``).

The schema is the one declaration of every field (its type, default, bounds and description, which
``kubectl explain`` shows too); the table between the marker lines is derived from it::

    <!-- crd: spec -->
    | Field | Type | Default | Meaning |
    ...
    <!-- /crd -->

``python -m watcher_operator.crd_docs docs/operator.md`` (``make generate``) rewrites it; ``--check`` exits 1
when the page differs from what the schema gives (a test does the same).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from watcher_core import settings_docs
from watcher_operator import crd

_BLOCK = re.compile(r"^(<!-- crd: spec -->\n)(.*?)(^<!-- /crd -->$)", re.M | re.S)


def _type(schema: dict) -> str:
    kind = schema.get("type", "object")
    if kind == "array":
        return "[]" + _type(schema.get("items", {}))
    extra = schema.get("additionalProperties")
    if kind == "object" and isinstance(extra, dict) and "properties" not in schema:
        return f"map[string]{_type(extra)}"
    return kind


def _default(schema: dict) -> str:
    if schema.get("default", {}) == {}:  # none, or an object's empty one (its fields say theirs)
        return ""
    value = schema["default"]
    text = value if isinstance(value, str) else json.dumps(value)
    return f"`{text}`"


def _meaning(schema: dict) -> str:
    text = " ".join(schema.get("description", "").split())
    notes = []
    if "enum" in schema:
        notes.append("one of " + ", ".join(f"`{v}`" for v in schema["enum"]))
    if "minimum" in schema and "maximum" in schema:
        notes.append(f"{schema['minimum']}..{schema['maximum']}")
    if "maxItems" in schema:
        notes.append(f"at most {schema['maxItems']}")
    return text + (f" ({'; '.join(notes)})" if notes else "")


# Fields of a Kubernetes type: one row each, their own fields are Kubernetes' (kubectl explain pod.spec...).
KUBERNETES_TYPES = {"resources", "tolerations"}


def rows(schema: dict, prefix: str = "spec") -> Iterator[str]:
    """One row per field, parents before their fields (an array's items as ``field[].name``)."""
    required = set(schema.get("required", ()))
    for key, sub in (schema.get("properties") or {}).items():
        path = f"{prefix}.{key}"
        name = f"`{path}`" + (" (required)" if key in required else "")
        yield f"| {name} | {_type(sub)} | {_default(sub)} | {_meaning(sub)} |"
        if key in KUBERNETES_TYPES:
            continue
        if sub.get("type") == "object" and "properties" in sub:
            yield from rows(sub, path)
        elif sub.get("type") == "array" and "properties" in sub.get("items", {}):
            yield from rows(sub["items"], f"{path}[]")


def table(schema: dict[str, Any] | None = None) -> str:
    lines = ["| Field | Type | Default | Meaning |", "|---|---|---|---|"]
    return "\n".join([*lines, *rows(schema if schema is not None else crd.spec_schema())])


def render(page: str) -> str:
    """``page`` with its field table regenerated."""
    if not _BLOCK.search(page):
        raise ValueError("the page has no <!-- crd: spec --> ... <!-- /crd --> block")
    return _BLOCK.sub(lambda m: f"{m.group(1)}{table()}\n{m.group(3)}", page)


def main(argv: list[str] | None = None) -> int:
    description = (__doc__ or "").split("\n")[0]
    return settings_docs.regenerate(
        render, "python -m watcher_operator.crd_docs", description, Path("docs/operator.md"), argv
    )


if __name__ == "__main__":
    sys.exit(main())
