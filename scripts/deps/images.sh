#!/usr/bin/env bash
# The container tools and the four images (tests/system/images and the cluster tier run them):
# podman and buildah from Debian, debootstrap for the base image (no image registry is reachable here),
# then scripts/images/build.sh — a few minutes the first time, seconds once its layers are cached
# under ~/.cache/jcode-watcher/containers. Idempotent.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
bash "$here/apt-install.sh" podman buildah debootstrap runc conmon containernetworking-plugins uidmap \
  fuse-overlayfs ca-certificates
# `--tools-only`: `make images` builds with its own REGISTRY and VERSION
[ "${1:-}" = "--tools-only" ] || bash "$here/images/build.sh"
