#!/usr/bin/env bash
# promtool (Debian's `prometheus` package) for the alert rules' tests: `promtool check rules` and
# `promtool test rules` (tests/unit/operator/test_alerts.py). Only the tool is needed: a Prometheus server
# the package may have started is stopped (the tests never talk to one). Idempotent: apt-install.sh installs
# only what is missing, so a second run only checks.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
bash "$here/apt-install.sh" prometheus
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prometheus 2>/dev/null; then
  systemctl stop prometheus || true
fi
promtool --version 2>&1 | head -1
