"""Fault tests run the real local stack (tests/system/e2e/session.py) and need root + eBPF for procmon."""

from __future__ import annotations

import pytest
from system.e2e.session import require_ebpf, start_stack


@pytest.fixture
def stack(tmp_path):
    require_ebpf()
    s = start_stack(tmp_path)
    yield s
    s.stop()
