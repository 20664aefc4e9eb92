#!/usr/bin/env bash
# What the one-node cluster tier (tests/system/cluster, make cluster) needs besides the Kubernetes
# binaries (deps/kube.sh) and the four images (deps/images.sh): Debian's containerd, runc, CNI plugins
# and iptables, the pod sandbox (pause) image and the simulated student's image (gcc, python3).
# Idempotent: the images are made once and kept in ~/.cache/jcode-watcher/containers.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
bash "$here/apt-install.sh" containerd runc containernetworking-plugins iptables conntrack iproute2 kubectl
bash "$here/images/pause.sh" >/dev/null
bash "$here/images/student.sh" >/dev/null
