"""The migration tests of tests/integration/backend/test_migrations.py, on PostgreSQL."""

from integration.backend.test_migrations import *  # noqa: F401,F403
