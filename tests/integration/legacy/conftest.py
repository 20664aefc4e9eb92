import pytest

from support.backend import run_backend


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    """A real backend on SQLite with tokens (tests/system/legacy/conftest.py gives one on PostgreSQL)."""
    with run_backend(tmp_path_factory.mktemp("legacy")) as handle:
        yield handle
