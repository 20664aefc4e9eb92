"""The group commit and ingest lane tests of tests/integration/backend/test_group_commit.py, on PostgreSQL."""

from integration.backend.test_group_commit import *  # noqa: F401,F403
