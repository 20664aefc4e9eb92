"""The named-token tests of tests/integration/backend/test_access.py, on PostgreSQL."""

from integration.backend.test_access import *  # noqa: F401,F403
