"""The retention tests of tests/integration/backend/test_retention.py, on PostgreSQL."""

from integration.backend.test_retention import *  # noqa: F401,F403
