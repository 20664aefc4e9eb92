#!/usr/bin/env bash
# procmon's system dependencies: bcc (python3-bpfcc, bpfcc-tools), libbpf-tools (execsnoop for the
# benchmark), gcc and clang (tests compile real programs and parse both compilers' messages) and kernel
# headers for bcc's runtime compilation.
#
# bcc compiles its tracepoint programs against /lib/modules/$(uname -r)/{build,source}. When the running
# kernel has no matching header package (a cloud or custom kernel), we point those links at Debian 12's
# newest linux-headers-6.1.0-* (-amd64 and -common): procmon only uses tracepoint fields and BPF helpers,
# never struct offsets, so a header mismatch is harmless for it. Existing links or directories are
# left alone. Idempotent.
#
# The `bcc` Python module stays in Debian's /usr/lib/python3/dist-packages: procmon loads just that
# package at run time when `import bcc` fails (see docs/procmon.md), so no venv is modified here.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
arch="$(dpkg --print-architecture)"   # amd64, arm64 ...
bash "$here/apt-install.sh" bpfcc-tools python3-bpfcc libbpf-tools gcc clang libc6-dev util-linux

kver="$(uname -r)"
mod="/lib/modules/$kver"
if [ -e "$mod/build/include" ] && [ -e "$mod/source" -o -L "$mod/source" ]; then
  exit 0   # headers for this kernel are there (a Debian kernel, or links made by an earlier run)
fi
# Our own kernel's header package when Debian has it, else Debian 12's newest 6.1 headers.
if apt-cache show "linux-headers-$kver" >/dev/null 2>&1; then
  bash "$here/apt-install.sh" "linux-headers-$kver"
  exit 0
fi
newest() { apt-cache search --names-only "^linux-headers-6\.1\.0-[0-9]+-$1\$" | awk '{print $1}' | sort -V | tail -1; }
pkg="$(newest "$arch")"
if [ -z "$pkg" ]; then
  [ -f /run/jcode-watcher-apt-updated ] || { DEBIAN_FRONTEND=noninteractive apt-get update -qq; touch /run/jcode-watcher-apt-updated || true; }
  pkg="$(newest "$arch")"
fi
[ -n "$pkg" ] || { echo "deps/bcc: no linux-headers-6.1.0-*-$arch package found" >&2; exit 1; }
abi="${pkg#linux-headers-}"; abi="${abi%-$arch}"      # 6.1.0-56
bash "$here/apt-install.sh" "$pkg" "linux-headers-$abi-common"
mkdir -p "$mod"
[ -e "$mod/build" ] || ln -sfn "/usr/src/linux-headers-$abi-$arch" "$mod/build"
[ -e "$mod/source" ] || ln -sfn "/usr/src/linux-headers-$abi-common" "$mod/source"
echo "    linked $mod/{build,source} -> /usr/src/linux-headers-$abi-{$arch,common}"
