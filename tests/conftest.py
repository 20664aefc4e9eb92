"""Test tiers follow the folder a test lives in, so nobody has to remember a marker.

tests/unit        -> quick        (seconds, no services, no root)
tests/integration -> integration  (real loopback HTTP, inotify, subprocesses)
tests/system      -> system       (PostgreSQL, eBPF, kube-apiserver; needs root and the installed system packages)
tests/security    -> integration  (the student as the attacker, against the real components; docs/security.md)

A module that needs more than its folder's tier says so with ``pytestmark = pytest.mark.system``
(tests/security/test_procmon_attacks.py needs root and eBPF); that marker is then its only tier.
"""

import logging
import os
from pathlib import Path

import pytest

_TIERS = {"unit": "quick", "integration": "integration", "system": "system", "security": "integration"}
_ROOT = Path(__file__).parent


def pytest_collection_modifyitems(config, items):
    for item in items:
        try:
            tier_dir = Path(item.fspath).relative_to(_ROOT).parts[0]
        except ValueError:
            continue
        marker = _TIERS.get(tier_dir)
        if marker and not any(item.get_closest_marker(tier) for tier in set(_TIERS.values())):
            item.add_marker(getattr(pytest.mark, marker))


# `make test` installs every system package the tests need, so there a skip means an install step is
# broken: WATCHER_STRICT_SKIPS=1 (set by `make test`) turns every skip into a failure that says so.
@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("WATCHER_STRICT_SKIPS") == "1":
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped under WATCHER_STRICT_SKIPS=1 (make test installs everything): {reason}"


@pytest.fixture(autouse=True)
def _restore_root_logging():
    """A command's main() called in-process (the CLI tests) installs its own root handler on that test's
    captured stderr; put the root logger back, so later tests' background threads do not log into a
    closed stream ("--- Logging error ---")."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
