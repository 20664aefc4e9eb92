#!/bin/sh
# wrk, the HTTP load generator of bench/backend_singles.py (C, one process: it costs the two cores little).
# Idempotent; Debian 12 as root.
set -eu
if command -v wrk >/dev/null 2>&1; then
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends wrk
