"""The same API suite as tests/integration/backend/test_api.py, against a real PostgreSQL server.

The ``backend`` fixture (tests/system/backend/conftest.py) points the server at PostgreSQL; the test
functions are imported unchanged, so both databases must behave identically.
"""

from integration.backend.test_api import *  # noqa: F401,F403
