#!/usr/bin/env bash
# Headless Chromium for the dashboard's browser tests (tests/integration/ui, selenium from the test extra)
# and its benchmark (bench/dashboard.py): Debian's chromium, the chromedriver of the same build, and a CJK
# font so the Korean labels render (the screenshots in docs/screenshots/). Idempotent: apt-install.sh
# installs only what is missing, so a second run only checks.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
bash "$here/apt-install.sh" chromium chromium-driver fonts-noto-cjk
chromedriver --version | head -1
