# Tandem developer entry points. Everything installs into .venv from a clean clone.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PACKAGES := shared services/ingest services/mapper services/writer services/console simulators/mailchimp simulators/accessplanit devstack cli bench
STAMP := $(VENV)/.installed
LOCK := requirements.lock

.PHONY: install lock audit image-test run test test-unit lint typecheck stack-up stack-down bench bench-reconcile clean asyncapi

install: $(STAMP)

# Every third-party package comes from the lock, each file checked against its hash; the project's own packages
# are then installed editable without dependencies (the lock has them all) and without build isolation
# (setuptools is in the lock too), and `pip check` fails on any requirement the lock no longer covers.
$(STAMP): $(LOCK) $(foreach p,$(PACKAGES),$(p)/pyproject.toml)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --require-hashes -r $(LOCK)
	$(PY) -m pip install -q --no-deps --no-build-isolation $(foreach p,$(PACKAGES),-e ./$(p))
	$(PY) -m pip check
	@touch $(STAMP)

# Rewrites the locks from requirements-dev.txt and the packages' pyproject.toml files (newest versions that fit):
# requirements.lock for the development environment and CI, requirements-image.lock for the image.
lock:
	@test -x $(VENV)/bin/uv || { $(PYTHON) -m venv $(VENV) && $(PY) -m pip install -q uv; }
	scripts/lock $(PACKAGES)

run: install
	$(PY) -m tandem_devstack run

test: install
	$(PY) -m tandem_devstack prerequisites
	$(PY) -m pytest $(PYTEST_ARGS)

test-unit: install
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

# The dependency audit in `lint` runs when an advisory service answers and otherwise prints "audit skipped:
# advisory service unreachable" (scripts/audit; TANDEM_AUDIT_REQUIRED=1 makes that a failure).
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) scripts/audit $(VENV)/bin/pip-audit $(LOCK)

# Known vulnerabilities in the locked versions (pip-audit with PyPI's advisory data; requirements-image.lock holds a
# subset of these versions). --strict: a package it cannot look up fails the audit instead of passing unaudited.
# Fails where PyPI's per-release JSON API does not answer (some machines reach only its package index); `lint`
# asks first (scripts/audit).
audit: install
	$(VENV)/bin/pip-audit --strict --disable-pip --require-hashes --progress-spinner off -r $(LOCK)

typecheck: install
	$(VENV)/bin/mypy $(foreach p,$(PACKAGES),$(p)/src)

# The trace contract for dashboard teams; tests/unit/console/test_asyncapi.py fails when this file is stale.
asyncapi: install
	$(VENV)/bin/faststream docs gen tandem_console.trace_spec:app --yaml --out docs/asyncapi.yaml

# Not part of `make test`: starts the whole stack, loads it and writes bench/results/latest.{md,json}.
# BENCH_ARGS=--quick for a run under two minutes.
bench: install
	$(PY) -m tandem_devstack prerequisites
	$(PY) -m tandem_bench $(BENCH_ARGS)

# Run by .ci/run right after `make test`: builds the Dockerfile's runtime and dev targets with podman/buildah (from
# Debian, installed by the script when missing) and runs them against the devstack's Kafka and Redis: the services
# answer /health/ready and one change flows from accessplanit to Mailchimp through the containers; then the compose
# file with docker-compose.hostnet.yml comes up under podman-compose and the README's curl works against it.
image-test: install
	$(PY) -m tandem_devstack prerequisites
	scripts/image-test

# Not part of `make test` either: a backfill of 50,000 accessplanit users into an empty audience and a 50,000 ⇄
# 50,000 dry-run comparison; writes bench/results/reconcile-latest.md (BENCH_RECONCILE_USERS=N for another size).
bench-reconcile: install
	$(PY) -m tandem_devstack prerequisites
	$(PY) -m tandem_bench.reconcile --users $(or $(BENCH_RECONCILE_USERS),50000)

stack-up: install
	$(PY) -m tandem_devstack up

stack-down: install
	$(PY) -m tandem_devstack down

clean:
	rm -rf $(VENV) .tandem
