#!/usr/bin/env bash
# The simulated student's image for the cluster tier (tests/system/cluster/student.Dockerfile):
# Debian with gcc and python3, as in JCode's code-server pods. Prints the image name.
#   scripts/images/student.sh          # -> localhost/jcode-watcher/student:test
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
source "$here/env.sh"
TAG="localhost/jcode-watcher/student:test"
log() { printf '[images/student] %s\n' "$*" >&2; }
bash "$here/base.sh" >&2
log "building $TAG"
buildah bud --signature-policy "$SIGNATURE_POLICY" --layers --network host --pull=false \
  -f "$root/tests/system/cluster/student.Dockerfile" -t "$TAG" "$root/tests/system/cluster" \
  >"$CONTAINERS_DIR/build-student.log" 2>&1 \
  || { tail -30 "$CONTAINERS_DIR/build-student.log" >&2; log "error: building $TAG failed"; exit 1; }
echo "$TAG"
