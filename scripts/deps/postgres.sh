#!/bin/sh
# PostgreSQL server binaries for the backend's system tests (tests/support/postgres.py starts a private
# server with initdb + pg_ctl; nothing listens by default). Idempotent; Debian 12 as root.
set -eu
if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends postgresql
# The packaged cluster is not needed; tests run their own.
if command -v pg_ctlcluster >/dev/null 2>&1; then
    for v in $(ls /etc/postgresql 2>/dev/null); do pg_ctlcluster "$v" main stop 2>/dev/null || true; done
fi
