# The two commands a newcomer needs:
#   make demo   - run the whole system on this machine with a simulated class and print what it recorded
#   make test   - install everything the tests need (system packages too) and run every test tier
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
export VENV

.PHONY: demo test lint generate test-quick test-integration test-system deps venv bench help images push lock cluster cluster-down

# The images: <REGISTRY>/watcher-{backend,filemon,procmon,operator}:<VERSION>, one version for all four
REGISTRY ?= harbor.jbnu.ac.kr/jdevops
VERSION ?= $(shell sed -nE 's/^version = "(.*)"/\1/p' pyproject.toml)
IMAGES := backend filemon procmon operator

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

venv:  ## create .venv and install the package (Python only)
	@bash scripts/deps/00-python.sh

demo: venv  ## run the demo: two simulated students, then their timelines and summaries
	@if [ "$$(id -u)" = 0 ]; then bash scripts/deps/bcc.sh; \
	 else echo "make demo: not root, so procmon cannot trace compiles and runs (the demo shows file events)"; fi
	$(VENV)/bin/watcher demo

deps:  ## install every system package and tool the tests need (root, Debian 12)
	@bash scripts/install-deps.sh

# Every tier runs on two workers (pytest-xdist, a test file per worker: module fixtures stay whole). In
# security and system, the files that own machine-wide resources (the cluster, eBPF, mounts) or time
# floods run one after another on one worker (tests/conftest.py, MACHINE_WIDE). Both halves always run.
test: deps lint  ## install everything, then lint and run every tier: quick, integration, system (a skip fails)
	@rc=0; \
	WATCHER_STRICT_SKIPS=1 $(VENV)/bin/pytest -n 2 --dist loadfile --durations=10 tests/unit tests/integration || rc=1; \
	WATCHER_STRICT_SKIPS=1 $(VENV)/bin/pytest -n 2 --dist loadgroup --durations=30 tests/security tests/system || rc=1; \
	exit $$rc

lint: venv  ## ruff (lint and format), mypy on core and backend, and the import-layering contracts
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache

generate: venv  ## rewrite every generated file: the settings tables of docs/configuration.md, the CRD, the chart's copy and docs/operator.md's field table, the plain bundle, the alert rules, the dashboard, the golden files
	$(PY) -m watcher_core.settings_docs docs/configuration.md
	$(PY) -m watcher_operator.crd > crds/watcherdeployments.watcher.jcode.io.yaml
	cp crds/watcherdeployments.watcher.jcode.io.yaml charts/watcher-operator/crds/
	$(PY) -m watcher_operator.crd_docs docs/operator.md
	$(PY) -m watcher_operator.alerts > deploy/prometheus-rules.yaml
	$(PY) -m watcher_operator.dashboard_build > operator/watcher_operator/dashboard.json
	UPDATE_GOLDEN=1 $(VENV)/bin/pytest -q -p no:cacheprovider tests/unit/operator/test_chart.py \
	  tests/unit/operator/test_builders.py tests/unit/export/test_progsnap2_mapping.py

test-quick: venv  ## the fast tier only (seconds, no services, no root)
	$(VENV)/bin/pytest -m quick -q

test-integration: venv  ## real loopback HTTP, real inotify
	$(VENV)/bin/pytest -m integration

test-system: deps  ## PostgreSQL, eBPF, kube-apiserver
	$(VENV)/bin/pytest -m system

bench: deps  ## run every benchmark (about 15 min) and write bench/RESULTS.md with a plot
	$(VENV)/bin/pip install -q -e '.[bench]'
	$(PY) bench/run_all.py

images:  ## build the four images with buildah: make images REGISTRY=<prefix> VERSION=<tag>
	@bash scripts/deps/images.sh --tools-only
	REGISTRY=$(REGISTRY) VERSION=$(VERSION) bash scripts/images/build.sh $(IMAGES)

push:  ## push the four images (log in first: podman login <registry>)
	@source scripts/images/env.sh && for c in $(IMAGES); do \
	  echo "pushing $(REGISTRY)/watcher-$$c:$(VERSION)"; podman push "$(REGISTRY)/watcher-$$c:$(VERSION)" || exit 1; done

lock: venv  ## regenerate docker/locks/*.txt after changing dependencies in pyproject.toml
	bash scripts/images/lock.sh

cluster: venv  ## a one-node Kubernetes cluster on this machine (root) with the operator and the minimal example; prints KUBECONFIG
	@bash scripts/deps/kube.sh && bash scripts/deps/images.sh && bash scripts/deps/node.sh
	$(PY) tests/support/cluster.py up --watcher

cluster-down:  ## stop the cluster of make cluster and remove everything it left (processes, mounts, network)
	$(PY) tests/support/cluster.py down
