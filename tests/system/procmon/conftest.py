"""Fixtures for procmon's system tests (helpers in pm_helpers.py)."""

from __future__ import annotations

import pytest
from system.procmon.pm_helpers import Container, Procmon, why_no_ebpf

from support.backend import run_backend


@pytest.fixture(scope="module")
def ebpf_ready():
    reason = why_no_ebpf()
    if reason:
        pytest.skip(reason)


@pytest.fixture
def container(request):
    made = []

    def make(name: str = "student") -> Container:
        c = Container(name)
        made.append(c)
        return c

    yield make
    for c in made:
        c.remove()


@pytest.fixture(scope="module")
def stack(tmp_path_factory, ebpf_ready):
    """One backend and one eBPF procmon shared by a module's tests (each test uses its own student)."""
    tmp = tmp_path_factory.mktemp("procmon")
    workspace = tmp / "workspace"
    workspace.mkdir()
    backend = run_backend(tmp)
    pm = Procmon(tmp, workspace, backend.url, backend.tokens["ingest"], "--mode", "ebpf").start()
    yield backend, pm, workspace
    pm.stop()
    backend.stop()
