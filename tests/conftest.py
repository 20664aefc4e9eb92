"""Test tiers follow the folder a test lives in, so nobody has to remember a marker.

tests/unit        -> quick        (seconds, no services, no root)
tests/integration -> integration  (real loopback HTTP, inotify, subprocesses)
tests/system      -> system       (PostgreSQL, eBPF, kube-apiserver; needs root and the installed system packages)
"""
from pathlib import Path

import pytest

_TIERS = {"unit": "quick", "integration": "integration", "system": "system"}
_ROOT = Path(__file__).parent


def pytest_collection_modifyitems(config, items):
    for item in items:
        try:
            tier_dir = Path(item.fspath).relative_to(_ROOT).parts[0]
        except ValueError:
            continue
        marker = _TIERS.get(tier_dir)
        if marker:
            item.add_marker(getattr(pytest.mark, marker))
