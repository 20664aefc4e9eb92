#!/usr/bin/env bash
# (Re)build kube-apiserver and kube-controller-manager for the operator's real-API-server tests, from
# Debian's `kubernetes` source package, into ~/.cache/jcode-watcher/kube/<version>/bin. Several minutes.
# `scripts/deps/kube.sh` (run by `make test`) does the same only when the binaries are missing.
#   scripts/build-kube-apiserver.sh            # rebuild even if cached
#   KUBE_SRC_VERSION=... scripts/build-kube-apiserver.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
KUBE_FORCE_REBUILD=1 exec "$here/deps/kube.sh" "$@"
