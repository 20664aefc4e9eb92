#!/usr/bin/env bash
# Build the four images from docker/Dockerfile with buildah (no Docker engine needed):
#   scripts/images/build.sh                       # all four, harbor.jbnu.ac.kr/jdevops/watcher-*:<version>
#   REGISTRY=reg.example/proj VERSION=1.2.3 scripts/images/build.sh backend procmon
# (`make images` calls this.) The base image is made locally when missing (scripts/images/base.sh).
# Layers are cached in ~/.cache/jcode-watcher/containers: a second build of an unchanged tree takes
# seconds, and a source change rebuilds only the project's wheel and what follows it.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
source "$here/env.sh"
REGISTRY="${REGISTRY:-harbor.jbnu.ac.kr/jdevops}"
VERSION="${VERSION:-$(sed -nE 's/^version = "(.*)"/\1/p' "$root/pyproject.toml")}"
REVISION="${REVISION:-$(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)}"
components=("$@")
[ ${#components[@]} -gt 0 ] || components=(backend filemon procmon operator)
log() { printf '[images] %s\n' "$*"; }

bash "$here/base.sh"
# A TLS-intercepting proxy's CA (in this machine's trust store, not in a fresh image) goes to the build
# as a secret: pip uses it, no layer keeps it.
secret=()
ca="${BUILD_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
[ -s "$ca" ] && secret=(--secret "id=ca,src=$ca")

for component in "${components[@]}"; do
  case "$component" in backend|filemon|procmon|operator) ;; *) log "error: unknown image '$component'"; exit 2;; esac
  tag="$REGISTRY/watcher-$component:$VERSION"
  log "building $tag"
  start=$SECONDS
  # docker format: OCI image configs have no HEALTHCHECK
  buildah bud --signature-policy "$SIGNATURE_POLICY" --layers --format docker --network host --pull=false \
    "${secret[@]}" --build-arg "VERSION=$VERSION" --build-arg "REVISION=$REVISION" \
    -f "$root/docker/Dockerfile" --target "$component" -t "$tag" "$root" >"$CONTAINERS_DIR/build-$component.log" 2>&1 \
    || { tail -40 "$CONTAINERS_DIR/build-$component.log"; log "error: building $tag failed (log: $CONTAINERS_DIR/build-$component.log)"; exit 1; }
  size="$(podman image inspect --format '{{.Size}}' "$tag")"
  log "built $tag in $((SECONDS - start)) s, $((size / 1000000)) MB"
done
