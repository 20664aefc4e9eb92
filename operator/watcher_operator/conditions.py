"""status.conditions per the Kubernetes API conventions (pure).

A condition is {type, status: True|False|Unknown, observedGeneration, lastTransitionTime, reason, message}.
lastTransitionTime changes only when `status` flips, so `kubectl wait` and humans can tell how long a
state has held; reason/message/observedGeneration are refreshed on every reconcile.
"""

from __future__ import annotations

import datetime as dt

CONDITION_TYPES = ("Ready", "BackendReady", "FilemonReady", "ProcmonReady", "Progressing", "Degraded")


def now_rfc3339() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def get_condition(conditions: list[dict] | None, type_: str) -> dict | None:
    for c in conditions or []:
        if c.get("type") == type_:
            return c
    return None


def set_condition(
    conditions: list[dict] | None, type_: str, status: bool | str, reason: str, message: str, generation: int, now: str
) -> list[dict]:
    """Return a new list with `type_` set; other conditions are kept unchanged, order is stable."""
    status_s = status if isinstance(status, str) else ("True" if status else "False")
    previous = get_condition(conditions, type_)
    since = (
        previous["lastTransitionTime"]
        if previous and previous.get("status") == status_s and previous.get("lastTransitionTime")
        else now
    )
    new = {
        "type": type_,
        "status": status_s,
        "observedGeneration": int(generation),
        "lastTransitionTime": since,
        "reason": reason,
        "message": message,
    }
    out = [dict(c) for c in conditions or [] if c.get("type") != type_]
    out.append(new)
    order = {t: i for i, t in enumerate(CONDITION_TYPES)}
    return sorted(out, key=lambda c: order.get(c["type"], len(order)))
