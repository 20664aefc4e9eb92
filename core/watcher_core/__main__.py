import sys

from watcher_core.cli import main

sys.exit(main())
