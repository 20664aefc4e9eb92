#!/usr/bin/env bash
# apt-get install only what is missing; runs `apt-get update` once per machine boot when something is.
# Usage: scripts/apt-install.sh pkg [pkg...]
set -euo pipefail
missing=()
for pkg in "$@"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
stamp=/run/jcode-watcher-apt-updated
if [ ! -f "$stamp" ]; then
  echo "    apt-get update"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  touch "$stamp" 2>/dev/null || true
fi
echo "    apt-get install ${missing[*]}"
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
