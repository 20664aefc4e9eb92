"""The diagnostics tests again, on PostgreSQL."""

from integration.backend.test_diagnostics import *  # noqa: F401,F403
