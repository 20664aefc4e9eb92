#!/usr/bin/env bash
# Provide real Kubernetes for the tests: etcd (Debian's etcd-server) plus kube-apiserver and
# kube-controller-manager (tests/system/operator) and kubelet, kube-scheduler and kube-proxy (the one-node
# cluster of tests/cluster), all built from Debian's `kubernetes` source package.
#
# Why build: no reachable registry ships a kube-apiserver binary, but Debian bookworm's source package
# carries the whole upstream tree with vendor/, so it builds offline with Debian's Go toolchain.
# The binaries are cached under ~/.cache/jcode-watcher/kube/<version>/, so only the first run pays
# (several minutes on 2 cores). Idempotent; safe to run on every `make test`.
#
# /etc/apt is never modified: the deb-src entries live in a private apt directory derived from the
# machine's own sources.
set -euo pipefail

log() { printf '[deps/kube] %s\n' "$*"; }

CACHE_ROOT="${JCODE_WATCHER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/jcode-watcher}/kube"
# The source version we know builds (and patch below); override only if Debian moved on.
KUBE_SRC_VERSION="${KUBE_SRC_VERSION:-1.20.5+really1.20.2}"
OUT="$CACHE_ROOT/$KUBE_SRC_VERSION"
BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy)

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

have_binaries() {
  for b in "${BINARIES[@]}"; do [ -x "$OUT/bin/$b" ] || return 1; done
}

install_packages() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  if ! $SUDO apt-get install -y --no-install-recommends "${missing[@]}"; then
    $SUDO apt-get update
    $SUDO apt-get install -y --no-install-recommends "${missing[@]}"
  fi
}

# etcd is needed at test time in every case.
install_packages etcd-server
# Debian starts an etcd service on install; the tests run their own on a private port, so stop it.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet etcd 2>/dev/null; then
  $SUDO systemctl stop etcd || true
fi

if have_binaries && [ -z "${KUBE_FORCE_REBUILD:-}" ]; then
  log "reusing $OUT/bin (${BINARIES[*]}); KUBE_FORCE_REBUILD=1 rebuilds"
  exit 0
fi

install_packages golang-go rsync dpkg-dev golang-github-modern-go-reflect2-dev make ca-certificates

mkdir -p "$OUT"
exec 9>"$CACHE_ROOT/.build.lock"
flock 9
if have_binaries && [ -z "${KUBE_FORCE_REBUILD:-}" ]; then log "another run built them meanwhile: $OUT/bin"; exit 0; fi

# --- private apt configuration with deb-src entries -------------------------------------------------
APT_DIR="$CACHE_ROOT/apt"
mkdir -p "$APT_DIR/sources.list.d" "$APT_DIR/lists/partial"
rm -f "$APT_DIR/sources.list.d/"* "$APT_DIR/sources.list"
touch "$APT_DIR/sources.list"
if [ -f /etc/apt/sources.list ]; then
  # one-line format: `deb [opts] uri suite comps` -> `deb-src ...`
  sed -n 's/^[[:space:]]*deb[[:space:]]\+/deb-src /p' /etc/apt/sources.list >"$APT_DIR/sources.list"
fi
for f in /etc/apt/sources.list.d/*.list; do
  [ -f "$f" ] || continue
  sed -n 's/^[[:space:]]*deb[[:space:]]\+/deb-src /p' "$f" >"$APT_DIR/sources.list.d/$(basename "$f")"
done
for f in /etc/apt/sources.list.d/*.sources; do
  [ -f "$f" ] || continue
  # deb822 format: every stanza's Types line becomes deb-src
  sed -E 's/^Types:.*/Types: deb-src/' "$f" >"$APT_DIR/sources.list.d/$(basename "$f")"
done
APT_OPTS=(-o "Dir::Etc::SourceList=$APT_DIR/sources.list"
          -o "Dir::Etc::SourceParts=$APT_DIR/sources.list.d"
          -o "Dir::State::Lists=$APT_DIR/lists")
log "fetching source indexes into $APT_DIR (private; /etc/apt untouched)"
# a third-party repository without sources may fail; what matters is that Debian's index arrives
apt-get "${APT_OPTS[@]}" update || log "warning: some source indexes failed to download"

SRC_DIR="$CACHE_ROOT/src"
mkdir -p "$SRC_DIR"
cd "$SRC_DIR"
TREE="$(ls -d kubernetes-*/ 2>/dev/null | head -n1 || true)"
if [ -z "$TREE" ] || [ ! -f "$TREE/Makefile" ]; then
  rm -rf "$SRC_DIR"/*
  # the Debian revision (-1.1+deb12u1, ...) moves with security updates; the upstream part is what we pin
  DEB_VERSION="$(apt-cache "${APT_OPTS[@]}" showsrc kubernetes | sed -n 's/^Version: //p' | grep -F "$KUBE_SRC_VERSION" | head -n1)"
  [ -n "$DEB_VERSION" ] || { log "error: Debian has no source package kubernetes $KUBE_SRC_VERSION"; exit 1; }
  log "downloading and unpacking Debian source package kubernetes=$DEB_VERSION (large)"
  apt-get "${APT_OPTS[@]}" source "kubernetes=$DEB_VERSION" 2>&1 | grep -v '^dpkg-source: info: applying' || true
  TREE="$(ls -d kubernetes-*/ | head -n1)"
fi
TREE="$SRC_DIR/${TREE%/}"
[ -f "$TREE/Makefile" ] || { log "error: no kubernetes source tree under $SRC_DIR"; exit 1; }

# reflect2 1.0.1 (vendored) reads runtime internals that changed in Go 1.18: the API server panics on
# the first custom-resource create. Debian's 1.0.2 is API-compatible and fixed.
log "replacing vendored github.com/modern-go/reflect2 with Debian's 1.0.2"
REFLECT2_SRC=/usr/share/gocode/src/github.com/modern-go/reflect2
rsync -a --delete --exclude '.git*' --exclude '*_test.go' "$REFLECT2_SRC/" "$TREE/vendor/github.com/modern-go/reflect2/"
sed -i 's#^\(github.com/modern-go/reflect2\) v1.0.1#\1 v1.0.2#' "$TREE/vendor/modules.txt" 2>/dev/null || true

cd "$TREE"
log "building ${BINARIES[*]} with $(go version) — this takes several minutes"
unset GOFLAGS  # hack/lib/golang.sh parses GOFLAGS for -tags; anything else breaks the tag list
export KUBE_GIT_VERSION="v${KUBE_SRC_VERSION##*really}"
export KUBE_GIT_TREE_STATE=clean
export KUBE_BUILD_PLATFORMS="linux/$(dpkg --print-architecture | sed 's/^armhf$/arm/')"
# pure-Go build: no C compiler needed (golang-go only recommends gcc)
export CGO_ENABLED=0
start=$(date +%s)
( while sleep 60; do log "... still building ($(( $(date +%s) - start ))s)"; done ) &
ticker=$!
trap 'kill $ticker 2>/dev/null || true' EXIT
make WHAT="$(printf 'cmd/%s ' "${BINARIES[@]}")"
kill $ticker 2>/dev/null || true

mkdir -p "$OUT/bin"
for b in "${BINARIES[@]}"; do
  src="$(find "$TREE/_output" -type f -name "$b" -perm -u+x | head -n1)"
  [ -n "$src" ] || { log "error: build produced no $b"; exit 1; }
  install -m 0755 "$src" "$OUT/bin/$b"
done
log "built in $(( $(date +%s) - start ))s: $(ls "$OUT/bin" | tr '\n' ' ')"
"$OUT/bin/kube-apiserver" --version || true
