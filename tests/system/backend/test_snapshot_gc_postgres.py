"""The erased-contents tests of tests/integration/backend/test_snapshot_gc.py, on PostgreSQL."""

from integration.backend.test_snapshot_gc import *  # noqa: F401,F403
