"""Shared by the system tests: one private PostgreSQL server for the whole session (Debian's postgresql),
and the guard of every test that starts a kube-apiserver of its own."""

import pytest

from support.kube import missing_binaries
from support.postgres import PostgresServer, find_pg_bin


@pytest.fixture(scope="session")
def postgres():
    if find_pg_bin() is None:
        pytest.skip("PostgreSQL is not installed on this machine (scripts/deps/postgres.sh installs it)")
    with PostgresServer() as server:
        yield server


@pytest.fixture(scope="session")
def kube_binaries():
    """The control plane binaries (built by scripts/deps/kube.sh) are there, or the test is skipped (and a
    skip fails `make test`): a machine without them cannot run a kube-apiserver."""
    missing = missing_binaries()
    if missing:
        pytest.skip(f"no Kubernetes control plane binaries ({', '.join(missing)}): run scripts/deps/kube.sh")
