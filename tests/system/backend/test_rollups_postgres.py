"""The rollup tests of tests/integration/backend/test_rollups.py, on PostgreSQL."""

from integration.backend.test_rollups import *  # noqa: F401,F403
