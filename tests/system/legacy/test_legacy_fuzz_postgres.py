"""The legacy fuzzing of tests/integration/legacy, unchanged, on PostgreSQL (which rejects NUL in text)."""

from integration.legacy.test_legacy_fuzz import *  # noqa: F401,F403
