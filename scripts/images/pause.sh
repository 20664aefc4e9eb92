#!/usr/bin/env bash
# The pod sandbox ("pause") image for the one-node test cluster, made locally because no registry is
# reachable: Kubernetes' own build/pause/linux/pause.c from the Debian source tree that
# scripts/deps/kube.sh unpacked, compiled statically with gcc, in an image FROM scratch.
#   scripts/images/pause.sh            # -> localhost/jcode-watcher/pause:<kubernetes version>
# Skipped when the image is in the store (FORCE=1 remakes it). Prints the image name.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/env.sh"
KUBE_SRC_VERSION="${KUBE_SRC_VERSION:-1.20.5+really1.20.2}"
TAG="localhost/jcode-watcher/pause:${KUBE_SRC_VERSION##*really}"
log() { printf '[images/pause] %s\n' "$*" >&2; }

if [ -z "${FORCE:-}" ] && buildah inspect --type image "$TAG" >/dev/null 2>&1; then
  echo "$TAG"
  exit 0
fi
src="$(ls -d "$CACHE"/kube/src/kubernetes-*/build/pause/linux/pause.c 2>/dev/null | head -n1 || true)"
[ -n "$src" ] || { log "error: no Kubernetes source tree under $CACHE/kube/src: run scripts/deps/kube.sh"; exit 1; }
command -v gcc >/dev/null || bash "$here/../apt-install.sh" gcc libc6-dev
work="$(mktemp -d "$CONTAINERS_DIR/tmp/pause.XXXXXX")"
trap 'rm -rf "$work"' EXIT
# static: the image has nothing else in it
gcc -Os -Wall -Werror -static -DVERSION="${KUBE_SRC_VERSION##*really}-jcode-watcher" -o "$work/pause" "$src"
strip "$work/pause"
ctr=$(buildah from --signature-policy "$SIGNATURE_POLICY" scratch)
buildah copy "$ctr" "$work/pause" /pause >/dev/null
buildah config --entrypoint '["/pause"]' --user 65535:65535 \
  --label org.opencontainers.image.description="Kubernetes pause (build/pause/linux/pause.c), built by scripts/images/pause.sh" "$ctr"
buildah commit -q --rm "$ctr" "$TAG" >/dev/null
log "built $TAG ($(stat -c %s "$work/pause") bytes)"
echo "$TAG"
