#!/usr/bin/env bash
# Make the base image `docker.io/library/debian:bookworm-slim` locally, for machines that reach Debian's
# package mirror but no image registry: debootstrap --variant=minbase, trimmed the way Docker's slim
# images are, imported with buildah. Every Dockerfile's unchanged `FROM debian:bookworm-slim` then
# resolves to it. About 30 s; skipped when the image is already in the store (FORCE=1 remakes it).
# The mirror is the one this machine's apt uses.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/env.sh"
BASE="docker.io/library/debian:bookworm-slim"
log() { printf '[images/base] %s\n' "$*"; }

if [ -z "${FORCE:-}" ] && buildah inspect --type image "$BASE" >/dev/null 2>&1; then
  log "reusing $BASE"
  exit 0
fi
command -v debootstrap >/dev/null || bash "$here/../apt-install.sh" debootstrap

mirror() {  # the first Debian main archive URI of this machine's apt sources (deb822 or one-line)
  { grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}'
    grep -hE '^[[:space:]]*deb[[:space:]]' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
      | sed -E 's/\[[^]]*\]//' | awk '{print $2}'; } | grep -E '/debian/?$' | head -n1 || true
}
MIRROR="${DEBIAN_MIRROR:-$(mirror)}"
[ -n "$MIRROR" ] || { log "error: no Debian mirror in /etc/apt/sources*: set DEBIAN_MIRROR"; exit 1; }

work="$(mktemp -d "$CONTAINERS_DIR/tmp/base.XXXXXX")"
trap 'rm -rf "$work"' EXIT
root="$work/rootfs"
log "debootstrap --variant=minbase bookworm from $MIRROR"
debootstrap --variant=minbase --components=main bookworm "$root" "$MIRROR" >"$work/debootstrap.log" 2>&1 \
  || { tail -20 "$work/debootstrap.log"; exit 1; }

# The same apt sources as the host's mirror, and the host's settings for reaching it (a mirror
# snapshot's Release files may be past Valid-Until). No proxy CA: builds mount it, images never carry it.
cat >"$root/etc/apt/sources.list" <<LIST
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb ${DEBIAN_SECURITY_MIRROR:-${MIRROR%/debian}/debian-security} bookworm-security main
LIST
for f in /etc/apt/apt.conf.d/*; do
  grep -qE 'Check-Valid-Until|Check-Date' "$f" 2>/dev/null && cp "$f" "$root/etc/apt/apt.conf.d/"
done
# What slim images leave out: documentation, man pages, locales but C, apt's caches and lists;
# and no recommended packages by default, like Docker's official image.
cat >"$root/etc/dpkg/dpkg.cfg.d/slim" <<CFG
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
CFG
cat >"$root/etc/apt/apt.conf.d/docker-slim" <<CFG
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
CFG
find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete 2>/dev/null || true
rm -rf "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/var/cache/apt/* "$root"/var/lib/apt/lists/* \
       "$root"/var/log/*.log "$root"/var/cache/debconf/*-old "$root"/tmp/* "$root"/usr/share/locale/*
find "$root/usr/share/doc" -type d -empty -delete 2>/dev/null || true
# tar keeps owners and modes (`buildah copy` would reset them to root:root 0644-ish)
tar --numeric-owner -C "$root" -cf "$work/rootfs.tar" .

log "importing as $BASE"
ctr=$(buildah from --signature-policy "$SIGNATURE_POLICY" scratch)
buildah add "$ctr" "$work/rootfs.tar" / >/dev/null
buildah config --cmd '["bash"]' --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --label org.opencontainers.image.description="Debian bookworm minbase, made locally by scripts/images/base.sh" "$ctr"
buildah commit -q --rm "$ctr" "$BASE" >/dev/null
log "ready: $BASE ($(podman image inspect --format '{{.Size}}' "$BASE" | awk '{printf "%.0f MB", $1/1e6}'))"
