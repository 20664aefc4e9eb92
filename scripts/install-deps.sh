#!/usr/bin/env bash
# Installs everything the tests need on a fresh Debian 12 machine, system packages included.
# Idempotent: a second run only checks. Each concern has its own script in scripts/deps/, run in name order.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
for script in "$here"/deps/*.sh; do
  name="$(basename "$script" .sh)"
  echo "==> deps: $name"
  start=$SECONDS
  bash "$script"
  echo "    deps: $name ready ($((SECONDS - start)) s)"
done
