#!/usr/bin/env bash
# Sourced by every image script: podman and buildah with their storage and configuration under the
# project's cache (~/.cache/jcode-watcher/containers), never the machine's own /etc/containers or
# /var/lib/containers. So images survive between test runs and `rm -rf ~/.cache/jcode-watcher` resets all.
#   source scripts/images/env.sh; podman images
CACHE="${JCODE_WATCHER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/jcode-watcher}"
CONTAINERS_DIR="$CACHE/containers"
mkdir -p "$CONTAINERS_DIR/storage" "$CONTAINERS_DIR/run" "$CONTAINERS_DIR/tmp"

# runc: crun rejects this machine's hybrid cgroup layout. The ulimits: the runtime's defaults are
# far above what the kernel allows an unprivileged container here, and the container fails to start.
cat >"$CONTAINERS_DIR/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
tmp_dir = "$CONTAINERS_DIR/tmp"
CONF
cat >"$CONTAINERS_DIR/storage.conf" <<CONF
[storage]
driver = "overlay"
graphroot = "$CONTAINERS_DIR/storage"
runroot = "$CONTAINERS_DIR/run"
CONF
# `FROM debian:bookworm-slim` is short for docker.io/library/debian:bookworm-slim; no registry is
# contacted as long as that image is in the store (scripts/images/base.sh makes it).
cat >"$CONTAINERS_DIR/registries.conf" <<CONF
unqualified-search-registries = ["docker.io"]
CONF
cat >"$CONTAINERS_DIR/policy.json" <<CONF
{"default": [{"type": "insecureAcceptAnything"}]}
CONF
export CONTAINERS_CONF="$CONTAINERS_DIR/containers.conf"
export CONTAINERS_STORAGE_CONF="$CONTAINERS_DIR/storage.conf"
export CONTAINERS_REGISTRIES_CONF="$CONTAINERS_DIR/registries.conf"
export BUILDAH_ISOLATION="${BUILDAH_ISOLATION:-chroot}"
# podman and buildah read the signature policy from here when /etc/containers/policy.json is absent
SIGNATURE_POLICY="$CONTAINERS_DIR/policy.json"
export SIGNATURE_POLICY
