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

# The tests that own something machine-wide or time what a busy machine would slow: eBPF tracepoints and
# cgroups, the one-node cluster's kubelet, mounts, the images' store, floods timed against a classmate.
# Under `--dist loadgroup` (`make test`'s security and system run) they run one after another on one
# worker, while the other worker takes the rest (PostgreSQL, private kube-apiservers, schema fuzzing) a
# file at a time: the machine-wide half waits on pods and processes about half the time.
MACHINE_WIDE = (
    "system/cluster/",
    "system/procmon/",
    "system/e2e/",
    "system/faults/",
    "system/images/",
    "security/test_filemon_attacks.py",
    "security/test_procmon_attacks.py",
)


def pytest_collection_modifyitems(config, items):
    for item in items:
        try:
            tier_dir = Path(item.fspath).relative_to(_ROOT).parts[0]
        except ValueError:
            continue
        marker = _TIERS.get(tier_dir)
        if marker and not any(item.get_closest_marker(tier) for tier in set(_TIERS.values())):
            item.add_marker(getattr(pytest.mark, marker))


def pytest_xdist_make_scheduler(config, log):
    """``--dist loadgroup``: a work unit per test file (its module fixtures stay whole), and one for all of
    MACHINE_WIDE's files. Our own scheduler, not xdist_group marks: xdist 3.8 groups those by rewriting
    each test's node id, which pytest 9.2 no longer lets it do, and every test became its own unit (the
    cluster's tests ran on both workers at once)."""
    if config.getoption("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class MachineWideScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return "machine-wide" if path.removeprefix("tests/").startswith(MACHINE_WIDE) else path

    return MachineWideScheduling(config, log)


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
