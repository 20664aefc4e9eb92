import pytest

from support.backend import run_backend


@pytest.fixture(scope="module")
def export_backend():
    """Starts a real backend on SQLite in a given directory (tests/system/legacy: on PostgreSQL)."""
    return lambda workdir: run_backend(workdir)
