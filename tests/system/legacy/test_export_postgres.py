"""The export suite of tests/integration/export, unchanged, reading a PostgreSQL database (conftest.py)."""

from integration.export.test_export_progsnap2 import *  # noqa: F401,F403
