# A stand-in for JCode's code-server image in the cluster tier: a shell, gcc and python3 are what the
# simulated student uses (scripts/images/student.sh builds it as localhost/jcode-watcher/student:test).
FROM docker.io/library/debian:bookworm-slim
# hadolint ignore=DL3008
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev python3 \
 && rm -rf /var/lib/apt/lists/*
