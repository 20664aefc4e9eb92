"""The legacy API suite of tests/integration/legacy, unchanged, against PostgreSQL (conftest.py)."""

from integration.legacy.test_legacy_api import *  # noqa: F401,F403
